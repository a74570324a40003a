/**
 * Helpers every push adapter (MQTT, syslog) shares to turn input into WireRecord / WireReject:
 * how raw bytes are kept, how a missing event_id is derived, and the one-of item type the batcher takes.
 */
import { createHash } from 'node:crypto'
import { firstInvalidUtf8 } from './utf8-text.js'
import type { WireRecord, WireReject } from '../rating-core/record.js'

/** What an adapter hands to the batcher for one input: a record, or a reject that still travels. */
export type WireItem = { record: WireRecord } | { reject: WireReject }

/** The canonical record fields (CONTRACT §2) besides `source` and `dimensions`. */
export const CANONICAL_FIELDS = ['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric', 'quantity'] as const
export type CanonicalField = (typeof CANONICAL_FIELDS)[number]

/** How many bytes of an oversized input are kept in its reject: enough to recognise it, not enough to hurt. */
export const RAW_PREVIEW_BYTES = 1024

const utf8 = new TextDecoder('utf-8', { fatal: true })
// C0 control characters other than tab, CR and LF mean the input is binary, whatever its encoding validity. DEL (0x7f)
// is not one of them: JSON allows it unescaped in a string, and a payload holding one was refused as binary.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f]/
const NOT_PLAIN_TEXT = /[^\x20-\x7e\t\r\n]/

/**
 * The text kept in `raw`: the bytes as UTF-8 when they are text, else `base64:` + the bytes in base64, so the
 * reject row in rejected_usage always holds the exact input (or, with `limit`, its first `limit` bytes).
 */
export function rawText(bytes: Uint8Array, limit?: number): string {
  const b = limit !== undefined && bytes.length > limit ? bytes.subarray(0, limit) : bytes
  // Fast path for the common case, printable ASCII plus tab, CR and LF: such bytes are valid UTF-8 and no CONTROL
  // character, so their latin1 reading is the result the checks below give; latin1 decoding plus one regex test
  // costs about half of the fatal UTF-8 decoder plus the CONTROL test.
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  const latin1 = buf.toString('latin1')
  if (!NOT_PLAIN_TEXT.test(latin1)) return latin1
  try {
    const s = utf8.decode(b)
    if (!CONTROL.test(s)) return s
  } catch {
    // A cut in the middle of a multi-byte character is still text; retry without the last few bytes.
    if (b !== bytes) {
      for (let cut = 1; cut <= 3 && cut < b.length; cut++) {
        try {
          const s = utf8.decode(b.subarray(0, b.length - cut))
          if (!CONTROL.test(s)) return s
        } catch {
          /* keep trying */
        }
      }
    }
  }
  return `base64:${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')}`
}

/**
 * Why `bytes`, which rawText kept as `base64:`, are not text, and where: the first byte that is not UTF-8 (a Latin-1
 * city name in a device's log is text in the wrong encoding, not "binary"), else the first control character. The
 * offset is 0-based, of the input's bytes.
 */
export function notTextReason(bytes: Uint8Array): string {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const bad = firstInvalidUtf8(buf)
  if (bad !== undefined) return `byte 0x${hex(buf[bad]!)} at offset ${bad} is not UTF-8 (send UTF-8 text)`
  const text = buf.toString('utf8')
  const m = CONTROL.exec(text)
  const at = m ? Buffer.byteLength(text.slice(0, m.index)) : 0
  return `control character 0x${hex(buf[at]!)} at offset ${at}: binary data, not text`
}

const hex = (b: number) => b.toString(16).padStart(2, '0')

/**
 * The event_id of a record whose input has none: sha1 over source, raw input and metric (and, when one input
 * holds several records, the record's position; and the device the record was given from outside its input, an MQTT
 * topic's), so sending the same input again yields the same id and dedupes, and the same payload from two devices
 * gives two ids (it gave one: the second device's usage was a duplicate of the first's, never billed).
 */
export function contentEventId(source: string, raw: string, metric: string, position?: number, device?: string): string {
  const h = createHash('sha1')
  h.update(source).update('\u0000').update(raw).update('\u0000').update(metric)
  if (position !== undefined && position > 0) h.update('\u0000').update(String(position))
  if (device !== undefined) h.update('\u0000device=').update(device)
  return `sha1:${h.digest('hex')}`
}

/**
 * A reject with the raw input, a reason that says what is wrong, and where (`origin`). The reject row's reason starts
 * with the origin (rating-core/stage.ts rejectLine), so the reason does not repeat it: it read
 * `mqtt t: invalid JSON … (mqtt t)`.
 */
export function reject(source: string, raw: string, reason: string, origin: string): { reject: WireReject } {
  return { reject: { source, raw, reason, origin } }
}

/** True for a JSON number or a string: the types a quantity may arrive as before the validate stage checks it. */
export function quantityText(v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (typeof v === 'number' && Number.isFinite(v)) return plainDecimal(v)
  if (typeof v === 'bigint') return v.toString()
  return undefined
}

/**
 * A number that is no finite value, described for a reason that ends "got …"; else undefined. JSON's `1e400` reads as
 * Infinity, and msgpack can carry Infinity and NaN: "must be a decimal string or number, got number" said nothing of
 * what was wrong.
 */
export function outOfRangeNumber(v: unknown): string | undefined {
  if (typeof v !== 'number' || Number.isFinite(v)) return undefined
  return Number.isNaN(v) ? 'NaN, a number that is no value' : `${v}, a number out of range (JSON's 1e400 reads so); send a decimal string`
}

/** Significant digits a binary double holds exactly for every decimal (DBL_DIG). */
const EXACT_DIGITS = 15

/**
 * Why a quantity that arrived as a number (JSON, msgpack float) may not be the value the sender wrote, or undefined
 * when it is. A reader turns a JSON number into a binary double: an integer above 2^53 − 1 or a decimal of more than
 * 15 significant digits may come out as a neighbour (9007199254740993 reads as 9007199254740992), and billing a
 * changed quantity is worse than refusing it. Sent as a string, any decimal is kept exactly.
 */
export function inexactQuantity(v: unknown): string | undefined {
  if (readsInexactly(v)) {
    return `quantity was sent as a JSON number with more digits than a JSON reader keeps exactly (it reads as ${plainDecimal(v)}; integers up to 9007199254740991 and decimals of ${EXACT_DIGITS} significant digits are kept); send it as a string, e.g. "quantity": "12345678901234567891"`
  }
  return undefined
}

/**
 * Why a text field (an id, an owner, a dimension value) that arrived as a number may not be what the sender wrote (a
 * phrase: "a JSON number with more digits …"), or undefined when it is: the same rule as inexactQuantity. An id read as its neighbour merges two events into one
 * (1234567890123456789 and …790 both read as …800: the second is dropped as a duplicate); sent as a string it is kept.
 */
export function inexactNumber(v: unknown): string | undefined {
  if (readsInexactly(v)) {
    return `a JSON number with more digits than a JSON reader keeps exactly (it reads as ${plainDecimal(v)}); send it as a string`
  }
  return undefined
}

/**
 * A dimension name an object cannot hold as an own key when set by assignment (`__proto__`): kept, it would vanish
 * without a trace. Refused instead, with this reason.
 */
export function reservedDimensionName(name: string): string | undefined {
  return name === '__proto__' ? `dimension name ${JSON.stringify(name)} is reserved; give the dimension another name` : undefined
}

/** A finite number a JSON reader may have read as a neighbour of what was sent: an unsafe integer, or over 15 significant digits. */
function readsInexactly(v: unknown): v is number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return false
  return Number.isInteger(v) ? !Number.isSafeInteger(v) : significantDigits(String(v)) > EXACT_DIGITS
}

function significantDigits(text: string): number {
  const mantissa = text.replace(/^-/, '').replace(/e.*$/i, '').replace('.', '')
  return mantissa.replace(/^0+/, '').replace(/0+$/, '').length
}

/**
 * A finite number as plain decimal digits, never in exponent form (String(5e-7) is "5e-7", which is no decimal the
 * validate stage accepts): the shortest digits that read back as the number, with the point moved by the exponent.
 */
export function plainDecimal(v: number): string {
  const text = String(v)
  const e = text.search(/e/i)
  if (e < 0) return text
  const sign = text.startsWith('-') ? '-' : ''
  const mantissa = text.slice(sign.length, e)
  const exp = Number(text.slice(e + 1))
  const dot = mantissa.indexOf('.')
  const digits = mantissa.replace('.', '')
  const point = (dot < 0 ? mantissa.length : dot) + exp
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`
}
