/**
 * Options of the MQTT and syslog adapters (`adapters.mqtt[]`, `adapters.syslog[]` of rateflow.json, CONTRACT §8),
 * their frozen defaults, and `validateAdapterConfig`, which reports every problem at once with its JSON path.
 *
 * JSON field names are snake_case like the rest of the config file; the validated objects keep those names so a
 * message about `$.adapters.mqtt[0].max_message_bytes` points at exactly what the user typed.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { domainToASCII } from 'node:url'
import { ValidationError, type Problem } from '../common/errors.js'
import { redactUrl } from '../common/redact.js'
import { jsonMemberPath } from '../common/strings.js'

/** How a merged session's interim updates carry their metric values. */
export type InterimMode = 'cumulative' | 'delta'

/**
 * Session mediation (adapters/sessions.ts). Records carrying the `id_dimension` dimension are session events;
 * the `kind_dimension` dimension says which one (start / interim / stop, spelled as in `kinds`).
 */
export interface SessionOptions {
  /** Dimension holding the session id; records without it are not session events and pass through. */
  readonly id_dimension: string
  /** Dimension holding the event kind. */
  readonly kind_dimension: string
  /** The values of `kind_dimension` meaning start, interim and stop. */
  readonly kinds: { readonly start: string; readonly interim: string; readonly stop: string }
  /** `cumulative`: each interim/stop carries running totals (the latest wins); `delta`: values add up. */
  readonly interim: InterimMode
  /** A session with no stop closes this long after its last event arrived (seconds). */
  readonly idle_timeout_s: number
  /** Metric of the emitted duration record (seconds from the first to the last event). */
  readonly duration_metric: string
  /**
   * Most sessions open at once per adapter instance. A new session beyond it first closes the least recently
   * active one early (`session_close=max_open_sessions`, billed like an idle close), so a flood of starts without
   * stops cannot grow memory without bound.
   */
  readonly max_open_sessions: number
}

export const DEFAULT_SESSIONS: SessionOptions = Object.freeze({
  id_dimension: 'session_id',
  kind_dimension: 'session_event',
  kinds: Object.freeze({ start: 'start', interim: 'interim', stop: 'stop' }),
  interim: 'cumulative' as const,
  idle_timeout_s: 900,
  duration_metric: 'session_seconds',
  // Measured: an open session of two events (with its raw text, dimensions and MQTT ack tags) holds ≈ 1.8 KB of
  // heap, so 100,000 bound the table near 180 MB per adapter: above a large fleet's concurrent sessions, within a
  // small box's RAM. Lower it on appliances with little memory.
  max_open_sessions: 100_000,
})

/** Micro-batching of one adapter instance (see adapters/batcher.ts). */
export interface BatchingOptions {
  readonly max_records: number
  readonly max_delay_ms: number
  readonly max_in_flight: number
}

export const DEFAULT_ADAPTER_BATCHING: BatchingOptions = Object.freeze({
  max_records: 1000,
  max_delay_ms: 50,
  max_in_flight: 8,
})

/** One produced metric of a mapping: `quantity` names the input field holding its value. */
export interface MetricMapping {
  readonly metric: string
  readonly quantity: string
}

/**
 * Maps a vendor shape (appliance key=value log, vendor JSON) to canonical records. Field names are keys of the
 * key=value body (syslog; SD params also as `param` and `sdid.param`) or dot paths into the JSON object (MQTT).
 * One input yields one record per metric whose quantity field is present.
 */
export interface RecordMapping {
  /** Field with a unique id; the record's event_id is `<value>:<metric>`. Absent: sha1(source, raw, metric). */
  readonly event_id?: string
  /** One field, or several joined with `T` (e.g. `["date","time"]`). Absent: the syslog timestamp. */
  readonly event_time?: string | readonly string[]
  /** How the event_time value is written. */
  readonly time_format: 'iso' | 'unix_s' | 'unix_ms'
  /** Field with a zone offset like `+0200` or `+02:00`, used when the time has none. */
  readonly time_zone_field?: string
  /** Offset used when the time has none and `time_zone_field` is absent or empty. */
  readonly time_zone: string
  readonly device_id?: string
  readonly account_id?: string
  readonly subscription_id?: string
  readonly metrics: readonly MetricMapping[]
  /** Dimension name → input field. Absent fields are left out. */
  readonly dimensions: Readonly<Record<string, string>>
  /** JSON only: dot path to an array of objects inside the payload, each mapped on its own. */
  readonly records_path?: string
}

/**
 * TLS of an `mqtts://` connection. Paths are PEM files, relative to the working directory of `rateflow run`; they
 * are read at start, so a renewed certificate takes effect on the next start.
 */
export interface TlsOptions {
  /** CA certificate(s) that signed the broker's certificate. Absent: Node's built-in public CAs. */
  readonly ca?: string
  /** Client certificate, for brokers that require one (`require_certificate true` in mosquitto); with `key`. */
  readonly cert?: string
  /** Private key of `cert` (unencrypted PEM). */
  readonly key?: string
  /** False accepts any broker certificate: for a lab only, it gives up the protection TLS is for. */
  readonly reject_unauthorized: boolean
}

/** `device_id_level`: which topic level (0-based) holds the device id; `auto` = the single `+` of the matching filter. */
export type DeviceIdLevel = number | 'auto' | 'off'

export interface MqttAdapterOptions {
  /** `mqtt://host:port` or `mqtts://host:port` (what is accepted: brokerUrlProblem). */
  readonly url: string
  /** Topic filters; `$share/<group>/...` filters are allowed as written. */
  readonly topics: readonly string[]
  readonly source: string
  /** Fixed client id, so the broker keeps the session (and unacked messages) across restarts. */
  readonly client_id: string
  /** When set, every filter is subscribed as `$share/<shared_group>/<filter>` so instances split the topic. */
  readonly shared_group?: string
  readonly qos: 0 | 1
  readonly protocol_version: 4 | 5
  readonly username?: string
  /** The password written in rateflow.json. Prefer `password_env` or `password_file`: a config file is often committed. */
  readonly password?: string
  /** Environment variable holding the password (keeps secrets out of the file). */
  readonly password_env?: string
  /** File holding the password (one trailing newline ignored), e.g. a mounted secret; read at start. */
  readonly password_file?: string
  /** Only with an `mqtts://` (or `ssl://`, `wss://`) URL. */
  readonly tls?: TlsOptions
  /** MQTT 5: how long the broker keeps the session after a disconnect. */
  readonly session_expiry_s: number
  /** MQTT 5: how many unacked QoS 1 messages the broker may send us. Bounds a batch's size under QoS 1. */
  readonly receive_maximum: number
  readonly keepalive_s: number
  /** start() fails when the first connection takes longer. */
  readonly connect_timeout_s: number
  readonly reconnect_period_ms: number
  readonly device_id_level: DeviceIdLevel
  readonly format: 'json' | 'msgpack'
  /** Absent: the payload is a canonical record (CONTRACT §2) or an array of them. */
  readonly mapping?: RecordMapping
  readonly max_message_bytes: number
  readonly sessions?: SessionOptions
  readonly batching: BatchingOptions
}

export const DEFAULT_MQTT: Readonly<
  Pick<
    MqttAdapterOptions,
    | 'qos'
    | 'protocol_version'
    | 'session_expiry_s'
    | 'receive_maximum'
    | 'keepalive_s'
    | 'connect_timeout_s'
    | 'reconnect_period_ms'
    | 'device_id_level'
    | 'format'
    | 'max_message_bytes'
  >
> = Object.freeze({
  qos: 1 as const,
  protocol_version: 5 as const,
  session_expiry_s: 86_400,
  receive_maximum: 1000,
  keepalive_s: 30,
  connect_timeout_s: 30,
  reconnect_period_ms: 1000,
  device_id_level: 'auto' as const,
  format: 'json' as const,
  max_message_bytes: 1_048_576,
})

export interface SyslogAdapterOptions {
  readonly source: string
  readonly host: string
  /** Absent: no UDP listener. 0 picks a free port (tests). */
  readonly udp_port?: number
  /** Absent: no TCP listener. 0 picks a free port (tests). */
  readonly tcp_port?: number
  /** Largest message (and RFC 6587 octet count) accepted; bigger ones become rejects. */
  readonly max_message_bytes: number
  /** Built-in mapping name (see adapters/syslog/mappings.ts) or an explicit mapping. Absent: canonical key=value body. */
  readonly mapping?: RecordMapping
  /** Use the syslog HOSTNAME as device_id when the message names no owner. */
  readonly hostname_as_device_id: boolean
  /** Offset of RFC 3164 timestamps, which carry none. */
  readonly rfc3164_time_zone: string
  readonly sessions?: SessionOptions
  readonly batching: BatchingOptions
}

export const DEFAULT_SYSLOG: Readonly<
  Pick<SyslogAdapterOptions, 'host' | 'max_message_bytes' | 'hostname_as_device_id' | 'rfc3164_time_zone'>
> = Object.freeze({
  host: '127.0.0.1',
  max_message_bytes: 65_536,
  hostname_as_device_id: false,
  rfc3164_time_zone: '+00:00',
})

export const DEFAULT_MAPPING: Readonly<Pick<RecordMapping, 'time_format' | 'time_zone' | 'dimensions'>> = Object.freeze({
  time_format: 'iso' as const,
  time_zone: '+00:00',
  dimensions: Object.freeze({}),
})

export interface AdaptersConfig {
  readonly mqtt: readonly MqttAdapterOptions[]
  readonly syslog: readonly SyslogAdapterOptions[]
  /** Validated by the CSV adapter's owner; passed through untouched. */
  readonly csv: readonly unknown[]
}

/** Resolves a built-in mapping name; supplied by the syslog mappings so this file has no dependency on them. */
export type MappingPresets = Readonly<Record<string, RecordMapping>>

// ---------------------------------------------------------------------------------------------------------------
// Validation

type Obj = Record<string, unknown>

class Checker {
  readonly problems: Problem[] = []
  add(path: string, message: string): void {
    this.problems.push({ path, message })
  }
  isObj(v: unknown): v is Obj {
    return typeof v === 'object' && v !== null && !Array.isArray(v)
  }
  obj(v: unknown, path: string): Obj | undefined {
    if (this.isObj(v)) return v
    this.add(path, `must be an object, got ${describe(v)}`)
    return undefined
  }
  keys(o: Obj, path: string, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.add(jsonMemberPath(path, k), `unknown key (allowed: ${allowed.join(', ')})`)
    }
  }
  str(o: Obj, key: string, path: string, opts: { required?: boolean; pattern?: RegExp; hint?: string } = {}): string | undefined {
    const v = o[key]
    if (v === undefined) {
      if (opts.required) this.add(`${path}.${key}`, 'is required')
      return undefined
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.add(`${path}.${key}`, `must be a non-empty string, got ${describe(v)}`)
      return undefined
    }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.add(`${path}.${key}`, opts.hint ?? `must match ${opts.pattern}`)
      return undefined
    }
    return v
  }
  int(o: Obj, key: string, path: string, min: number, max: number, dflt: number): number
  int(o: Obj, key: string, path: string, min: number, max: number, dflt?: undefined): number | undefined
  int(o: Obj, key: string, path: string, min: number, max: number, dflt?: number): number | undefined {
    const v = o[key]
    if (v === undefined) return dflt
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.add(`${path}.${key}`, `must be an integer from ${min} to ${max} (inclusive), got ${describe(v)}`)
      return dflt
    }
    return v
  }
  bool(o: Obj, key: string, path: string, dflt: boolean): boolean {
    const v = o[key]
    if (v === undefined) return dflt
    if (typeof v !== 'boolean') {
      this.add(`${path}.${key}`, `must be true or false, got ${describe(v)}`)
      return dflt
    }
    return v
  }
  oneOf<T extends string | number>(o: Obj, key: string, path: string, allowed: readonly T[], dflt: T): T {
    const v = o[key]
    if (v === undefined) return dflt
    if (!allowed.includes(v as T)) {
      this.add(`${path}.${key}`, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${describe(v)}`)
      return dflt
    }
    return v as T
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)
  if (typeof v === 'object') return 'an object'
  return `${typeof v} ${String(v)}`
}

/** What a `source` (and a dimension name) may hold: letters, digits and _ . : @ - (README). */
export const SOURCE_NAME = /^[A-Za-z0-9_.:@-]+$/
const NAME = SOURCE_NAME
const OFFSET = /^(Z|[+-]\d{2}:?\d{2})$/
/** What SOURCE_NAME allows, in words. */
export const SOURCE_RULE = 'must be letters, digits and _ . : @ -'
/** SOURCE_RULE with an example source, as a problem's message gives it. */
export function sourceHint(example: string): string {
  return `${SOURCE_RULE} (e.g. "${example}")`
}
const SOURCE_HINT = sourceHint('mqtt:plant-7')

function checkSessions(c: Checker, v: unknown, path: string): SessionOptions | undefined {
  const o = c.obj(v, path)
  if (!o) return undefined
  c.keys(o, path, ['id_dimension', 'kind_dimension', 'kinds', 'interim', 'idle_timeout_s', 'duration_metric', 'max_open_sessions'])
  let kinds = DEFAULT_SESSIONS.kinds
  if (o.kinds !== undefined) {
    const k = c.obj(o.kinds, `${path}.kinds`)
    if (k) {
      c.keys(k, `${path}.kinds`, ['start', 'interim', 'stop'])
      kinds = Object.freeze({
        start: c.str(k, 'start', `${path}.kinds`) ?? DEFAULT_SESSIONS.kinds.start,
        interim: c.str(k, 'interim', `${path}.kinds`) ?? DEFAULT_SESSIONS.kinds.interim,
        stop: c.str(k, 'stop', `${path}.kinds`) ?? DEFAULT_SESSIONS.kinds.stop,
      })
      if (new Set([kinds.start, kinds.interim, kinds.stop]).size !== 3) {
        c.add(`${path}.kinds`, 'start, interim and stop must be three different values')
      }
    }
  }
  return Object.freeze({
    id_dimension: c.str(o, 'id_dimension', path, { pattern: NAME }) ?? DEFAULT_SESSIONS.id_dimension,
    kind_dimension: c.str(o, 'kind_dimension', path, { pattern: NAME }) ?? DEFAULT_SESSIONS.kind_dimension,
    kinds,
    interim: c.oneOf(o, 'interim', path, ['cumulative', 'delta'] as const, DEFAULT_SESSIONS.interim),
    idle_timeout_s: c.int(o, 'idle_timeout_s', path, 1, 604_800, DEFAULT_SESSIONS.idle_timeout_s),
    duration_metric: c.str(o, 'duration_metric', path, { pattern: NAME }) ?? DEFAULT_SESSIONS.duration_metric,
    max_open_sessions: c.int(o, 'max_open_sessions', path, 1, 10_000_000, DEFAULT_SESSIONS.max_open_sessions),
  })
}

function checkBatching(c: Checker, v: unknown, path: string): BatchingOptions {
  if (v === undefined) return DEFAULT_ADAPTER_BATCHING
  const o = c.obj(v, path)
  if (!o) return DEFAULT_ADAPTER_BATCHING
  c.keys(o, path, ['max_records', 'max_delay_ms', 'max_in_flight'])
  return Object.freeze({
    max_records: c.int(o, 'max_records', path, 1, 1_000_000, DEFAULT_ADAPTER_BATCHING.max_records),
    max_delay_ms: c.int(o, 'max_delay_ms', path, 1, 60_000, DEFAULT_ADAPTER_BATCHING.max_delay_ms),
    max_in_flight: c.int(o, 'max_in_flight', path, 1, 1024, DEFAULT_ADAPTER_BATCHING.max_in_flight),
  })
}

function checkMapping(c: Checker, v: unknown, path: string, presets: MappingPresets, json: boolean): RecordMapping | undefined {
  if (typeof v === 'string') {
    // Own keys only: "constructor" found Object.prototype's function and took it for a mapping.
    const preset = Object.hasOwn(presets, v) ? presets[v] : undefined
    if (!preset) {
      const names = Object.keys(presets)
      c.add(path, `unknown mapping ${JSON.stringify(v)} (built-in: ${names.length ? names.join(', ') : 'none'}; or give an object)`)
    }
    return preset
  }
  const o = c.obj(v, path)
  if (!o) return undefined
  const keys = ['event_id', 'event_time', 'time_format', 'time_zone_field', 'time_zone', 'device_id', 'account_id',
    'subscription_id', 'metrics', 'dimensions']
  c.keys(o, path, json ? [...keys, 'records_path'] : keys)
  let eventTime: string | readonly string[] | undefined
  const et = o.event_time
  if (typeof et === 'string' && et.length > 0) eventTime = et
  else if (Array.isArray(et) && et.length > 0 && et.every((x) => typeof x === 'string' && x.length > 0)) {
    eventTime = Object.freeze([...(et as string[])])
  } else if (et !== undefined) c.add(`${path}.event_time`, `must be a field name or a non-empty array of field names, got ${describe(et)}`)
  const metrics: MetricMapping[] = []
  if (!Array.isArray(o.metrics) || o.metrics.length === 0) {
    c.add(`${path}.metrics`, `must be a non-empty array of {"metric", "quantity"}, got ${describe(o.metrics)}`)
  } else {
    const seen = new Set<string>()
    o.metrics.forEach((m, i) => {
      const p = `${path}.metrics[${i}]`
      const mo = c.obj(m, p)
      if (!mo) return
      c.keys(mo, p, ['metric', 'quantity'])
      const metric = c.str(mo, 'metric', p, { required: true, pattern: NAME })
      const quantity = c.str(mo, 'quantity', p, { required: true })
      if (metric && seen.has(metric)) c.add(`${p}.metric`, `duplicate metric ${JSON.stringify(metric)}`)
      if (metric) seen.add(metric)
      if (metric && quantity) metrics.push(Object.freeze({ metric, quantity }))
    })
  }
  const dimensions: Record<string, string> = {}
  if (o.dimensions !== undefined) {
    const d = c.obj(o.dimensions, `${path}.dimensions`)
    if (d) {
      for (const [k, f] of Object.entries(d)) {
        if (!NAME.test(k)) c.add(jsonMemberPath(`${path}.dimensions`, k), `dimension name ${SOURCE_HINT.slice(5)}`)
        else if (typeof f !== 'string' || f.length === 0) c.add(jsonMemberPath(`${path}.dimensions`, k), `must be a field name, got ${describe(f)}`)
        else dimensions[k] = f
      }
    }
  }
  const eventId = c.str(o, 'event_id', path)
  const deviceId = c.str(o, 'device_id', path)
  const accountId = c.str(o, 'account_id', path)
  const subscriptionId = c.str(o, 'subscription_id', path)
  const zoneField = c.str(o, 'time_zone_field', path)
  const recordsPath = json ? c.str(o, 'records_path', path) : undefined
  return Object.freeze({
    ...(eventId !== undefined && { event_id: eventId }),
    ...(eventTime !== undefined && { event_time: eventTime }),
    time_format: c.oneOf(o, 'time_format', path, ['iso', 'unix_s', 'unix_ms'] as const, DEFAULT_MAPPING.time_format),
    ...(zoneField !== undefined && { time_zone_field: zoneField }),
    time_zone: c.str(o, 'time_zone', path, { pattern: OFFSET, hint: 'must be "Z" or an offset like "+02:00"' }) ?? DEFAULT_MAPPING.time_zone,
    ...(deviceId !== undefined && { device_id: deviceId }),
    ...(accountId !== undefined && { account_id: accountId }),
    ...(subscriptionId !== undefined && { subscription_id: subscriptionId }),
    metrics: Object.freeze(metrics),
    dimensions: Object.freeze(dimensions),
    ...(recordsPath !== undefined && { records_path: recordsPath }),
  })
}

const MQTT_KEYS = ['url', 'topics', 'source', 'client_id', 'shared_group', 'qos', 'protocol_version', 'username', 'password',
  'password_env', 'password_file', 'tls', 'session_expiry_s', 'receive_maximum', 'keepalive_s', 'connect_timeout_s', 'reconnect_period_ms',
  'device_id_level', 'format', 'mapping', 'max_message_bytes', 'sessions', 'batching'] as const

/** A default client id stable across restarts of this instance (needed for the broker to keep its session). */
export function defaultClientId(source: string, host: string): string {
  return `rateflow_${source}_${host}`.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)
}

/**
 * The password in `path`: the file's text without one trailing newline (so `echo secret > file` works). Throws a
 * plain Error naming the file when it cannot be read or is empty.
 */
export function readPasswordFile(path: string): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
  }
  const password = text.replace(/\r?\n$/, '')
  if (password.length === 0) throw new Error(`${path} is empty`)
  return password
}

/** Where a config entry's secrets and TLS files come from at start; see ValidateAdapterOptions.resources. */
export interface ResourceCheck {
  /** The environment `password_env` is looked up in (process.env at `rateflow run`). */
  readonly env: Readonly<Record<string, string | undefined>>
  /** Clock for certificate expiry; Date.now by default. */
  readonly now?: () => number
}

/**
 * Checks what an MQTT entry takes from the machine at start, so `rateflow run` names every missing secret or bad
 * PEM file by its JSON path before connecting anywhere: password_env set, password_file readable and not empty,
 * TLS files readable and parseable, the client key matching its certificate, the certificate not expired.
 */
function checkMqttResources(c: Checker, m: MqttAdapterOptions, path: string, r: ResourceCheck): void {
  if (m.password_env !== undefined && !r.env[m.password_env]) {
    c.add(`${path}.password_env`, `environment variable ${m.password_env} is not set (or empty)`)
  }
  if (m.password_file !== undefined) {
    try {
      readPasswordFile(m.password_file)
    } catch (err) {
      c.add(`${path}.password_file`, (err as Error).message)
    }
  }
  const t = m.tls
  if (!t) return
  const read = (what: 'ca' | 'cert' | 'key', file: string | undefined): string | undefined => {
    if (file === undefined) return undefined
    try {
      const pem = readFileSync(file, 'utf8')
      if (!pem.includes('-----BEGIN ')) {
        c.add(`${path}.tls.${what}`, `${file} is not a PEM file (no "-----BEGIN" line; convert DER with openssl x509 -inform der)`)
        return undefined
      }
      return pem
    } catch (err) {
      c.add(`${path}.tls.${what}`, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      return undefined
    }
  }
  const parse = <T>(what: 'ca' | 'cert' | 'key', file: string, fn: () => T): T | undefined => {
    try {
      return fn()
    } catch (err) {
      c.add(`${path}.tls.${what}`, `${file} does not parse: ${(err as Error).message}`)
      return undefined
    }
  }
  const caPem = read('ca', t.ca)
  if (caPem !== undefined) parse('ca', t.ca!, () => new X509Certificate(caPem))
  const certPem = read('cert', t.cert)
  const keyPem = read('key', t.key)
  const cert = certPem === undefined ? undefined : parse('cert', t.cert!, () => new X509Certificate(certPem))
  const key = keyPem === undefined ? undefined : parse('key', t.key!, () => createPrivateKey(keyPem))
  if (cert && key && !cert.checkPrivateKey(key)) c.add(`${path}.tls.key`, `${t.key} is not the private key of ${t.cert}`)
  if (cert && Date.parse(cert.validTo) < (r.now ?? Date.now)()) c.add(`${path}.tls.cert`, `${t.cert} expired on ${cert.validTo}`)
}

/**
 * The entry at `path`, its problems added to `c`; undefined when it is no object. Returned with problems too, as far as
 * it could be read (a bad field at its default; a bad url, source or client id ''), for the checks across entries.
 */
function checkMqtt(c: Checker, v: unknown, path: string, presets: MappingPresets, hostname: string): MqttAdapterOptions | undefined {
  const o = c.obj(v, path)
  if (!o) return undefined
  c.keys(o, path, MQTT_KEYS)
  let url = c.str(o, 'url', path, { required: true })
  const urlProblem = url === undefined ? undefined : brokerUrlProblem(url)
  if (urlProblem !== undefined) {
    c.add(`${path}.url`, urlProblem)
    // A url wrong only past its broker (a path) still names the broker, which the checks across entries compare.
    if (brokerUrlProblem(url!.replace(/^([a-z]+:\/\/[^/?#]*).*$/s, '$1')) !== undefined) url = undefined
  }
  const source = c.str(o, 'source', path, { required: true, pattern: NAME, hint: SOURCE_HINT })
  const topics: string[] = []
  if (!Array.isArray(o.topics) || o.topics.length === 0) {
    c.add(`${path}.topics`, `must be a non-empty array of topic filters, got ${describe(o.topics)}`)
  } else {
    o.topics.forEach((t, i) => {
      const problem = topicFilterProblem(t)
      if (problem) c.add(`${path}.topics[${i}]`, problem)
      else topics.push(t as string)
    })
  }
  const sharedGroup = c.str(o, 'shared_group', path, { pattern: /^[^/+#]+$/, hint: 'must not contain / + or #' })
  if (sharedGroup && topics.some((t) => t.startsWith('$share/'))) {
    c.add(`${path}.shared_group`, 'cannot be combined with topics that already start with $share/')
  }
  let level: DeviceIdLevel = DEFAULT_MQTT.device_id_level
  const dl = o.device_id_level
  if (dl !== undefined) {
    if (dl === 'auto' || dl === 'off' || (typeof dl === 'number' && Number.isInteger(dl) && dl >= 0 && dl < 64)) level = dl
    else c.add(`${path}.device_id_level`, `must be "auto", "off" or a topic level index from 0, got ${describe(dl)}`)
  }
  let tls: TlsOptions | undefined
  if (o.tls !== undefined) {
    const t = c.obj(o.tls, `${path}.tls`)
    if (t) {
      c.keys(t, `${path}.tls`, ['ca', 'cert', 'key', 'reject_unauthorized'])
      const ca = c.str(t, 'ca', `${path}.tls`)
      const cert = c.str(t, 'cert', `${path}.tls`)
      const key = c.str(t, 'key', `${path}.tls`)
      if ((cert === undefined) !== (key === undefined)) c.add(`${path}.tls`, 'cert and key must be given together')
      tls = Object.freeze({
        ...(ca !== undefined && { ca }),
        ...(cert !== undefined && { cert }),
        ...(key !== undefined && { key }),
        reject_unauthorized: c.bool(t, 'reject_unauthorized', `${path}.tls`, true),
      })
    }
  }
  // By the scheme as written, so a url bad elsewhere (its port, its host) does not hide this problem until the next run.
  const plainScheme = typeof o.url === 'string' ? /^(mqtt|tcp|ws):\/\//.exec(o.url)?.[1] : undefined
  if (tls !== undefined && plainScheme !== undefined) {
    c.add(`${path}.tls`, `needs an mqtts:// URL; with ${plainScheme}:// the connection would be plain TCP and tls ignored`)
  }
  const username = c.str(o, 'username', path)
  const password = c.str(o, 'password', path)
  const passwordEnv = c.str(o, 'password_env', path, { pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, hint: 'must be an environment variable name' })
  const passwordFile = c.str(o, 'password_file', path)
  const passwordKeys = (['password', 'password_env', 'password_file'] as const).filter((k) => o[k] !== undefined)
  if (passwordKeys.length > 1) c.add(`${path}.${passwordKeys[1]!}`, `give one of password, password_env, password_file (found ${passwordKeys.join(' and ')})`)
  const format = c.oneOf(o, 'format', path, ['json', 'msgpack'] as const, DEFAULT_MQTT.format)
  const mapping = o.mapping === undefined ? undefined : checkMapping(c, o.mapping, `${path}.mapping`, presets, true)
  if (mapping && mapping.event_time === undefined) {
    c.add(`${path}.mapping.event_time`, 'is required for MQTT (a message has no timestamp of its own)')
  }
  const sessions = o.sessions === undefined ? undefined : checkSessions(c, o.sessions, `${path}.sessions`)
  const clientId = c.str(o, 'client_id', path, { pattern: /^[\x21-\x7e]{1,128}$/, hint: 'must be 1–128 printable ASCII characters' })
  // Every field is checked before giving up on the entry, so one run reports all its problems.
  const result = {
    url: url ?? '',
    topics: Object.freeze(topics),
    source: source ?? '',
    // '' when unknown (client_id or, without one, source bad): then no other entry is compared with it.
    client_id: clientId ?? (o.client_id === undefined && source !== undefined ? defaultClientId(source, hostname) : ''),
    ...(sharedGroup !== undefined && { shared_group: sharedGroup }),
    qos: c.oneOf(o, 'qos', path, [0, 1] as const, DEFAULT_MQTT.qos),
    protocol_version: c.oneOf(o, 'protocol_version', path, [4, 5] as const, DEFAULT_MQTT.protocol_version),
    ...(username !== undefined && { username }),
    ...(password !== undefined && { password }),
    ...(passwordEnv !== undefined && { password_env: passwordEnv }),
    ...(passwordFile !== undefined && { password_file: passwordFile }),
    ...(tls !== undefined && { tls }),
    session_expiry_s: c.int(o, 'session_expiry_s', path, 0, 4_294_967_295, DEFAULT_MQTT.session_expiry_s),
    receive_maximum: c.int(o, 'receive_maximum', path, 1, 65_535, DEFAULT_MQTT.receive_maximum),
    keepalive_s: c.int(o, 'keepalive_s', path, 0, 65_535, DEFAULT_MQTT.keepalive_s),
    connect_timeout_s: c.int(o, 'connect_timeout_s', path, 1, 3600, DEFAULT_MQTT.connect_timeout_s),
    reconnect_period_ms: c.int(o, 'reconnect_period_ms', path, 100, 600_000, DEFAULT_MQTT.reconnect_period_ms),
    device_id_level: level,
    format,
    ...(mapping !== undefined && { mapping }),
    max_message_bytes: c.int(o, 'max_message_bytes', path, 16, 268_435_455, DEFAULT_MQTT.max_message_bytes),
    ...(sessions !== undefined && { sessions }),
    batching: checkBatching(c, o.batching, `${path}.batching`),
  }
  if (result.protocol_version === 4 && passwordKeys.length > 0 && username === undefined) {
    c.add(`${path}.username`, 'is required with a password on MQTT 3.1.1 (protocol_version 4)')
  }
  return Object.freeze(result)
}

const URL_HINT = 'must be a URL like "mqtt://127.0.0.1:1883" or "mqtts://broker:8883"'

/**
 * Undefined when `url` is a broker URL the client library connects to as written; otherwise what is wrong with it. The
 * library reads it with the legacy url.parse, which takes what the WHATWG parser refuses: a port above 65535 threw
 * ERR_SOCKET_BAD_PORT out of start() (an unhandled rejection), port 0 or `abc` connected to 1883 (maybe another
 * broker), `bad host` connected to `bad`. A path is sent only over ws:// and wss:// (the HTTP request's); over the
 * others the library drops it, so one there is a mistake of the writer's, not a broker's address.
 */
export function brokerUrlProblem(url: string): string | undefined {
  const scheme = /^(mqtts?|tcp|ssl|wss?):\/\//.exec(url)?.[1]
  if (scheme === undefined) return URL_HINT
  // The WHATWG parser drops tabs and newlines anywhere, and url.parse reads up to a space: neither is the text written.
  if (/[\s\x00-\x1f\x7f]/.test(url)) return `must not contain spaces or control characters, got ${describe(redactUrl(url))}`
  // Credentials end at the last "@" (as the WHATWG parser reads them). A "/", "?" or "#" before it ends the host early:
  // the client would connect to the user name as a host, and the password's start would be quoted as the port or path.
  const at = url.lastIndexOf('@')
  if (at > scheme.length + 3 && /[/?#]/.test(url.slice(scheme.length + 3, at))) {
    return 'has "/", "?" or "#" before its last "@": in a user name or password write them percent-encoded (%2F, %3F, %23), or give username and password_env or password_file; in a path write "@" as %40'
  }
  let u: URL | undefined
  try {
    u = new URL(url)
  } catch {
    u = undefined
  }
  // The authority as written: userinfo@host:port, the host an IPv6 address in brackets or a name.
  const written = /^[a-z]+:\/\/(?:[^/?#]*@)?(\[[^\]/?#]*\]?|[^:/?#]*)(?::([^/?#]*))?/.exec(url)!
  const host = u ? u.hostname : written[1]!
  const port = u ? u.port : written[2]
  if (port !== undefined && port !== '' && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65_535)) {
    return `port ${JSON.stringify(port)} must be a number from 1 to 65535 (e.g. "${scheme}://${host || '127.0.0.1'}:1883")`
  }
  if (host === '') return `has no host (e.g. "${scheme}://127.0.0.1:1883")`
  // A name (letters, digits, - . _), an IPv4 address or an IPv6 one in brackets; the WHATWG parser checks the brackets'.
  // An international name (bröker.example) comes back percent-encoded for these schemes; the client library connects
  // to its ASCII form (xn--brker-kua.example), so that is what is checked.
  if (!u || !/^([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])$/.test(asciiHost(host))) return `host ${JSON.stringify(written[1])} is not a host name or IP address`
  if (scheme !== 'ws' && scheme !== 'wss' && u.pathname !== '' && u.pathname !== '/') {
    return `path ${JSON.stringify(u.pathname)} would be ignored: only ws:// and wss:// URLs have one (give "${scheme}://${u.host}")`
  }
  return undefined
}

/** A host name as the WHATWG parser gives it for a scheme of its own (percent-encoded), in its ASCII form; '' if none. */
function asciiHost(host: string): string {
  if (!host.includes('%')) return host
  try {
    return domainToASCII(decodeURIComponent(host))
  } catch {
    return ''
  }
}

/** Undefined when `t` is a valid MQTT topic filter; otherwise what is wrong with it. */
export function topicFilterProblem(t: unknown): string | undefined {
  if (typeof t !== 'string' || t.length === 0) return `must be a non-empty topic filter, got ${describe(t)}`
  let filter = t
  if (t.startsWith('$share/')) {
    const m = /^\$share\/([^/+#]+)\/(.+)$/.exec(t)
    if (!m) return 'a shared subscription must look like "$share/<group>/<filter>"'
    filter = m[2]!
  }
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return '"#" must be a whole level and the last one'
    if (l.includes('+') && l !== '+') return '"+" must be a whole level'
  }
  return undefined
}

const SYSLOG_KEYS = ['source', 'host', 'udp_port', 'tcp_port', 'max_message_bytes', 'mapping', 'hostname_as_device_id',
  'rfc3164_time_zone', 'sessions', 'batching'] as const

/** Like checkMqtt: undefined only when the entry is no object; with problems, as far as it could be read. */
function checkSyslog(c: Checker, v: unknown, path: string, presets: MappingPresets): SyslogAdapterOptions | undefined {
  const o = c.obj(v, path)
  if (!o) return undefined
  c.keys(o, path, SYSLOG_KEYS)
  const source = c.str(o, 'source', path, { required: true, pattern: NAME, hint: SOURCE_HINT })
  const udp = c.int(o, 'udp_port', path, 0, 65_535)
  const tcp = c.int(o, 'tcp_port', path, 0, 65_535)
  if (o.udp_port === undefined && o.tcp_port === undefined) c.add(path, 'needs udp_port, tcp_port or both')
  const mapping = o.mapping === undefined ? undefined : checkMapping(c, o.mapping, `${path}.mapping`, presets, false)
  const sessions = o.sessions === undefined ? undefined : checkSessions(c, o.sessions, `${path}.sessions`)
  const result = {
    source: source ?? '',
    // '' when bad, so no other listener is compared with the default in its place.
    host: c.str(o, 'host', path) ?? (o.host === undefined ? DEFAULT_SYSLOG.host : ''),
    ...(udp !== undefined && { udp_port: udp }),
    ...(tcp !== undefined && { tcp_port: tcp }),
    max_message_bytes: c.int(o, 'max_message_bytes', path, 64, 16_777_216, DEFAULT_SYSLOG.max_message_bytes),
    ...(mapping !== undefined && { mapping }),
    hostname_as_device_id: c.bool(o, 'hostname_as_device_id', path, DEFAULT_SYSLOG.hostname_as_device_id),
    rfc3164_time_zone: c.str(o, 'rfc3164_time_zone', path, { pattern: OFFSET, hint: 'must be "Z" or an offset like "+02:00"' }) ?? DEFAULT_SYSLOG.rfc3164_time_zone,
    ...(sessions !== undefined && { sessions }),
    batching: checkBatching(c, o.batching, `${path}.batching`),
  }
  return Object.freeze(result)
}

export interface ValidateAdapterOptions {
  /** Built-in mappings a config may name (syslog: `BUILTIN_MAPPINGS` of adapters/syslog/mappings.ts). */
  readonly presets?: MappingPresets
  /** Part of the default MQTT client id; defaults to os.hostname() at the caller. */
  readonly hostname?: string
  /** JSON path of `doc`, for messages; `$.adapters` when validating rateflow.json's section. */
  readonly path?: string
  /**
   * When given, also checks what the MQTT adapters will take from this machine at start (password_env set,
   * password_file and TLS files readable and valid), each problem at its JSON path. Absent: the document alone.
   */
  readonly resources?: ResourceCheck
}

/**
 * A broker listener's identity for comparing adapters: its scheme (`tcp` as `mqtt`, `ssl` and `tls` as `mqtts`: the
 * client library's aliases), host (localhost, 127.0.0.1 and ::1 as one loopback) and port (the scheme's default when
 * none). Two listeners of one broker (mqtt and mqtts) still compare as two: the URLs alone cannot tell one broker from
 * two on one host.
 */
export function brokerKey(url: string): string {
  try {
    const u = new URL(url)
    const given = u.protocol.replace(/:$/, '').toLowerCase()
    const scheme = ({ tcp: 'mqtt', ssl: 'mqtts', tls: 'mqtts' } as Record<string, string>)[given] ?? given
    const port = u.port || ({ mqtt: '1883', mqtts: '8883', ws: '80', wss: '443' } as Record<string, string>)[scheme] || ''
    const host = u.hostname.toLowerCase()
    const loopback = host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host === '::1'
    return `${scheme}://${loopback ? 'loopback' : host}:${port}`
  } catch {
    return url
  }
}

/** The topic filter of a subscription, without a `$share/<group>/` prefix. */
function sharedFilter(topic: string): string {
  const m = /^\$share\/[^/]+\/(.*)$/.exec(topic)
  return m ? m[1]! : topic
}

/**
 * True when some topic matches both MQTT filters: `+` is one level, `#` the rest (the parent level included: `a/#`
 * matches `a`), and a wildcard first level matches no topic starting with `$` (MQTT 4.7.2).
 */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split('/')
  const y = b.split('/')
  if ((x[0]!.startsWith('$') && (y[0] === '+' || y[0] === '#')) || (y[0]!.startsWith('$') && (x[0] === '+' || x[0] === '#'))) return false
  for (let i = 0; ; i++) {
    const p = x[i]
    const q = y[i]
    if (p === '#' || q === '#') return true
    if (p === undefined || q === undefined) return p === q
    if (p !== '+' && q !== '+' && p !== q) return false
  }
}

/** What checkAdapterConfig found. */
export interface AdapterConfigCheck {
  /** Every problem, each at its JSON path; none when `config` is valid. */
  readonly problems: readonly Problem[]
  /**
   * Without problems, the validated config. With some, every entry that is an object as far as it could be read (a bad
   * field at its default; a bad url, source or client id ''): for the caller's checks across sections (ports, sources),
   * so that one run names every problem; never to start anything.
   */
  readonly config: AdaptersConfig
  /** The JSON path of each entry of config.mqtt and config.syslog, by index (an entry that is no object has none). */
  readonly paths: { readonly mqtt: readonly string[]; readonly syslog: readonly string[] }
}

/** validateAdapterConfig's checks, returning the problems with what could be read instead of throwing. */
export function checkAdapterConfig(doc: unknown, opts: ValidateAdapterOptions = {}): AdapterConfigCheck {
  const path = opts.path ?? '$.adapters'
  const presets = opts.presets ?? {}
  const hostname = opts.hostname ?? 'localhost'
  const c = new Checker()
  const out: { mqtt: MqttAdapterOptions[]; syslog: SyslogAdapterOptions[]; csv: unknown[] } = { mqtt: [], syslog: [], csv: [] }
  const paths: { mqtt: string[]; syslog: string[] } = { mqtt: [], syslog: [] }
  const o = c.obj(doc, path)
  if (o) {
    c.keys(o, path, ['mqtt', 'syslog', 'csv'])
    const list = (key: string): unknown[] => {
      const v = o[key]
      if (v === undefined) return []
      if (!Array.isArray(v)) {
        c.add(`${path}.${key}`, `must be an array, got ${describe(v)}`)
        return []
      }
      return v
    }
    // Every entry that is an object is checked across entries and against the machine, bad fields or not (a missing
    // url once hid an unset password_env until the next run); what a check needs and is bad (url, client id) is ''.
    list('mqtt').forEach((m, i) => {
      const r = checkMqtt(c, m, `${path}.mqtt[${i}]`, presets, hostname)
      if (r) out.mqtt.push(r), paths.mqtt.push(`${path}.mqtt[${i}]`)
      if (r && opts.resources) checkMqttResources(c, r, `${path}.mqtt[${i}]`, opts.resources)
    })
    list('syslog').forEach((s, i) => {
      const r = checkSyslog(c, s, `${path}.syslog[${i}]`, presets)
      if (r) out.syslog.push(r), paths.syslog.push(`${path}.syslog[${i}]`)
    })
    out.csv = list('csv')
    // Sources are compared over every entry, valid or not, so a duplicate is reported in the same run.
    const sources = new Map<string, string>()
    for (const key of ['mqtt', 'syslog'] as const) {
      const entries = Array.isArray(o[key]) ? (o[key] as unknown[]) : []
      entries.forEach((e, i) => {
        const source = c.isObj(e) && typeof e.source === 'string' ? e.source : undefined
        if (source === undefined) return
        const first = sources.get(source)
        if (first) c.add(`${path}.${key}[${i}].source`, `${JSON.stringify(source)} is already used by ${first}`)
        else sources.set(source, `${path}.${key}[${i}]`)
      })
    }
    const clientIds = new Map<string, string>()
    out.mqtt.forEach((m, i) => {
      if (m.url === '' || m.client_id === '') return
      const key = `${brokerKey(m.url)}\u0000${m.client_id}`
      const first = clientIds.get(key)
      if (first !== undefined) {
        c.add(`${paths.mqtt[i]!}.client_id`, `${JSON.stringify(m.client_id)} is also used by ${first} on the same broker; the broker would disconnect one of them in a loop`)
      } else clientIds.set(key, paths.mqtt[i]!)
    })
    // Two adapters subscribed to one broker with filters a topic can match both: each such message would be rated
    // twice, once under each source (the dedupe key is (source, event_id), so nothing catches it). One shared
    // subscription split between two adapters is no way out: a message redelivered after a crash may go to the other
    // member, and be rated again under its source.
    out.mqtt.forEach((m, i) => {
      if (m.url === '') return
      m.topics.forEach((t, ti) => {
        const a = sharedFilter(t)
        // The first earlier adapter on the same broker with a filter that overlaps this one: one problem per filter.
        for (let j = 0; j < i; j++) {
          const earlier = out.mqtt[j]!
          if (earlier.url === '' || brokerKey(earlier.url) !== brokerKey(m.url)) continue
          const clash = earlier.topics.find((u) => filtersOverlap(a, sharedFilter(u)))
          if (clash === undefined) continue
          c.add(
            `${paths.mqtt[i]!}.topics[${ti}]`,
            `${JSON.stringify(t)} overlaps ${JSON.stringify(clash)} of ${paths.mqtt[j]!} on the same broker: a message on a topic both match would be rated twice, once under each source; subscribe to it in one adapter`,
          )
          break
        }
      })
    })
  }
  return {
    problems: c.problems,
    config: Object.freeze({ mqtt: Object.freeze(out.mqtt), syslog: Object.freeze(out.syslog), csv: Object.freeze(out.csv) }),
    paths,
  }
}

/**
 * Validates the `adapters` section of rateflow.json. Throws one ValidationError listing every problem with its
 * JSON path; otherwise returns frozen options with defaults filled in. Two instances (MQTT or syslog) sharing a
 * `source` is an error: the dedupe key (source, event_id) would mix their events.
 */
export function validateAdapterConfig(doc: unknown, opts: ValidateAdapterOptions = {}): AdaptersConfig {
  const r = checkAdapterConfig(doc, opts)
  if (r.problems.length > 0) throw new ValidationError('invalid adapters config', r.problems)
  return r.config
}
