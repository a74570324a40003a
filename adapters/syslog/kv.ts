/**
 * The `key=value` message body (CONTRACT §8): pairs separated by whitespace, values bare or double-quoted with
 * `\"` and `\\` escapes. Appliance traffic logs (FortiGate and alike) use the same shape.
 */
import type { PartialRecord } from '../mapping.js'
import { reservedDimensionName } from '../wire.js'

export type KvResult = { readonly ok: true; readonly fields: Map<string, string> } | { readonly ok: false; readonly error: string }

/** Characters of a key: [A-Za-z0-9_.\-@:/], as a table by char code (this loop runs for every byte of every line). */
const KEY_CHAR = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-@:/') KEY_CHAR[c.charCodeAt(0)] = 1
const UNICODE_SPACE = /\s/

/** Same set as the regex `\s`, with the ASCII cases decided without a regex call. */
function isSpace(c: number): boolean {
  if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) return true
  return c >= 0x80 && UNICODE_SPACE.test(String.fromCharCode(c))
}

/** Parses a body; the error names the column (1-based) where parsing stopped. */
export function parseKv(text: string): KvResult {
  const fields = new Map<string, string>()
  let i = 0
  const n = text.length
  while (i < n) {
    while (i < n && isSpace(text.charCodeAt(i))) i++
    if (i >= n) break
    const start = i
    for (let c = text.charCodeAt(i); i < n && c < 128 && KEY_CHAR[c] === 1; c = text.charCodeAt(++i));
    const key = text.slice(start, i)
    if (key.length === 0 || text.charCodeAt(i) !== 0x3d /* = */) {
      const word = text.slice(start, Math.min(n, start + 20)).split(/\s/)[0]
      return { ok: false, error: `expected key=value at column ${start + 1}, got ${JSON.stringify(word)}` }
    }
    i++ // '='
    let value: string
    if (text.charCodeAt(i) === 0x22 /* " */) {
      i++
      let v = ''
      let from = i
      let closed = false
      while (i < n) {
        const ch = text.charCodeAt(i)
        if (ch === 0x5c /* \ */ && i + 1 < n && (text.charCodeAt(i + 1) === 0x22 || text.charCodeAt(i + 1) === 0x5c)) {
          v += text.slice(from, i) + text[i + 1]
          i += 2
          from = i
        } else if (ch === 0x22) {
          v += text.slice(from, i)
          closed = true
          i++
          break
        } else i++
      }
      if (!closed) return { ok: false, error: `unterminated quoted value of ${key} (opened at column ${start + key.length + 2})` }
      if (i < n && !isSpace(text.charCodeAt(i))) return { ok: false, error: `expected a space after the quoted value of ${key} at column ${i + 1}` }
      value = v
    } else {
      const vs = i
      while (i < n && !isSpace(text.charCodeAt(i))) i++
      value = text.slice(vs, i)
    }
    if (fields.has(key)) return { ok: false, error: `duplicate key ${key} at column ${start + 1}` }
    fields.set(key, value)
  }
  return { ok: true, fields }
}

const CANONICAL = new Set(['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric', 'quantity'])

/**
 * The canonical record of a key=value body. `sd` holds RFC 5424 structured-data params (by plain name); they
 * supply canonical fields and `dim.*` the body does not set, and any other SD param is metadata and ignored
 * (logger adds `timeQuality` to every message). Unknown body keys are an error: a typo must not vanish.
 */
export function canonicalFromKv(body: ReadonlyMap<string, string>, sd: ReadonlyMap<string, string>): PartialRecord | { error: string } {
  if (sd.size === 0) return canonicalFromBody(body)
  const fields = new Map<string, string>()
  for (const [k, v] of sd) if (CANONICAL.has(k) || k.startsWith('dim.')) fields.set(k, v)
  for (const [k, v] of body) {
    if (!CANONICAL.has(k) && !(k.startsWith('dim.') && k.length > 4)) return unknownKey(k)
    fields.set(k, v)
  }
  const metric = fields.get('metric')
  const quantity = fields.get('quantity')
  if (metric === undefined || metric === '') return { error: 'missing metric=' }
  if (quantity === undefined || quantity === '') return { error: 'missing quantity=' }
  const p: PartialRecord = { metric, quantity }
  for (const k of ['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id'] as const) {
    const v = fields.get(k)
    if (v !== undefined && v !== '') p[k] = v
  }
  const dims: Record<string, string> = {}
  for (const [k, v] of fields) {
    if (!k.startsWith('dim.')) continue
    const reserved = reservedDimensionName(k.slice(4))
    if (reserved !== undefined) return { error: reserved }
    dims[k.slice(4)] = v
  }
  if (Object.keys(dims).length > 0) p.dimensions = dims
  return p
}

/** The record of the canonical fields found; empty or absent optional fields are left out. */
function partial(
  metric: string,
  quantity: string,
  eventId: string | undefined,
  eventTime: string | undefined,
  device: string | undefined,
  account: string | undefined,
  subscription: string | undefined,
  dims: Record<string, string> | undefined,
): PartialRecord {
  const p: PartialRecord = { metric, quantity }
  if (eventId) p.event_id = eventId
  if (eventTime) p.event_time = eventTime
  if (device) p.device_id = device
  if (account) p.account_id = account
  if (subscription) p.subscription_id = subscription
  if (dims) p.dimensions = dims
  return p
}

function unknownKey(k: string): { error: string } {
  return { error: `unknown key ${k} (canonical keys: ${[...CANONICAL].join(', ')}, dim.<name>; other shapes need a mapping)` }
}

/** canonicalFromKv without structured data (most messages): one pass over the body, no merged copy. */
function canonicalFromBody(body: ReadonlyMap<string, string>): PartialRecord | { error: string } {
  let metric: string | undefined
  let quantity: string | undefined
  let eventId: string | undefined
  let eventTime: string | undefined
  let device: string | undefined
  let account: string | undefined
  let subscription: string | undefined
  let dims: Record<string, string> | undefined
  for (const [k, v] of body) {
    switch (k) {
      case 'metric': metric = v; break
      case 'quantity': quantity = v; break
      case 'event_id': eventId = v; break
      case 'event_time': eventTime = v; break
      case 'device_id': device = v; break
      case 'account_id': account = v; break
      case 'subscription_id': subscription = v; break
      default:
        if (k.length > 4 && k.startsWith('dim.')) {
          const reserved = reservedDimensionName(k.slice(4))
          if (reserved !== undefined) return { error: reserved }
          ;(dims ??= {})[k.slice(4)] = v
        } else return unknownKey(k)
    }
  }
  if (metric === undefined || metric === '') return { error: 'missing metric=' }
  if (quantity === undefined || quantity === '') return { error: 'missing quantity=' }
  return partial(metric, quantity, eventId, eventTime, device, account, subscription, dims)
}

// Bits of the canonical keys seen by canonicalFromBodyText, to spot a duplicate without a Map.
const EVENT_ID = 1, EVENT_TIME = 2, DEVICE = 4, ACCOUNT = 8, SUBSCRIPTION = 16, METRIC = 32, QUANTITY = 64

/** The bit of the canonical key at text[start, end), or 0 when it is none; compares in place, no key string. */
function canonicalBit(text: string, start: number, end: number): number {
  switch (end - start) {
    case 6: return text.startsWith('metric', start) ? METRIC : 0
    case 8: return text.startsWith('quantity', start) ? QUANTITY : text.startsWith('event_id', start) ? EVENT_ID : 0
    case 9: return text.startsWith('device_id', start) ? DEVICE : 0
    case 10: return text.startsWith('event_time', start) ? EVENT_TIME : text.startsWith('account_id', start) ? ACCOUNT : 0
    case 15: return text.startsWith('subscription_id', start) ? SUBSCRIPTION : 0
    default: return 0
  }
}

/** Anything but printable ASCII and space: such a body takes the general path (tabs, Unicode spaces, …). */
const NOT_PLAIN = /[^\x20-\x7e]/

/**
 * parseKv + canonicalFromKv (without structured data) in one pass over the body, for the common message: printable
 * ASCII, bare values, canonical keys and `dim.*` only, each once, metric and quantity present. Returns exactly what
 * the two give for such a body, or undefined for anything else (quoted values, unknown or repeated keys, syntax
 * errors), and the caller then takes the general path, which also words the error. It finds `=` and the next space
 * with indexOf, which here is several times faster than testing every character in a loop.
 */
export function canonicalFromBodyText(text: string): PartialRecord | undefined {
  if (NOT_PLAIN.test(text)) return undefined
  let metric: string | undefined
  let quantity: string | undefined
  let eventId: string | undefined
  let eventTime: string | undefined
  let device: string | undefined
  let account: string | undefined
  let subscription: string | undefined
  let dims: Record<string, string> | undefined
  let seen = 0
  const n = text.length
  let i = 0
  while (i < n) {
    while (text.charCodeAt(i) === 0x20) i++
    if (i >= n) break
    const eq = text.indexOf('=', i)
    let end = text.indexOf(' ', i)
    if (eq <= i || (end >= 0 && end < eq)) return undefined // no key, or a word without `=`
    if (end < 0) end = n
    if (text.charCodeAt(eq + 1) === 0x22 /* " */) return undefined
    const value = text.slice(eq + 1, end)
    const bit = canonicalBit(text, i, eq)
    if (bit !== 0) {
      if ((seen & bit) !== 0) return undefined
      seen |= bit
      switch (bit) {
        case METRIC: metric = value; break
        case QUANTITY: quantity = value; break
        case EVENT_ID: eventId = value; break
        case EVENT_TIME: eventTime = value; break
        case DEVICE: device = value; break
        case ACCOUNT: account = value; break
        default: subscription = value
      }
    } else if (eq - i > 4 && text.startsWith('dim.', i)) {
      for (let k = i + 4; k < eq; k++) if (KEY_CHAR[text.charCodeAt(k)] !== 1) return undefined
      const name = text.slice(i + 4, eq)
      if (name === '__proto__') return undefined
      if (dims === undefined) dims = {}
      else if (Object.hasOwn(dims, name)) return undefined
      dims[name] = value
    } else return undefined
    i = end
  }
  if (!metric || !quantity) return undefined
  return partial(metric, quantity, eventId, eventTime, device, account, subscription, dims)
}
