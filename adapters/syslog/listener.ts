/**
 * The syslog adapter: UDP and/or TCP listeners feeding one micro-batcher (CONTRACT §8 `adapters.syslog[]`).
 *
 * Flow control differs by transport, because only TCP can push back:
 * - TCP: a connection's socket is paused while the batcher asks us to wait, so a fast sender is slowed down by
 *   the kernel's TCP window instead of growing our memory.
 * - UDP: a datagram arriving while the batcher asks us to wait is dropped. Drops are counted (`stats`) and
 *   logged as a pino warning when an overload starts and when it ends with its count, never silent.
 * Bad input (framing, header, body) becomes a WireReject with the raw bytes and origin; the listener keeps going.
 * Syslog has no acknowledgements: a batch the sink fails to store is lost, counted and logged (BatchFeed).
 */
import dgram from 'node:dgram'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { BatchSink } from '../batcher.js'
import { BatchFeed } from '../batch-feed.js'
import type { SyslogAdapterOptions } from '../config.js'
import { SessionMerger } from '../sessions.js'
import { rawText, reject, type WireItem } from '../wire.js'
import { ErrorCode, RateflowError } from '../../common/errors.js'
import { decodeSyslog } from './decode.js'
import { SyslogFramer, type Frame } from './framing.js'

export interface SyslogAdapterDeps {
  /** Stores a batch (JetStream publish); resolves once stored. */
  readonly sink: BatchSink
  readonly logger: Logger
  /** The most bytes a batch's encoding may take (Queue.maxBatchBytes); default DEFAULT_BATCHING.maxBytes. */
  readonly maxBatchBytes?: number
  /** Clock for 3164 years and session idle timeouts; Date.now by default. */
  readonly now?: () => number
  /** How long stop() reads open TCP connections before cutting them; TCP_DRAIN_MS by default. */
  readonly tcpDrainMs?: number
}

export interface SyslogStats {
  /** Messages (datagrams or TCP frames, including broken ones) received. */
  messages: number
  records: number
  rejects: number
  /** UDP datagrams dropped because the batcher was full. */
  udpDropped: number
  tcpConnections: number
  /** TCP connections closed because their octet counting could not be trusted. */
  tcpFramingCloses: number
  failedBatches: number
  lostItems: number
  sessionsOpen: number
  /** Sessions closed early because `sessions.max_open_sessions` were open (billed, `session_close=max_open_sessions`). */
  sessionsEvicted: number
}

/** How long a stopping adapter goes on reading open TCP connections for what their peers sent before it stopped. */
export const TCP_DRAIN_MS = 5_000

export class SyslogAdapter {
  private readonly feed: BatchFeed
  private readonly merger: SessionMerger | undefined
  private readonly now: () => number
  private udp: dgram.Socket | undefined
  private tcp: net.Server | undefined
  /** Open TCP connections, and for each: `finished` once its socket closed and every frame it brought was handed on; `cut` ends it now. */
  private readonly connections = new Map<net.Socket, { finished: Promise<void>; drain(): void; cut(): void }>()
  /** Set by stop(): frames no longer wait for the batcher (nor pause their socket), so everything already sent is read. */
  private draining = false
  /** TCP connections taken in so far: the stop turns the event loop until no more come (drainConnections). */
  private accepted = 0
  private udpWait: Promise<void> | undefined
  private overloadDrops = 0
  private sessionTimer: NodeJS.Timeout | undefined
  private readonly counts = { messages: 0, records: 0, rejects: 0, udpDropped: 0, tcpConnections: 0, tcpFramingCloses: 0 }

  constructor(
    private readonly options: SyslogAdapterOptions,
    private readonly deps: SyslogAdapterDeps,
  ) {
    this.now = deps.now ?? Date.now
    this.feed = new BatchFeed(deps, options.batching, options.source)
    if (options.sessions) this.merger = new SessionMerger(options.sessions)
  }

  get stats(): SyslogStats {
    return {
      ...this.counts,
      failedBatches: this.feed.failedBatches,
      lostItems: this.feed.lostItems,
      sessionsOpen: this.merger?.open ?? 0,
      sessionsEvicted: this.merger?.evicted ?? 0,
    }
  }

  /** Bound ports (useful with port 0). */
  get ports(): { udp?: number; tcp?: number } {
    const out: { udp?: number; tcp?: number } = {}
    if (this.udp) out.udp = this.udp.address().port
    if (this.tcp) out.tcp = (this.tcp.address() as AddressInfo).port
    return out
  }

  async start(): Promise<void> {
    const { host, udp_port, tcp_port } = this.options
    try {
      if (udp_port !== undefined) {
        const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4')
        sock.on('message', (msg, rinfo) => this.onDatagram(msg, `syslog udp ${rinfo.address}:${rinfo.port}`))
        sock.on('error', (err) => this.deps.logger.error({ err, source: this.options.source }, 'syslog UDP socket error'))
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject)
          sock.bind(udp_port, host, () => {
            sock.off('error', reject)
            resolve()
          })
        })
        this.udp = sock
      }
      if (tcp_port !== undefined) {
        const server = net.createServer((s) => {
          this.accepted++
          this.onConnection(s)
        })
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen(tcp_port, host, () => {
            server.off('error', reject)
            resolve()
          })
        })
        server.on('error', (err) => this.deps.logger.error({ err, source: this.options.source }, 'syslog TCP server error'))
        this.tcp = server
      }
    } catch (err) {
      await this.closeListeners()
      throw new RateflowError(ErrorCode.ServiceUnavailable, `syslog ${this.options.source}: cannot listen on ${host} (udp ${udp_port ?? '-'}, tcp ${tcp_port ?? '-'}): ${(err as Error).message}`, { cause: err })
    }
    if (this.merger) {
      const every = Math.max(100, Math.min(1000, (this.options.sessions!.idle_timeout_s * 1000) / 4))
      this.sessionTimer = setInterval(() => this.expireSessions(), every)
      this.sessionTimer.unref()
    }
    this.deps.logger.info({ source: this.options.source, host, ...this.ports }, 'syslog adapter listening')
  }

  /**
   * Drains: 1. stop accepting; a TCP connection is ended on our side (FIN) and read until its peer ends it, up to
   * `TCP_DRAIN_MS`: lines a sender wrote before the stop are still in the socket, and a sender that closed after
   * writing has lost nothing; a connection still open then is cut, its unfinished message a reject 2. close open
   * sessions (`session_close=shutdown`: syslog cannot replay them) 3. flush the batcher and wait until everything is
   * stored.
   */
  async stop(): Promise<void> {
    await this.drainConnections()
    await this.closeListeners()
    if (this.sessionTimer) clearInterval(this.sessionTimer)
    if (this.merger) {
      for (const s of this.merger.drain()) await this.addSeq(s.records.map((record) => ({ record })), 0)
    }
    if (this.udpWait) await this.udpWait
    try {
      await this.feed.flush()
    } catch (err) {
      throw new RateflowError(ErrorCode.StoreFailure, `syslog ${this.options.source}: the last batch was not stored`, { cause: err })
    }
  }

  private async closeListeners(): Promise<void> {
    const udp = this.udp
    const tcp = this.tcp
    this.udp = undefined
    this.tcp = undefined
    if (udp) await new Promise<void>((resolve) => udp.close(() => resolve()))
    if (tcp) {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()))
      for (const s of this.connections.keys()) s.destroy()
      await closed
    }
  }

  private async drainConnections(): Promise<void> {
    const tcp = this.tcp
    if (!tcp) return
    // Senders that connected while the process was busy wait in the kernel's listen backlog, and closing the listener
    // resets them: their lines, which the sender counted as sent, were lost without a word. The event loop is turned
    // (its poll accepts the connections that are ready) until a turn takes in none, 100 turns at most: the listener
    // stays open meanwhile, so a sender that keeps connecting cannot hold the stop.
    for (let turns = 0; turns < 100; turns++) {
      const before = this.accepted
      await new Promise((resolve) => setTimeout(resolve, 0))
      await new Promise((resolve) => setImmediate(resolve))
      if (this.accepted === before) break
    }
    // No new connections; the ones open go on being read.
    const closed = new Promise<void>((resolve) => tcp.close(() => resolve()))
    this.tcp = undefined
    const open = [...this.connections]
    // Read on regardless of the batcher: a socket paused for it would still hold lines its sender wrote before the
    // stop, in our buffer or the kernel's, and a cut would drop them (a sender that keeps its connection open, as
    // rsyslog does, is cut). The batcher takes them all; its flush below stores them.
    this.draining = true
    for (const [socket, c] of open) {
      socket.end()
      c.drain()
    }
    const all = Promise.all(open.map(([, c]) => c.finished))
    let timer: NodeJS.Timeout | undefined
    const drained = await Promise.race([all.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.deps.tcpDrainMs ?? TCP_DRAIN_MS)))])
    clearTimeout(timer)
    if (!drained) {
      this.deps.logger.warn({ source: this.options.source, open: this.connections.size }, 'syslog TCP connections still open at shutdown; cutting them')
      for (const c of this.connections.values()) c.cut()
    }
    await all
    await closed
  }

  private expireSessions(): void {
    if (!this.merger) return
    for (const s of this.merger.expire(this.now())) {
      const p = this.addSeq(s.records.map((record) => ({ record })), 0)
      if (p) p.catch(() => undefined)
    }
  }

  private onDatagram(msg: Buffer, origin: string): void {
    this.counts.messages++
    if (this.udpWait) {
      this.counts.udpDropped++
      if (this.overloadDrops++ === 0) {
        this.deps.logger.warn({ source: this.options.source, origin }, 'syslog UDP overload: the batcher is full, dropping datagrams')
      }
      return
    }
    const p = this.addAll(this.decode(msg, origin))
    if (p) {
      this.udpWait = p.catch((err: unknown) => {
        this.deps.logger.error({ err, source: this.options.source }, 'syslog UDP: batcher failed')
      }).finally(() => {
        this.udpWait = undefined
        if (this.overloadDrops > 0) {
          this.deps.logger.warn({ source: this.options.source, dropped: this.overloadDrops, total_dropped: this.counts.udpDropped }, 'syslog UDP overload ended; datagrams were dropped')
          this.overloadDrops = 0
        }
      })
    }
  }

  private onConnection(socket: net.Socket): void {
    this.counts.tcpConnections++
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`
    const framer = new SyslogFramer(this.options.max_message_bytes)
    let n = 0
    // Finished once the socket has closed and no frame waits for the batcher: only then has every frame it brought
    // been handed on, and a drain may flush the batcher. A count: a cut's frame may wait beside the chain before it.
    let waiting = 0
    let closed = false
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    const settle = (): void => {
      if (closed && waiting === 0) finish()
    }
    // Frames handled one after the other; while one waits for the batcher, the socket is paused.
    const run = (frames: Frame[], done?: () => void): void => {
      for (let i = 0; i < frames.length; i++) {
        const f = frames[i]!
        const origin = `syslog tcp ${peer} #${++n}`
        this.counts.messages++
        let p: Promise<void> | undefined
        if (f.ok) p = this.addAll(this.decode(f.bytes, origin))
        else {
          p = this.addAll([reject(this.options.source, rawText(f.preview), f.error, origin)])
          if (f.fatal) {
            this.counts.tcpFramingCloses++
            this.deps.logger.warn({ source: this.options.source, peer, reason: f.error }, 'syslog TCP framing broken; closing the connection')
            socket.destroy()
          }
        }
        if (p && this.draining) {
          // Handed on already; only its storing is awaited (by finished, then the batcher's flush).
          waiting++
          p.then(
            () => {
              waiting--
              settle()
            },
            (err: unknown) => {
              waiting--
              this.deps.logger.error({ err, source: this.options.source, peer }, 'syslog TCP: batcher failed while draining')
              settle()
            },
          )
          continue
        }
        if (p) {
          waiting++
          socket.pause()
          const rest = frames.slice(i + 1)
          p.then(
            () => {
              waiting--
              run(rest, done)
              // Resumed only if the rest did not stop at the batcher again: resuming then let the next chunk's frames
              // run beside the ones still waiting (out of order, and past the backpressure). Draining reads on anyway.
              if ((waiting === 0 || this.draining) && !socket.destroyed) socket.resume()
              settle()
            },
            (err: unknown) => {
              waiting--
              this.deps.logger.error({ err, source: this.options.source, peer }, 'syslog TCP: batcher failed; closing the connection')
              socket.destroy()
              settle()
            },
          )
          return
        }
      }
      done?.()
    }
    this.connections.set(socket, {
      finished,
      // A socket paused for frames still waiting is resumed by their chain once it has handed them on (in order).
      drain: () => {
        if (waiting === 0 && !socket.destroyed) socket.resume()
      },
      cut: () => {
        run(framer.cut('connection still open when the adapter stopped'))
        socket.destroy()
      },
    })
    socket.on('data', (chunk: Buffer) => run(framer.push(chunk)))
    socket.on('end', () => run(framer.end(), () => socket.end()))
    socket.on('error', (err) => this.deps.logger.debug({ err, peer }, 'syslog TCP connection error'))
    socket.on('close', () => {
      this.connections.delete(socket)
      // Closed without an end (a reset, or an error): bytes of a message it had started are one reject with them. They
      // vanished: no reject, no count, no log line at the default level. (After an end, a cut or a framing error, the
      // framer has nothing left to give.)
      run(framer.cut('connection reset by the sender'))
      closed = true
      settle()
    })
  }

  private decode(bytes: Buffer, origin: string): WireItem[] {
    if (bytes.length > this.options.max_message_bytes) {
      return [reject(this.options.source, rawText(bytes, 1024), `message of ${bytes.length} bytes exceeds the maximum ${this.options.max_message_bytes}; raw keeps its first 1024 bytes`, origin)]
    }
    return decodeSyslog(bytes, { options: this.options, origin, now: new Date(this.now()) })
  }

  /** Adds items in order (through the session merger when configured); a promise means the caller must wait. */
  private addAll(items: WireItem[]): Promise<void> | undefined {
    const expanded: WireItem[] = []
    for (const item of items) {
      if ('record' in item && this.merger) {
        const res = this.merger.push(item.record, this.now())
        if (res.problem !== undefined) {
          expanded.push(reject(this.options.source, item.record.raw ?? '', res.problem, item.record.origin ?? this.options.source))
        } else if (!res.absorbed) expanded.push(item)
        for (const s of res.closed) for (const r of s.records) expanded.push({ record: r })
      } else expanded.push(item)
    }
    return this.addSeq(expanded, 0)
  }

  private addSeq(items: WireItem[], from: number): Promise<void> | undefined {
    for (let i = from; i < items.length; i++) {
      const item = items[i]!
      if ('record' in item) this.counts.records++
      else this.counts.rejects++
      const p = this.feed.add(item)
      if (p) return p.then(() => this.addSeq(items, i + 1))
    }
    return undefined
  }
}
