import { parseIsoTime } from '../common/time.js'
import type { WireRecord } from './record.js'

/** Quantities: non-negative decimals that fit the store's Decimal(38, 9): ≤ 29 integer and ≤ 9 fraction digits. */
const QUANTITY = /^\d{1,29}(\.\d{1,9})?$/
const MAX_ID = 256
/** The store's DateTime64(3) range, [1900-01-01, 2300-01-01) UTC, in epoch ms. */
const STORE_MIN_MS = Date.UTC(1900, 0, 1)
const STORE_END_MS = Date.UTC(2300, 0, 1)

/**
 * Validates one record (CONTRACT §2). Returns a reason a person can act on, naming the field and the
 * value, or the event time in epoch ms (a number) when the record is valid: no result object per record.
 * Pure; never throws.
 */
export function validateRecord(r: WireRecord): number | string {
  if (typeof r !== 'object' || r === null) return 'record is not an object'
  if (typeof r.source !== 'string' || r.source === '') return 'source is empty'
  if (typeof r.event_id !== 'string' || r.event_id === '') return 'event_id is empty'
  if (r.event_id.length > MAX_ID) return `event_id is longer than ${MAX_ID} characters`
  if (typeof r.event_time !== 'string' || r.event_time === '') return 'event_time is empty'
  const ms = utcMillis(r.event_time) ?? parseIsoTime(r.event_time)
  if (ms === undefined) {
    return `event_time "${clip(r.event_time)}" is not an ISO-8601 time with offset (e.g. 2026-10-01T12:00:00Z)`
  }
  // The store's DateTime64 holds 1900-01-01 … 2299-12-31 and clamps anything outside without an error: an event
  // of 9999 would be stored, rated and billed as one of 2299.
  if (ms < STORE_MIN_MS || ms >= STORE_END_MS) {
    return `event_time "${clip(r.event_time)}" is outside the range the store holds (1900-01-01T00:00:00Z to 2299-12-31T23:59:59.999Z)`
  }
  if (!nonEmpty(r.device_id) && !nonEmpty(r.account_id) && !nonEmpty(r.subscription_id)) {
    return 'no owner id: device_id, account_id and subscription_id are all empty'
  }
  // Three calls, not a loop over a list of field names: the list was an array allocated per record.
  const owner = ownerIdProblem('device_id', r.device_id) ?? ownerIdProblem('account_id', r.account_id) ?? ownerIdProblem('subscription_id', r.subscription_id)
  if (owner !== undefined) return owner
  if (typeof r.metric !== 'string' || r.metric === '') return 'metric is empty'
  if (typeof r.quantity !== 'string' || !QUANTITY.test(r.quantity)) {
    const q = typeof r.quantity === 'string' ? `"${clip(r.quantity)}"` : String(r.quantity)
    return `quantity ${q} is not a non-negative decimal with at most 29 integer and 9 fraction digits`
  }
  if (r.dimensions !== undefined && r.dimensions !== null) {
    if (typeof r.dimensions !== 'object' || Array.isArray(r.dimensions)) return 'dimensions must be a map of strings'
    for (const k in r.dimensions) {
      if (typeof r.dimensions[k] !== 'string') return `dimension "${clip(k)}" must be a string`
    }
  }
  return ms
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/**
 * Epoch ms of a time in the form most sources send, `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS.sssZ`,
 * or undefined for any other form (parseIsoTime then decides, with the same result for these two forms).
 * Parsed digit by digit: the regular expression with its captures and a Date per call cost a fifth of
 * staging an event.
 */
export function utcMillis(s: string): number | undefined {
  const n = s.length
  if ((n !== 20 && n !== 24) || s.charCodeAt(n - 1) !== 90 /* Z */) return undefined
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 84 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) {
    return undefined
  }
  const year = digits(s, 0, 4)
  const month = digits(s, 5, 2)
  const day = digits(s, 8, 2)
  const hour = digits(s, 11, 2)
  const minute = digits(s, 14, 2)
  const second = digits(s, 17, 2)
  let ms = 0
  if (n === 24) {
    if (s.charCodeAt(19) !== 46 /* . */) return undefined
    ms = digits(s, 20, 3)
  }
  // digits() gives -1 for a field that is not all digits ("2x26"): no answer here, parseIsoTime refuses it too.
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 || ms < 0) {
    return undefined
  }
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  if (day > (month === 2 && leap ? 29 : DAYS[month - 1]!)) return undefined
  return daysFromCivil(year, month, day) * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + ms
}

/** The decimal value of `len` ASCII digits at `at`, or -1 when one is not a digit. */
function digits(s: string, at: number, len: number): number {
  let v = 0
  for (let k = at; k < at + len; k++) {
    const d = s.charCodeAt(k) - 48
    if (d < 0 || d > 9) return -1
    v = v * 10 + d
  }
  return v
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil), integers only. */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y
  const era = Math.floor(yy / 400)
  const yoe = yy - era * 400
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146_097 + doe - 719_468
}

function ownerIdProblem(f: string, v: unknown): string | undefined {
  if (v !== undefined && v !== null && typeof v !== 'string') return `${f} must be a string`
  if (typeof v === 'string' && v.length > MAX_ID) return `${f} is longer than ${MAX_ID} characters`
  return undefined
}

function nonEmpty(v: unknown): boolean {
  return typeof v === 'string' && v !== ''
}

function clip(s: string): string {
  return s.length > 60 ? s.slice(0, 57) + '...' : s
}
