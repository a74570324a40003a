/**
 * The MQTT adapter (CONTRACT §8 `adapters.mqtt[]`): subscribes with QoS 1 and acknowledges each message to the
 * broker only once every record made from it is stored in JetStream, so a crash loses nothing.
 *
 * How acks are held with mqtt.js v5 (checked against its source, build/lib/handlers/publish.js and client.js):
 * - mqtt.js processes incoming packets one at a time; a QoS 1 PUBACK is sent when `handleMessage(packet, cb)`
 *   calls back without an error. `customHandleAcks` runs in the same serial pipeline, so delaying either until
 *   the batch is stored would admit one message per batch (≈ 1 / max_delay_ms messages per second).
 * - Instead `handleMessage` calls back as soon as the message is in the batcher (later only when the batcher
 *   asks us to wait, which pauses the pipeline and so the socket: backpressure), passing an error value so
 *   mqtt.js does NOT send the PUBACK; the PUBACK is sent by us when the batch is stored (`sendPuback`, through
 *   the client's internal `_sendPacket`, the same call mqtt.js's own handlers use).
 * - The broker keeps unacked messages in the session: fixed `client_id`, `clean: false` and (MQTT 5) a
 *   `session_expiry_s`, so after a crash or reconnect it redelivers them. `receive_maximum` bounds how many
 *   it sends before we ack (and so the size of a batch under QoS 1; brokers may cap it lower, e.g. mosquitto's
 *   `max_inflight_messages`).
 * - A PUBACK is only valid on the connection that received the message: acks of an older connection are
 *   dropped (the broker redelivers those messages; they dedupe downstream by (source, event_id)).
 * - When a batch fails to store, the connection is dropped on purpose: the broker redelivers every unacked
 *   message, including those of the failed batch, to the reconnected client.
 * With sessions configured, the acks of absorbed start/interim messages are held until the merged records are
 * stored, so an open session survives a crash by redelivery; size `receive_maximum` for the open sessions. A
 * message delivered at QoS 0 (every one with `qos: 0`, and one published at QoS 0 whatever the subscription) has
 * no ack and is never redelivered: stop() closes the open sessions holding one (`session_close=shutdown`).
 */
import { readFileSync } from 'node:fs'
import mqtt from 'mqtt'
import type { IClientOptions, IPublishPacket, MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import type { BatchSink, StoredCallback } from '../batcher.js'
import { BatchFeed } from '../batch-feed.js'
import { readPasswordFile, type MqttAdapterOptions } from '../config.js'
import { SessionMerger } from '../sessions.js'
import { reject, type WireItem } from '../wire.js'
import { ErrorCode, RateflowError } from '../../common/errors.js'
import { redactUrl } from '../../common/redact.js'
import { decodePayload } from './payload.js'
import type { WireRecord } from '../../rating-core/record.js'

export interface MqttAdapterDeps {
  /** Stores a batch (JetStream publish); resolves once stored. */
  readonly sink: BatchSink
  readonly logger: Logger
  /** The most bytes a batch's encoding may take (Queue.maxBatchBytes); default DEFAULT_BATCHING.maxBytes. */
  readonly maxBatchBytes?: number
  /** Clock for session idle timeouts; Date.now by default. */
  readonly now?: () => number
}

export interface MqttStats {
  messages: number
  records: number
  rejects: number
  /** PUBACKs sent after storage. */
  acked: number
  /** Acks not sent because their connection is gone (the broker redelivers those messages). */
  acksDropped: number
  connects: number
  failedBatches: number
  sessionsOpen: number
  /** Sessions closed early because `sessions.max_open_sessions` were open (billed, `session_close=max_open_sessions`). */
  sessionsEvicted: number
  /**
   * Times the QoS 1 messages whose acks are held reached `receive_maximum`: the broker sends no more until one is acked.
   * Batching backpressure fills it too (messages waiting for their batch to be stored); with sessions, each start and
   * interim message of an open session holds its slot until the session closes. On MQTT 3.1.1 receive_maximum is not
   * sent, and the broker's own in-flight limit (smaller, often) is what stops it: this count does not see that.
   */
  ackWindowFull: number
}

const NO_LOG = (): void => undefined

/** Passed to mqtt.js's handleMessage callback to keep it from sending the PUBACK itself. */
const HOLD_ACK = Object.freeze(new Error('rateflow: PUBACK held until the batch is stored'))

/** Fires once every part registered with `hold` is released and the latch is sealed. */
class AckLatch {
  private pending = 0
  private sealed = false
  private fired = false
  constructor(private readonly fire: () => void) {}
  hold(): StoredCallback {
    this.pending++
    let released = false
    return () => {
      if (released) return
      released = true
      this.pending--
      this.check()
    }
  }
  seal(): void {
    this.sealed = true
    this.check()
  }
  private check(): void {
    if (this.sealed && this.pending === 0 && !this.fired) {
      this.fired = true
      this.fire()
    }
  }
}

/**
 * The mqtt.js client options for these adapter options. The password (password_env / password_file) and the TLS
 * files are read here, at start, so a missing one fails start() with its option named, and a rotated secret is
 * picked up by a restart.
 */
export function buildClientOptions(o: MqttAdapterOptions, env: NodeJS.ProcessEnv = process.env): IClientOptions {
  const opts: IClientOptions = {
    clientId: o.client_id,
    clean: false,
    protocolVersion: o.protocol_version,
    keepalive: o.keepalive_s,
    reconnectPeriod: o.reconnect_period_ms,
    connectTimeout: o.connect_timeout_s * 1000,
    resubscribe: true,
    // mqtt.js stops reconnecting for good after a refused CONNACK. Once running, keep trying instead: a broker
    // whose credentials are being rotated, or that refuses during its own restart, must not stop usage for good.
    // start() still fails at once on a refusal (see describeConnectError).
    reconnectOnConnackError: true,
  }
  if (o.protocol_version === 5) {
    opts.properties = { sessionExpiryInterval: o.session_expiry_s, receiveMaximum: o.receive_maximum }
  }
  if (o.username !== undefined) opts.username = o.username
  if (o.password !== undefined) opts.password = o.password
  if (o.password_env !== undefined) {
    const p = env[o.password_env]
    if (p === undefined) throw new RateflowError(ErrorCode.BadConfig, `mqtt ${o.source}: environment variable ${o.password_env} (password_env) is not set`)
    opts.password = p
  }
  if (o.password_file !== undefined) {
    try {
      opts.password = readPasswordFile(o.password_file)
    } catch (err) {
      throw new RateflowError(ErrorCode.BadConfig, `mqtt ${o.source}: password_file: ${(err as Error).message}`, { cause: err })
    }
  }
  if (o.tls) {
    const read = (what: string, path: string): Buffer => {
      try {
        return readFileSync(path)
      } catch (err) {
        throw new RateflowError(ErrorCode.BadConfig, `mqtt ${o.source}: cannot read tls.${what} ${path}: ${(err as Error).message}`, { cause: err })
      }
    }
    if (o.tls.ca !== undefined) opts.ca = read('ca', o.tls.ca)
    if (o.tls.cert !== undefined) opts.cert = read('cert', o.tls.cert)
    if (o.tls.key !== undefined) opts.key = read('key', o.tls.key)
    opts.rejectUnauthorized = o.tls.reject_unauthorized
  }
  return opts
}

/** CONNACK reason codes (3.1.1 and 5) that a retry with the same options cannot turn into a connection. */
const FATAL_REFUSALS: Readonly<Record<number, 'protocol' | 'client_id' | 'credentials' | 'not_authorized' | 'banned'>> = Object.freeze({
  1: 'protocol',
  2: 'client_id',
  4: 'credentials',
  5: 'not_authorized',
  0x84: 'protocol',
  0x85: 'client_id',
  0x86: 'credentials',
  0x87: 'not_authorized',
  0x8a: 'banned',
  0x8c: 'credentials',
})

/** What to check for a refused CONNACK; "not authorized" is also how mosquitto answers a wrong password. */
function refusalHint(kind: (typeof FATAL_REFUSALS)[number], o: Pick<MqttAdapterOptions, 'url' | 'username' | 'password' | 'password_env' | 'password_file'>): string {
  // Credentials in the url (`mqtt://user:password@host`) are sent too: such a client is not anonymous.
  const inUrl = urlHasCredentials(o.url)
  const from =
    o.password_env !== undefined ? ` in ${o.password_env} (password_env)` : o.password_file !== undefined ? ` in ${o.password_file} (password_file)` : inUrl ? ' in the url' : ''
  const anonymous = !inUrl && o.username === undefined && o.password === undefined && o.password_env === undefined && o.password_file === undefined
  switch (kind) {
    case 'protocol':
      return 'the broker does not speak this protocol_version; try 4'
    case 'client_id':
      return 'check client_id'
    case 'banned':
      return 'the broker banned this client'
    case 'credentials':
      return `check username and the password${from}`
    case 'not_authorized':
      return anonymous
        ? 'the broker refuses anonymous clients: set username and password_env or password_file'
        : `check username and the password${from}, and that the broker lets this user connect`
  }
}

/** Whether `url` carries a user name (and password) before its host. */
function urlHasCredentials(url: string): boolean {
  try {
    return new URL(url).username !== ''
  } catch {
    return false
  }
}

/** Node's certificate verification failures (tls.TLSSocket authorizationError codes) and what to check for each. */
const TLS_VERIFY_HINT = 'check tls.ca: it must be the CA (chain) that signed the broker\'s certificate'
const TLS_CERT_CODES: Readonly<Record<string, string>> = Object.freeze({
  UNABLE_TO_GET_ISSUER_CERT: TLS_VERIFY_HINT,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: TLS_VERIFY_HINT,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: TLS_VERIFY_HINT,
  SELF_SIGNED_CERT_IN_CHAIN: TLS_VERIFY_HINT,
  DEPTH_ZERO_SELF_SIGNED_CERT: TLS_VERIFY_HINT,
  CERT_SIGNATURE_FAILURE: TLS_VERIFY_HINT,
  CERT_UNTRUSTED: TLS_VERIFY_HINT,
  CERT_REJECTED: TLS_VERIFY_HINT,
  CERT_HAS_EXPIRED: 'the broker\'s certificate has expired',
  CERT_NOT_YET_VALID: 'the broker\'s certificate is not valid yet (check both clocks)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the broker\'s certificate does not name the host of url',
})

/**
 * Why a connection attempt failed, as a sentence naming the broker, the cause and the option to check. `fatal` is
 * true when retrying with the same options cannot succeed (the broker refused the credentials or client id, TLS
 * could not verify a peer, the port does not speak TLS): start() then fails at once instead of waiting out
 * connect_timeout_s. Other errors (connection refused, reset) are transient and only remembered.
 */
export function describeConnectError(
  err: Error & { code?: unknown },
  o: Pick<MqttAdapterOptions, 'source' | 'url' | 'username' | 'password' | 'password_env' | 'password_file'>,
): { fatal: boolean; message: string } {
  const code = err.code
  const tlsUrl = /^(mqtts|ssl|wss):/.test(o.url)
  if (typeof code === 'number' && FATAL_REFUSALS[code] !== undefined) {
    const reason = err.message.replace(/^Connection refused: /, '')
    return { fatal: true, message: `mqtt ${o.source}: ${redactUrl(o.url)} refused the connection: ${reason} (reason code ${code}; ${refusalHint(FATAL_REFUSALS[code]!, o)})` }
  }
  if (typeof code === 'string' && (TLS_CERT_CODES[code] !== undefined || code.startsWith('ERR_SSL_'))) {
    const hint = TLS_CERT_CODES[code] ??
      (code === 'ERR_SSL_WRONG_VERSION_NUMBER' ? 'is this port a TLS listener? mqtt:// is plain, mqtts:// is TLS'
        : code.includes('ALERT') ? 'the broker refused our TLS handshake: check tls.cert and tls.key if it requires a client certificate'
          : 'check the tls options')
    return { fatal: true, message: `mqtt ${o.source}: TLS with ${redactUrl(o.url)} failed: ${opensslReason(err.message)} (${code}; ${hint})` }
  }
  if (err.message === 'TLS not authorized') {
    return { fatal: true, message: `mqtt ${o.source}: TLS with ${redactUrl(o.url)} failed: the broker's certificate is not trusted (${TLS_VERIFY_HINT})` }
  }
  // mosquitto resets a plain listener's connection on a TLS ClientHello; a broker restarting does too, so not fatal.
  if (tlsUrl && code === 'ECONNRESET') return { fatal: false, message: `${err.message}; with mqtts:// this often means the port is not a TLS listener` }
  return { fatal: false, message: err.message }
}

/** OpenSSL's `<hex>:error:<code>:SSL routines:<function>:<reason>:<file>:<line>:…` → `<reason>`; other text unchanged. */
function opensslReason(message: string): string {
  const m = /:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+):/.exec(message)
  return (m ? m[1]! : message).trim()
}

/** The filters to subscribe: `$share/<group>/` prefixed when `shared_group` is set. */
export function subscriptionFilters(o: Pick<MqttAdapterOptions, 'topics' | 'shared_group'>): string[] {
  return o.topics.map((t) => (o.shared_group !== undefined ? `$share/${o.shared_group}/${t}` : t))
}

/**
 * The session tag of a message delivered at QoS 0: nothing to ack, and the broker cannot redeliver it, so a session
 * holding one is closed at stop rather than left for the next start. Compared by identity.
 */
const NOT_REDELIVERED: StoredCallback = () => undefined
const holdsNotRedelivered = (tags: readonly StoredCallback[]): boolean => tags.includes(NOT_REDELIVERED)

export class MqttAdapter {
  private client: MqttClient | undefined
  private readonly feed: BatchFeed
  private readonly merger: SessionMerger<StoredCallback> | undefined
  private readonly now: () => number
  /** Incremented on every CONNACK; an ack is only sent on the connection its message came from. */
  private generation = 0
  private stopping = false
  private readonly inProgress = new Set<Promise<void>>()
  private sessionTimer: NodeJS.Timeout | undefined
  private readonly counts = { messages: 0, records: 0, rejects: 0, acked: 0, acksDropped: 0, connects: 0, ackWindowFull: 0 }
  /** QoS 1 messages of connection `heldGeneration` whose PUBACK is not sent yet (receive_maximum bounds them). */
  private heldAcks = 0
  /** Of those, the ones an open session holds (a part absorbed by the session merger). */
  private sessionHeldAcks = 0
  private heldGeneration = -1
  private lastWindowWarnMs = -Infinity

  constructor(
    private readonly options: MqttAdapterOptions,
    private readonly deps: MqttAdapterDeps,
  ) {
    this.now = deps.now ?? Date.now
    this.feed = new BatchFeed(deps, options.batching, options.source, () => this.dropConnection())
    if (options.sessions) this.merger = new SessionMerger<StoredCallback>(options.sessions)
  }

  get stats(): MqttStats {
    return { ...this.counts, failedBatches: this.feed.failedBatches, sessionsOpen: this.merger?.open ?? 0, sessionsEvicted: this.merger?.evicted ?? 0 }
  }

  /**
   * Connects and subscribes. Rejects at once, naming the broker and the cause, when the broker refuses the
   * credentials or TLS fails verification (describeConnectError); rejects after connect_timeout_s, with the last
   * error seen, when the broker stays unreachable; rejects when it refuses a topic filter.
   */
  async start(): Promise<void> {
    const o = this.options
    const log = this.deps.logger.child({ source: o.source })
    if (o.protocol_version === 4 && o.qos === 1 && this.merger !== undefined) {
      // MQTT 3.1.1 has no receive_maximum: the broker's own limit bounds the messages open sessions can hold.
      log.warn(
        "MQTT 3.1.1 (protocol_version 4) sends no receive_maximum: the broker's limit of in-flight messages (mosquitto's max_inflight_messages, 20 by default) bounds the start and interim messages open sessions hold; past it the broker sends nothing more, stops included",
      )
    }
    // log: mqtt.js's debug logging costs a call per packet even when off (measured ~3% at 30k messages/s).
    const client = mqtt.connect(o.url, { ...buildClientOptions(o), manualConnect: true, log: NO_LOG })
    this.client = client
    // See the file comment: we take over the PUBACK of QoS 1 messages.
    client.handleMessage = (packet, callback) => this.onMessage(packet, callback)
    client.on('connect', (connack) => {
      this.generation++
      this.counts.connects++
      if (this.counts.connects > 1 && !connack.sessionPresent) {
        log.warn('MQTT broker did not keep our session: messages published while disconnected may be lost (check session_expiry_s and broker persistence)')
      }
      log.info({ session_present: connack.sessionPresent, client_id: o.client_id }, 'MQTT connected')
    })
    // The client tries again every second while the broker is away: one line per error, not one a second with its
    // stack (a `run` started before its broker printed thirty of them before giving up).
    let lastError = { text: '', at: 0 }
    client.on('error', (err) => {
      const now = Date.now()
      if (err.message === lastError.text && now - lastError.at < 60_000) return
      lastError = { text: err.message, at: now }
      log.error({ err: err.message }, 'MQTT client error (the same error again within a minute is not logged)')
    })
    // Only a connection that was made can be lost: before the first, start() reports what keeps it from connecting
    // (a refusal said "connection lost; reconnecting" after its error, and nothing reconnected).
    client.on('offline', () => {
      if (this.counts.connects > 0) log.warn('MQTT connection lost; reconnecting')
    })

    const connected = new Promise<void>((resolve, rejectP) => {
      let last: string | undefined
      const timer = setTimeout(() => {
        done()
        rejectP(
          new RateflowError(
            ErrorCode.ServiceUnavailable,
            `mqtt ${o.source}: no connection to ${redactUrl(o.url)} within ${o.connect_timeout_s}s${last !== undefined ? ` (last error: ${last})` : ''}: is an MQTT broker running at that address?`,
          ),
        )
      }, o.connect_timeout_s * 1000)
      const onError = (err: Error): void => {
        const d = describeConnectError(err, o)
        if (!d.fatal) {
          last = d.message
          return
        }
        done()
        rejectP(new RateflowError(ErrorCode.BadConfig, d.message, { cause: err }))
      }
      const onConnect = (): void => {
        done()
        resolve()
      }
      const done = (): void => {
        clearTimeout(timer)
        client.off('error', onError)
        client.off('connect', onConnect)
      }
      client.on('error', onError)
      client.once('connect', onConnect)
    })
    client.connect()
    try {
      await connected
      const grants = await client.subscribeAsync(subscriptionFilters(o), { qos: o.qos })
      const refused = grants.filter((g) => (g.qos as number) >= 0x80)
      if (refused.length > 0) {
        throw new RateflowError(ErrorCode.BadConfig, `mqtt ${o.source}: the broker refused ${refused.map((g) => g.topic).join(', ')} (not authorised, or shared subscriptions unsupported)`)
      }
    } catch (err) {
      await endForGood(client, true)
      this.client = undefined
      throw err instanceof RateflowError ? err : new RateflowError(ErrorCode.ServiceUnavailable, `mqtt ${o.source}: ${(err as Error).message}`, { cause: err })
    }
    if (this.merger) {
      const every = Math.max(100, Math.min(1000, (o.sessions!.idle_timeout_s * 1000) / 4))
      this.sessionTimer = setInterval(() => this.expireSessions(), every)
      this.sessionTimer.unref()
    }
    log.info({ filters: subscriptionFilters(o) }, 'MQTT adapter subscribed')
  }

  /**
   * Drains: 1. stop taking messages (new ones stay unacked and go to the next run) 2. wait for those being added
   * 3. close the open sessions holding a message delivered at QoS 0 (`session_close=shutdown`): the broker cannot
   * redeliver it, so left open its events would be neither rated nor rejected 4. flush and wait until stored, which
   * sends their PUBACKs 5. disconnect, keeping the broker session. The other open sessions are not emitted: their
   * messages are unacked and come back on the next start.
   */
  async stop(): Promise<void> {
    this.stopping = true
    if (this.sessionTimer) clearInterval(this.sessionTimer)
    while (this.inProgress.size > 0) await Promise.all([...this.inProgress])
    let failure: unknown
    try {
      if (this.merger) {
        const adds = this.merger.drain(holdsNotRedelivered).flatMap((s) => this.sessionAdds(s.records, s.tags))
        await this.addSeq(adds, 0)
      }
      await this.feed.flush()
    } catch (err) {
      failure = err
    }
    const client = this.client
    this.client = undefined
    if (client) await endForGood(client, false)
    if (this.merger && this.merger.open > 0) {
      this.deps.logger.info({ source: this.options.source, open_sessions: this.merger.open }, 'MQTT adapter stopped with open sessions; the broker redelivers their messages on the next start')
    }
    if (failure !== undefined) {
      throw new RateflowError(ErrorCode.StoreFailure, `mqtt ${this.options.source}: the last batch was not stored (its messages stay unacked)`, { cause: failure })
    }
  }

  /** Drops the connection without flushing or acking, like a crash; the broker keeps the unacked messages. */
  async abort(): Promise<void> {
    this.stopping = true
    if (this.sessionTimer) clearInterval(this.sessionTimer)
    const client = this.client
    this.client = undefined
    this.generation++
    if (client) await endForGood(client, true)
  }

  private dropConnection(): void {
    const client = this.client
    if (!client || this.stopping) return
    // Acks of this connection are void from now on; the broker redelivers all its unacked messages.
    this.generation++
    this.deps.logger.warn({ source: this.options.source }, 'MQTT: reconnecting so the broker redelivers the messages of the failed batch')
    client.stream?.destroy()
  }

  private sendPuback(messageId: number, generation: number): void {
    if (generation === this.heldGeneration) this.heldAcks--
    const client = this.client
    if (!client || generation !== this.generation || !client.connected) {
      this.counts.acksDropped++
      return
    }
    const internal = client as unknown as { _sendPacket(packet: object, cb?: (err?: Error) => void): void }
    internal._sendPacket({ cmd: 'puback', messageId, reasonCode: 0 }, (err) => {
      if (err) this.deps.logger.warn({ err, messageId }, 'MQTT PUBACK not sent; the broker will redeliver')
    })
    this.counts.acked++
  }

  private onMessage(packet: IPublishPacket, callback: (err?: Error) => void): void {
    const qos1 = packet.qos > 0 && packet.messageId !== undefined
    const hold = qos1 ? HOLD_ACK : undefined
    if (this.stopping) {
      callback(hold)
      return
    }
    this.counts.messages++
    const generation = this.generation
    if (qos1) this.holdAck(generation)
    const messageId = packet.messageId
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
    const items = decodePayload(payload, { options: this.options, topic: packet.topic })
    let p: Promise<void> | undefined
    if (items.length === 1 && this.merger === undefined) {
      // The common message, one record and no sessions: its ack is that one item's, no latch needed.
      const item = items[0]!
      if ('record' in item) this.counts.records++
      else this.counts.rejects++
      p = this.feed.add(item, qos1 ? () => this.sendPuback(messageId!, generation) : undefined)
    } else {
      let bySession = false
      const latch = qos1
        ? new AckLatch(() => {
            if (bySession && generation === this.heldGeneration) this.sessionHeldAcks--
            this.sendPuback(messageId!, generation)
          })
        : undefined
      const { adds, absorbed } = this.expand(items, latch)
      if (latch && absorbed && generation === this.heldGeneration) {
        bySession = true
        this.sessionHeldAcks++
      }
      latch?.seal()
      p = this.addSeq(adds, 0)
    }
    if (!p) {
      callback(hold)
      return
    }
    const tracked = p.then(
      () => callback(hold),
      (err: unknown) => {
        this.deps.logger.error({ err, source: this.options.source, topic: packet.topic }, 'MQTT: could not buffer a message; it stays unacked')
        callback(hold)
      },
    ).finally(() => this.inProgress.delete(tracked))
    this.inProgress.add(tracked)
  }

  /**
   * Counts a QoS 1 message whose PUBACK is now held, and says so when they fill the broker's window. Open sessions hold
   * the acks of their start and interim messages (a call with an interim a minute holds ~60): at `receive_maximum` the
   * broker sends nothing more, not even the stops, so sessions close by idle timeout, billed short, and their stops
   * come after as duplicates. Nothing said so; now a warning does (once a minute), and /v1/stats counts it.
   */
  private holdAck(generation: number): void {
    if (generation !== this.heldGeneration) {
      // A new connection: the old one's acks are void, and the broker redelivers its messages.
      this.heldGeneration = generation
      this.heldAcks = 0
      this.sessionHeldAcks = 0
    }
    this.heldAcks++
    if (this.heldAcks < this.options.receive_maximum) return
    this.counts.ackWindowFull++
    // A window full of messages waiting for their batch is backpressure only (the store releases it within the batch's
    // max delay): said only when open sessions hold half of it or more.
    const now = this.now()
    if (this.sessionHeldAcks * 2 < this.options.receive_maximum || now - this.lastWindowWarnMs < 60_000) return
    this.lastWindowWarnMs = now
    this.deps.logger.warn(
      { source: this.options.source, receive_maximum: this.options.receive_maximum, heldBySessions: this.sessionHeldAcks, sessionsOpen: this.merger?.open ?? 0 },
      'MQTT: the messages whose acks open sessions hold fill receive_maximum; the broker sends no more (stops included) until a session closes, and sessions closing by idle timeout meanwhile are billed short: raise receive_maximum above the open sessions × their messages',
    )
  }

  /**
   * Items → batcher adds, through the session merger; registers every part of the message's ack. `absorbed`: a session
   * still open after it holds a part of it (and so its ack).
   */
  private expand(items: WireItem[], latch: AckLatch | undefined): { adds: Array<{ item: WireItem; onStored?: StoredCallback }>; absorbed: boolean } {
    const out: Array<{ item: WireItem; onStored?: StoredCallback }> = []
    let absorbed = false
    for (const item of items) {
      if ('record' in item && this.merger) {
        const tag = latch ? latch.hold() : NOT_REDELIVERED
        const res = this.merger.push(item.record, this.now(), tag)
        // Held by a session only while it stays open: a stop closes its session in the same push.
        if (res.absorbed) absorbed ||= !res.closed.some((c) => c.tags.includes(tag))
        else {
          // The merger did not keep the tag; release it and hold the part for the batcher instead.
          tag()
          const r = item.record
          const next = res.problem !== undefined ? reject(this.options.source, r.raw ?? '', res.problem, r.origin ?? 'mqtt') : item
          out.push({ item: next, ...(latch && { onStored: latch.hold() }) })
        }
        for (const s of res.closed) out.push(...this.sessionAdds(s.records, s.tags))
        continue
      }
      out.push({ item, ...(latch && { onStored: latch.hold() }) })
    }
    return { adds: out, absorbed }
  }

  /** A closed session's records; its inputs' acks are released once all of them are stored. */
  private sessionAdds(records: readonly WireRecord[], tags: StoredCallback[]): Array<{ item: WireItem; onStored: StoredCallback }> {
    const latch = new AckLatch(() => {
      for (const t of tags) t()
    })
    const adds = records.map((record) => ({ item: { record } as WireItem, onStored: latch.hold() }))
    latch.seal()
    return adds
  }

  private expireSessions(): void {
    if (!this.merger || this.stopping) return
    const adds = this.merger.expire(this.now()).flatMap((s) => this.sessionAdds(s.records, s.tags))
    const p = this.addSeq(adds, 0)
    if (p) p.catch(() => undefined)
  }

  private addSeq(adds: Array<{ item: WireItem; onStored?: StoredCallback }>, from: number): Promise<void> | undefined {
    for (let i = from; i < adds.length; i++) {
      const { item, onStored } = adds[i]!
      if ('record' in item) this.counts.records++
      else this.counts.rejects++
      const p = this.feed.add(item, onStored)
      if (p) return p.then(() => this.addSeq(adds, i + 1))
    }
    return undefined
  }
}

/**
 * Ends a client for good: it is never connected again. mqtt.js (5.x) with manualConnect clears its `disconnecting`
 * flag once end() has closed its stores, and a socket whose 'close' came after that set up its reconnect timer
 * again: a `rateflow run` whose broker refused the credentials printed the error, stopped everything else and then
 * stayed alive, reconnecting once a second, so a supervisor saw a live process. With no reconnect period, none is set up.
 */
async function endForGood(client: MqttClient, force: boolean): Promise<void> {
  client.options.reconnectPeriod = 0
  await client.endAsync(force).catch(() => undefined)
}
