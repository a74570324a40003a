/**
 * Load generators for the adapter benchmarks, run as a child process (`fork`) so that producing the load does not
 * take the event loop of the adapter being measured. Protocol over the IPC channel:
 *   parent → fork(load.js, [JSON LoadSpec]);  child → {type:'ready'} once connected and every payload is built;
 *   parent → {type:'go'};                     child → {type:'done', sent, ms} once the last message is handed off
 *   (MQTT: PUBACKed by the broker; TCP: written to the socket and the socket ended).
 * The same generator feeds Rateflow's adapter and the bare receiver of the raw baseline, so both see the same load.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { perSecond } from './results.js'
import { deviceId } from './sample-data.js'

/** What one generator process sends. */
export type LoadSpec =
  | {
      readonly kind: 'mqtt'
      readonly url: string
      /** Messages to publish, each on `<topicRoot>/<device>/usage`. */
      readonly messages: number
      /** First topic level, so the subscribers of one benchmark run each get only their own load. */
      readonly topicRoot: string
      /** Canonical records per message: 1 is a plain record object, more is an array (CONTRACT §8). */
      readonly recordsPerMessage: number
      /** QoS 1 publishes awaiting their PUBACK at once. */
      readonly window: number
      /** Distinguishes the event ids of separate runs. */
      readonly runId: string
    }
  | {
      readonly kind: 'syslog-tcp'
      readonly port: number
      readonly lines: number
      /** `lf`: newline-terminated lines; `octet`: RFC 6587 octet counting. */
      readonly framing: 'lf' | 'octet'
      readonly runId: string
    }

/** Messages between the bench process and a generator. */
export type LoadMessage = { type: 'ready' } | { type: 'go' } | { type: 'done'; sent: number; ms: number } | { type: 'error'; message: string }

/** A running generator: `go()` starts the load and resolves with the child's report when it has sent everything. */
export interface LoadProcess {
  go(): Promise<{ sent: number; ms: number }>
  kill(): void
}

/** Forks a generator and resolves once it is ready (connected, payloads built). */
export async function startLoad(spec: LoadSpec): Promise<LoadProcess> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const next = (): Promise<LoadMessage> =>
    new Promise((resolve, reject) => {
      const onMsg = (m: LoadMessage) => {
        cleanup()
        resolve(m)
      }
      const onExit = (code: number | null) => {
        cleanup()
        reject(new Error(`bench load generator (${spec.kind}) exited with code ${code} before reporting`))
      }
      const cleanup = () => {
        child.off('message', onMsg)
        child.off('exit', onExit)
      }
      child.on('message', onMsg)
      child.on('exit', onExit)
    })
  const expect = async <T extends LoadMessage['type']>(type: T): Promise<Extract<LoadMessage, { type: T }>> => {
    const m = await next()
    if (m.type === 'error') throw new Error(`bench load generator (${spec.kind}): ${m.message}`)
    if (m.type !== type) throw new Error(`bench load generator (${spec.kind}): expected ${type}, got ${m.type}`)
    return m as Extract<LoadMessage, { type: T }>
  }
  await expect('ready')
  return {
    async go() {
      const done = expect('done')
      child.send({ type: 'go' } satisfies LoadMessage)
      const m = await done
      return { sent: m.sent, ms: m.ms }
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGTERM')
    },
  }
}

/** The device of message n: 50 customers × 10 devices, as in the sample data. */
function deviceOf(n: number): string {
  return deviceId(1 + (n % 50), 1 + (Math.floor(n / 50) % 10))
}

const REGIONS = ['eu', 'us', 'apac']

/** One canonical record of the benchmarks (event ids unique per run). */
function recordJson(runId: string, n: number): string {
  const t = new Date(Date.parse('2026-10-01T00:00:00Z') + (n % 2_592_000) * 1000).toISOString()
  return `{"event_id":"${runId}-${n}","event_time":"${t}","metric":"bytes_out","quantity":"${1000 + (n % 50_000)}","dimensions":{"region":"${REGIONS[n % 3]}"}}`
}

/** One RFC 5424 line with a canonical key=value body (CONTRACT §8); event_time comes from the header. */
export function syslogLine(runId: string, n: number): string {
  const t = new Date(Date.parse('2026-10-01T00:00:00Z') + (n % 2_592_000) * 1000).toISOString()
  const dev = deviceOf(n)
  return `<134>1 ${t} ${dev} fwlog - usage - event_id=${runId}-${n} device_id=${dev} metric=bytes_out quantity=${1000 + (n % 50_000)} dim.region=${REGIONS[n % 3]}`
}

/** MQTT's variable-length "remaining length" field. */
function varint(n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

/** A UTF-8 string with its 2-byte length, as MQTT writes them. */
function mqttString(s: string): Buffer {
  const b = Buffer.from(s)
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}

/** An MQTT 3.1.1 QoS 1 PUBLISH packet. */
function publishPacket(topic: string, messageId: number, payload: Buffer): Buffer {
  const body = Buffer.concat([mqttString(topic), Buffer.from([messageId >> 8, messageId & 0xff]), payload])
  return Buffer.concat([Buffer.from([0x32, ...varint(body.length)]), body])
}

/** Splits an MQTT byte stream into packets: `onPacket(first byte, body)` for each complete one. */
class MqttPacketReader {
  private pending = Buffer.alloc(0)
  constructor(private readonly onPacket: (header: number, body: Buffer) => void) {}
  push(chunk: Buffer): void {
    const b = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk
    let i = 0
    for (;;) {
      if (b.length - i < 2) break
      let len = 0
      let mul = 1
      let j = i + 1
      for (; j < b.length; j++) {
        len += (b[j]! & 0x7f) * mul
        mul *= 128
        if ((b[j]! & 0x80) === 0) break
      }
      if (j >= b.length || b.length - (j + 1) < len) break
      this.onPacket(b[i]!, b.subarray(j + 1, j + 1 + len))
      i = j + 1 + len
    }
    this.pending = i >= b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(i))
  }
}

/** CONNECT with a clean session, keepalive off: MQTT 3.1.1, or MQTT 5 announcing a receive maximum. */
function connectPacket(clientId: string, receiveMaximum?: number): Buffer {
  const head = receiveMaximum === undefined
    ? Buffer.from([4, 0x02, 0, 0])
    : Buffer.from([5, 0x02, 0, 0, 3, 0x21, receiveMaximum >> 8, receiveMaximum & 0xff])
  const body = Buffer.concat([mqttString('MQTT'), head, mqttString(clientId)])
  return Buffer.concat([Buffer.from([0x10, ...varint(body.length)]), body])
}

/**
 * A lean QoS 1 subscriber for the broker's own ceiling: MQTT 5 over a plain socket with the given receive maximum
 * (as the adapter's), counting PUBLISH packets and acknowledging all those of one read with one write. Resolves
 * `done` with performance.now() at the `expect`-th message. It does no more than any subscriber must, so its rate
 * is what the broker can deliver here.
 */
export async function leanSubscriber(url: string, filter: string, receiveMaximum: number, expect: number): Promise<{ done: Promise<number>; close(): void }> {
  const u = new URL(url)
  const socket = net.connect(Number(u.port), u.hostname)
  socket.setNoDelay(true)
  await once(socket, 'connect')
  let count = 0
  let resolveDone!: (t: number) => void
  const done = new Promise<number>((r) => (resolveDone = r))
  let connected!: () => void
  let subscribed!: () => void
  let failed!: (err: Error) => void
  const connack = new Promise<void>((resolve, reject) => ((connected = resolve), (failed = reject)))
  const suback = new Promise<void>((resolve) => (subscribed = resolve))
  let acks: number[] = []
  const reader = new MqttPacketReader((header, body) => {
    const type = header >> 4
    if (type === 3) {
      // PUBLISH: topic, then (QoS > 0) the message id; acknowledge QoS 1 (MQTT 5 allows the 2-byte form on success).
      if (((header >> 1) & 3) === 1) {
        const at = 2 + body.readUInt16BE(0)
        acks.push(0x40, 0x02, body[at]!, body[at + 1]!)
      }
      if (++count === expect) resolveDone(performance.now())
    } else if (type === 2) {
      if (body[1] !== 0) failed(new Error(`broker refused the connection (CONNACK return code ${body[1]})`))
      else connected()
    } else if (type === 9) subscribed()
  })
  socket.on('data', (chunk: Buffer) => {
    reader.push(chunk)
    if (acks.length) {
      socket.write(Buffer.from(acks))
      acks = []
    }
  })
  socket.on('error', (err) => failed(err))
  socket.write(connectPacket(`rateflow-bench-lean-${process.pid}`, receiveMaximum))
  await connack
  // SUBSCRIBE: packet id 1, no properties, the filter at QoS 1.
  const sub = Buffer.concat([Buffer.from([0, 1, 0]), mqttString(filter), Buffer.from([1])])
  socket.write(Buffer.concat([Buffer.from([0x82, ...varint(sub.length)]), sub]))
  await suback
  return { done, close: () => void socket.end(Buffer.from([0xe0, 0x00])) }
}

/**
 * A lean QoS 1 publisher: MQTT 3.1.1 over a plain socket, every PUBLISH packet encoded before the clock starts,
 * at most `window` unacknowledged, done when the broker has PUBACKed every message. A general client (mqtt.js)
 * spends several times the CPU per message, which on two cores would be taken from the broker and the adapter
 * being measured.
 */
async function mqttLoad(spec: Extract<LoadSpec, { kind: 'mqtt' }>, send: (m: LoadMessage) => void, go: Promise<void>): Promise<void> {
  if (spec.window >= 65_535) throw new Error('window must be below 65,535 (MQTT message ids are 16-bit)')
  const packets: Buffer[] = []
  let n = 0
  for (let m = 0; m < spec.messages; m++) {
    let payload: string
    if (spec.recordsPerMessage === 1) payload = recordJson(spec.runId, n++)
    else {
      const recs: string[] = []
      for (let i = 0; i < spec.recordsPerMessage; i++) recs.push(recordJson(spec.runId, n++))
      payload = `[${recs.join(',')}]`
    }
    packets.push(publishPacket(`${spec.topicRoot}/${deviceOf(m)}/usage`, 1 + (m % 65_535), Buffer.from(payload)))
  }
  const url = new URL(spec.url)
  const socket = net.connect(Number(url.port), url.hostname)
  socket.setNoDelay(true)
  await once(socket, 'connect')
  socket.write(connectPacket(`rateflow-bench-pub-${process.pid}`))

  // Incoming packets: CONNACK once, then PUBACKs.
  let acked = 0
  let connected!: () => void
  let failed!: (err: Error) => void
  let allAcked!: () => void
  let ackWaiter: (() => void) | undefined
  const connack = new Promise<void>((resolve, reject) => ((connected = resolve), (failed = reject)))
  const finished = new Promise<void>((resolve) => (allAcked = resolve))
  const reader = new MqttPacketReader((header, body) => {
    const type = header >> 4
    if (type === 2) {
      if (body[1] !== 0) failed(new Error(`broker refused the connection (CONNACK return code ${body[1]})`))
      else connected()
    } else if (type === 4 && ++acked === spec.messages) allAcked()
  })
  socket.on('data', (chunk: Buffer) => {
    reader.push(chunk)
    const w = ackWaiter
    ackWaiter = undefined
    w?.()
  })
  socket.on('error', (err) => failed(err))
  await connack
  send({ type: 'ready' })
  await go
  const t0 = performance.now()
  let next = 0
  while (next < spec.messages) {
    // Write everything the window allows as one buffer, then wait for acks (or for the socket to drain).
    const upTo = Math.min(spec.messages, acked + spec.window)
    if (upTo > next) {
      const ok = socket.write(Buffer.concat(packets.slice(next, upTo)))
      next = upTo
      if (!ok) await once(socket, 'drain')
    } else await new Promise<void>((resolve) => (ackWaiter = resolve))
  }
  await finished
  const ms = performance.now() - t0
  socket.end(Buffer.from([0xe0, 0x00])) // DISCONNECT
  send({ type: 'done', sent: spec.messages, ms })
}

async function syslogLoad(spec: Extract<LoadSpec, { kind: 'syslog-tcp' }>, send: (m: LoadMessage) => void, go: Promise<void>): Promise<void> {
  // Chunks of about 256 KiB, built before the clock starts: the generator should cost as little as possible.
  const chunks: Buffer[] = []
  let parts: string[] = []
  let size = 0
  for (let n = 0; n < spec.lines; n++) {
    const line = syslogLine(spec.runId, n)
    const framed = spec.framing === 'lf' ? `${line}\n` : `${Buffer.byteLength(line)} ${line}`
    parts.push(framed)
    size += framed.length
    if (size >= 1 << 18) {
      chunks.push(Buffer.from(parts.join('')))
      parts = []
      size = 0
    }
  }
  if (parts.length) chunks.push(Buffer.from(parts.join('')))
  const socket = net.connect(spec.port, '127.0.0.1')
  await once(socket, 'connect')
  send({ type: 'ready' })
  await go
  const t0 = performance.now()
  for (const c of chunks) if (!socket.write(c)) await once(socket, 'drain')
  socket.end()
  await once(socket, 'close')
  send({ type: 'done', sent: spec.lines, ms: performance.now() - t0 })
}

// Child process entry: run when forked with a spec argument.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
  const send = (m: LoadMessage): void => void process.send!(m)
  const go = new Promise<void>((resolve) => process.on('message', (m: LoadMessage) => m.type === 'go' && resolve()))
  const work = spec.kind === 'mqtt' ? mqttLoad(spec, send, go) : syslogLoad(spec, send, go)
  work.then(
    () => process.disconnect(),
    (err: unknown) => {
      send({ type: 'error', message: err instanceof Error ? err.message : String(err) })
      process.disconnect()
      process.exitCode = 1
    },
  )
}

/**
 * Runs one load process to completion while `received` waits for the receiving side, and returns the rate:
 * `count` over the time from the go signal to the moment `received` resolved (its resolution time, ms).
 */
export async function timedLoad(spec: LoadSpec, count: number, received: () => Promise<number>): Promise<number> {
  const load = await startLoad(spec)
  try {
    const t0 = performance.now()
    const sent = load.go()
    const t1 = await received()
    await sent
    return perSecond(count, t1 - t0)
  } finally {
    load.kill()
  }
}
