/**
 * One MQTT message → WireItems. Payloads are JSON (default) or msgpack; the decoded value is a canonical record
 * (CONTRACT §2) or an array of them, or, with a mapping, a vendor object (or array, or `records_path` array).
 * The topic supplies device_id when the record names no owner (`device_id_level`).
 *
 * Contract: every message yields at least one item; an undecodable payload is one reject; in an array, each bad
 * element is its own reject (origin `mqtt <topic> [i]`) and the good ones go on.
 */
import { createHash } from 'node:crypto'
import { unpack } from 'msgpackr'
import type { DeviceIdLevel, MqttAdapterOptions, RecordMapping } from '../config.js'
import { applyMapping, completeRecord, getPath, type MappingContext, type PartialRecord } from '../mapping.js'
import { jsonPathText, scanJsonKeys, type DuplicateKey } from '../../common/json-keys.js'
import { scanMsgpackKeys } from './msgpack-keys.js'
import { RAW_PREVIEW_BYTES, inexactNumber, notTextReason, inexactQuantity, outOfRangeNumber, quantityText, rawText, reject, reservedDimensionName, type WireItem } from '../wire.js'

export interface PayloadContext {
  readonly options: Pick<MqttAdapterOptions, 'source' | 'format' | 'mapping' | 'max_message_bytes' | 'device_id_level' | 'topics'>
  readonly topic: string
}

/** The filter without a `$share/<group>/` prefix. */
function plainFilter(filter: string): string {
  const m = /^\$share\/[^/]+\/(.+)$/.exec(filter)
  return m ? m[1]! : filter
}

/** MQTT topic matching: `+` one level, `#` the rest (including none). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = plainFilter(filter).split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

/**
 * The device id a topic carries: level `n` (0-based) of the topic; `auto`: the level of the single `+` of the
 * first matching filter (`devices/+/usage` → `devices/fw-1/usage` gives fw-1); `off`: none.
 */
export function topicDeviceId(topic: string, filters: readonly string[], level: DeviceIdLevel): string | undefined {
  if (level === 'off') return undefined
  if (typeof level === 'number') return topic.split('/')[level] || undefined
  // `auto` is looked up per topic: a fleet sends on a bounded set of topics, one per device, and matching every
  // filter against every message was a third of the decode time at 30k messages/s.
  let cache = autoDeviceIds.get(filters)
  if (cache === undefined) autoDeviceIds.set(filters, (cache = new Map()))
  let id = cache.get(topic)
  if (id === undefined) {
    id = autoDeviceId(topic, filters) ?? null
    // Bounded: a flood of distinct topics costs the matching again, never unbounded memory.
    if (cache.size >= TOPIC_CACHE_SIZE) cache.clear()
    cache.set(topic, id)
  }
  return id ?? undefined
}

/** Topic → device id (null: none) per filter list, for `device_id_level: auto`. */
const autoDeviceIds = new WeakMap<readonly string[], Map<string, string | null>>()
const TOPIC_CACHE_SIZE = 100_000

function autoDeviceId(topic: string, filters: readonly string[]): string | undefined {
  const parts = topic.split('/')
  for (const filter of filters) {
    if (!topicMatches(filter, topic)) continue
    const f = plainFilter(filter).split('/')
    const plus = f.flatMap((x, i) => (x === '+' ? [i] : []))
    if (plus.length === 1) return parts[plus[0]!] || undefined
  }
  return undefined
}

const RECORD_KEYS = new Set(['event_id', 'source', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric', 'quantity', 'dimensions'])

function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (v instanceof Uint8Array) return 'binary'
  return typeof v === 'object' ? 'an object' : `${typeof v}`
}

/** A canonical record object → PartialRecord, or what is wrong with it. */
function canonicalFromObject(v: unknown, source: string): PartialRecord | { error: string } {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) {
    return { error: `expected a record object, got ${typeName(v)}` }
  }
  const o = v as Record<string, unknown>
  // for…in rather than Object.keys/entries: no arrays per record (this runs for every MQTT record).
  for (const k in o) if (!RECORD_KEYS.has(k)) return { error: `unknown field ${JSON.stringify(k)} (a vendor shape needs a mapping)` }
  if (o.source !== undefined && o.source !== source) {
    return { error: `source ${JSON.stringify(o.source)} differs from the adapter's ${JSON.stringify(source)}; leave it out` }
  }
  const p: Partial<PartialRecord> = {}
  for (const k of STRING_FIELDS) {
    const x = o[k]
    if (x === undefined || x === null) continue
    let s: string
    if (typeof x === 'string') s = x
    else if (k === 'event_id' && typeof x === 'number' && Number.isSafeInteger(x)) s = String(x)
    else return { error: `${k} must be a string, got ${typeName(x)}` }
    if (s !== '') p[k] = s
  }
  if (p.metric === undefined) return { error: 'missing metric' }
  if (o.quantity === undefined || o.quantity === null) return { error: 'missing quantity' }
  const q = quantityText(o.quantity)
  if (q === undefined) return { error: `quantity must be a decimal string or number, got ${outOfRangeNumber(o.quantity) ?? typeName(o.quantity)}` }
  const inexact = inexactQuantity(o.quantity)
  if (inexact !== undefined) return { error: inexact }
  p.quantity = q
  if (o.dimensions !== undefined && o.dimensions !== null) {
    const d = o.dimensions
    if (typeof d !== 'object' || Array.isArray(d) || d instanceof Uint8Array) return { error: `dimensions must be an object, got ${typeName(d)}` }
    let dims: Record<string, string> | undefined
    const src = d as Record<string, unknown>
    for (const k in src) {
      const x = src[k]
      const reserved = reservedDimensionName(k)
      if (reserved !== undefined) return { error: reserved }
      const inexact = inexactNumber(x)
      if (inexact !== undefined) return { error: `dimensions.${k} must be a string, got ${inexact}` }
      if (typeof x === 'string') (dims ??= {})[k] = x
      else if (typeof x === 'number' || typeof x === 'boolean') (dims ??= {})[k] = String(x)
      else return { error: `dimensions.${k} must be a string, got ${typeName(x)}` }
    }
    if (dims !== undefined) p.dimensions = dims
  }
  return p as PartialRecord
}

const STRING_FIELDS = ['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric'] as const

/** `text` is rawText(payload), which the caller has anyway (decoding it twice was measurable). */
function decodeValue(payload: Buffer, text: string, format: 'json' | 'msgpack'): { value: unknown; twice?: TwiceKey[] } | { error: string } {
  if (format === 'msgpack') {
    let value: unknown
    try {
      value = unpack(payload) as unknown
    } catch (err) {
      return { error: `invalid msgpack: ${(err as Error).message}` }
    }
    const scan = scanMsgpackKeys(payload, MAX_DEPTH)
    if (scan.depth > MAX_DEPTH) return { error: `msgpack nested more than ${MAX_DEPTH} levels deep: at most ${MAX_DEPTH} are read` }
    return scan.twice.length === 0 ? { value } : { value, twice: scan.twice }
  }
  if (text.startsWith('base64:')) return { error: `payload is not UTF-8 JSON: ${notTextReason(payload)}` }
  let value: unknown
  try {
    value = JSON.parse(text) as unknown
  } catch (err) {
    return { error: `invalid JSON: ${(err as Error).message}` }
  }
  const scan = scanJsonKeys(text)
  if (scan.depth > MAX_DEPTH) return { error: `JSON nested ${scan.depth} levels deep: at most ${MAX_DEPTH} are read` }
  return scan.twice.length === 0 ? { value } : { value, twice: scan.twice }
}

/**
 * How deep a payload's objects and arrays may nest. A usage record nests two or three levels (a records array, its
 * objects, dimensions); a payload thousands deep is no telemetry, and writing an element of one back as its raw text
 * overflowed the stack and ended the run (on every restart, as the broker delivers the message again).
 */
const MAX_DEPTH = 64

/** A key given twice in a payload (JSON or msgpack): where the second one stands, and the key. */
type TwiceKey = Pick<DuplicateKey, 'path' | 'key'>

/** True when `path` begins with every segment of `prefix`. */
function startsWith(path: readonly (string | number)[], prefix: readonly (string | number)[]): boolean {
  return prefix.length <= path.length && prefix.every((p, i) => path[i] === p)
}

const mappedPaths = new WeakMap<RecordMapping, string[][]>()

/**
 * True when a key given twice at `path` (inside one record's object) changes what `mapping` reads: the key is a field
 * the mapping reads, or an object on the way to one (`stats` given twice, `stats.tx` mapped).
 */
function readByMapping(path: readonly (string | number)[], mapping: RecordMapping): boolean {
  let paths = mappedPaths.get(mapping)
  if (paths === undefined) {
    const fields = [
      mapping.event_id,
      ...(typeof mapping.event_time === 'string' ? [mapping.event_time] : (mapping.event_time ?? [])),
      mapping.time_zone_field,
      mapping.device_id,
      mapping.account_id,
      mapping.subscription_id,
      ...mapping.metrics.map((m) => m.quantity),
      ...Object.values(mapping.dimensions),
    ]
    paths = fields.filter((f): f is string => f !== undefined).map((f) => f.split('.'))
    mappedPaths.set(mapping, paths)
  }
  return paths.some((p) => startsWith(p, path))
}

/** A key given twice, as a reject's reason: JSON keeps the last value, and which one the device meant is not known. */
const twiceReason = (d: TwiceKey) => `key ${JSON.stringify(d.key)} is given twice (at ${jsonPathText(d.path)}): which value was meant is not known`

/**
 * The records and rejects of one MQTT message. Never throws: a payload that makes decoding fail in a way no check
 * foresaw is one reject with its bytes and the error, so the run goes on (an exception here ended it, and the broker
 * delivers the unacknowledged message again to every restart).
 */
export function decodePayload(payload: Buffer, ctx: PayloadContext): WireItem[] {
  try {
    return decodeChecked(payload, ctx)
  } catch (err) {
    const { source } = ctx.options
    return [reject(source, rawText(payload), `payload could not be decoded: ${(err as Error).message}`, `mqtt ${ctx.topic}`)]
  }
}

function decodeChecked(payload: Buffer, ctx: PayloadContext): WireItem[] {
  const { source, format, mapping, max_message_bytes } = ctx.options
  const origin = `mqtt ${ctx.topic}`
  if (payload.length > max_message_bytes) {
    // The origin names the whole message by its digest: a reject's row is keyed by origin and raw, and two messages
    // alike in their first bytes were one row, so the table held fewer rejects than were counted.
    const digest = createHash('sha256').update(payload).digest('hex').slice(0, 16)
    return [
      reject(
        source,
        rawText(payload, RAW_PREVIEW_BYTES),
        `message of ${payload.length} bytes exceeds max_message_bytes ${max_message_bytes}; raw keeps its first ${RAW_PREVIEW_BYTES} bytes`,
        `${origin} (message sha256 ${digest}…)`,
      ),
    ]
  }
  const raw = rawText(payload)
  const decoded = decodeValue(payload, raw, format)
  if ('error' in decoded) return [reject(source, raw, decoded.error, origin)]
  let value = decoded.value
  const device = topicDeviceId(ctx.topic, ctx.options.topics, ctx.options.device_id_level)
  if (mapping?.records_path !== undefined) {
    value = getPath(value, mapping.records_path)
    if (!Array.isArray(value)) return [reject(source, raw, `records_path ${mapping.records_path} is not an array in the payload`, origin)]
  }
  const many = Array.isArray(value)
  // A key given twice where the record is read from: the element it is in is a reject (the other elements go on), else
  // the whole payload. With a mapping, only a key on the way to a field the mapping reads counts: a vendor's payload
  // with a field of its own given twice, which no record reads, was refused whole, every message alike.
  let twiceIn: Map<number, TwiceKey> | undefined
  if (decoded.twice !== undefined) {
    const root = mapping?.records_path?.split('.') ?? []
    for (const d of decoded.twice) {
      // Beside the records_path (neither on the way to it nor in it): no record reads it.
      if (mapping && !startsWith(d.path, root) && !startsWith(root, d.path)) continue
      // The element it is in (`[root…, index, key…]`), and its path inside that element's object.
      const at = many && d.path.length > root.length + 1 && startsWith(d.path, root) ? d.path[root.length] : undefined
      const within = d.path.slice(root.length + (at === undefined ? 0 : 1))
      // On the way to the records (records_path's own keys) it always counts; inside a record, if the mapping reads it.
      if (mapping && (at !== undefined || !many) && !readByMapping(within, mapping)) continue
      if (typeof at !== 'number') return [reject(source, raw, twiceReason(d), origin)]
      twiceIn ??= new Map()
      if (!twiceIn.has(at)) twiceIn.set(at, d)
    }
  }
  if (!many && !mapping) {
    // One canonical record, the common message: no per-element bookkeeping.
    const p = canonicalFromObject(value, source)
    if ('error' in p) return [reject(source, raw, p.error, origin)]
    const mctx: MappingContext = device === undefined ? { source, raw, origin } : { source, raw, origin, defaultDeviceId: device }
    return [completeRecord(p, mctx)]
  }
  const elements: unknown[] = many ? (value as unknown[]) : [value]
  if (elements.length === 0) return [reject(source, raw, 'payload holds an empty array: no records', origin)]
  const out: WireItem[] = []
  elements.forEach((el, i) => {
    // In an array, each element keeps its own JSON as raw, so a reject row shows the bad element.
    // A value from JSON.parse holds no bigint or binary, so the plain JSON.stringify suffices there (the replacer
    // of safeJson cost an eighth of the decode time of 10-record arrays).
    const elRaw = many ? (format === 'json' ? JSON.stringify(el) : safeJson(el)) : raw
    const elOrigin = many ? `${origin} [${i}]` : origin
    // Content hashes cover the whole payload and the element's position, so re-publishing a message yields the
    // same ids while equal elements of one message stay distinct; each item then keeps its element as raw.
    const mctx: MappingContext = {
      source,
      raw,
      origin: elOrigin,
      ...(many && { position: i }),
      ...(device !== undefined && { defaultDeviceId: device }),
    }
    const twice = twiceIn?.get(i)
    // Its raw is the whole payload: the element as JSON.stringify writes it again holds the key once.
    if (twice !== undefined) return void out.push(reject(source, raw, twiceReason(twice), elOrigin))
    let items: WireItem[]
    if (mapping) {
      items = typeof el !== 'object' || el === null || Array.isArray(el)
        ? [reject(source, elRaw, `expected an object to map, got ${typeName(el)}`, elOrigin)]
        : applyMapping((f) => getPath(el, f), mapping, mctx)
    } else {
      const p = canonicalFromObject(el, source)
      items = 'error' in p ? [reject(source, elRaw, p.error, elOrigin)] : [completeRecord(p, mctx)]
    }
    for (const item of items) {
      if ('record' in item) item.record.raw = elRaw
      else item.reject.raw = elRaw
    }
    out.push(...items)
  })
  return out
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? `base64:${Buffer.from(x).toString('base64')}` : x)) ?? String(v)
  } catch {
    return String(v)
  }
}
