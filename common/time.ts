import { ErrorCode, RateflowError } from './errors.js'

/**
 * Time helpers. Times travel as ISO-8601 strings with an offset; inside, as epoch milliseconds (a count of
 * ms is exact in a JS number up to year 285,616, unlike money).
 */

const ISO_WITH_OFFSET =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)$/

/**
 * Parses an ISO-8601 time that carries an offset (`Z`, `+02:00`, `+0200`, `+02`) into epoch ms.
 * Returns undefined for anything else, including a time with no offset (ambiguous) or an impossible
 * date such as February 30th.
 */
export function parseIsoTime(s: string): number | undefined {
  const m = ISO_WITH_OFFSET.exec(s)
  if (!m) return undefined
  const [, y, mo, d, h, mi, sec, frac, off] = m as unknown as string[]
  const year = +y!, month = +mo!, day = +d!, hour = +h!, minute = +mi!, second = sec ? +sec : 0
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined
  if (hour > 23 || minute > 59 || second > 59) return undefined
  const ms = frac ? Math.floor(+(frac + '000').slice(0, 3)) : 0
  let offsetMin = 0
  if (off !== 'Z') {
    const sign = off!.startsWith('-') ? -1 : 1
    const digits = off!.slice(1).replace(':', '')
    const oh = +digits.slice(0, 2), om = digits.length > 2 ? +digits.slice(2, 4) : 0
    if (oh > 23 || om > 59) return undefined
    offsetMin = sign * (oh * 60 + om)
  }
  return fullYearUtc(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000
}

/** The days of a month (1–12) of a year of the proleptic Gregorian calendar, years 0–99 included. */
export function daysInMonth(year: number, month1: number): number {
  return new Date(fullYearUtc(year, month1, 0)).getUTCDate()
}

/**
 * Date.UTC for any year: Date.UTC reads a year of 0–99 as 1900–1999, so `0026-10-06` became 1926-10-06 (a time the
 * input never said, held instead of refused). Such years are set with setUTCFullYear, which takes them as given.
 */
function fullYearUtc(year: number, month0: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  if (year >= 100) return Date.UTC(year, month0, day, hour, minute, second, ms)
  const d = new Date(Date.UTC(2000, month0, day, hour, minute, second, ms))
  d.setUTCFullYear(year, month0, day)
  return d.getTime()
}

/** Epoch ms → `2026-10-01T00:00:00.000Z`. */
export function isoUtc(ms: number): string {
  return new Date(ms).toISOString()
}

const formatters = new Map<string, Intl.DateTimeFormat>()

/** True when `tz` is an IANA zone this runtime knows. */
export function isValidTimeZone(tz: string): boolean {
  try {
    formatter(tz)
    return true
  } catch {
    return false
  }
}

/**
 * True when `a` and `b` name the same zone, in whatever spelling the zone database takes (`europe/berlin` is
 * `Europe/Berlin`, `Asia/Calcutta` is `Asia/Kolkata`). Unknown zones are the same only as the same text.
 */
export function sameTimeZone(a: string, b: string): boolean {
  if (a === b) return true
  if (!isValidTimeZone(a) || !isValidTimeZone(b)) return false
  return formatter(a).resolvedOptions().timeZone === formatter(b).resolvedOptions().timeZone
}

/** The zone's formatter; an unknown zone is bad input (RateflowError BAD_INPUT). */
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz)
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone: tz,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      })
    } catch (cause) {
      throw new RateflowError(ErrorCode.BadInput, `unknown time zone ${JSON.stringify(tz)}`, { cause })
    }
    formatters.set(tz, f)
  }
  return f
}

/** Wall-clock parts of an instant in a zone. */
export interface ZonedParts {
  year: number
  month: number
  day: number
  hour: number
  minute: number
  second: number
}

export function zonedParts(ms: number, tz: string): ZonedParts {
  const parts = formatter(tz).formatToParts(new Date(ms))
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value)
  return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour'), minute: get('minute'), second: get('second') }
}

const offsetCache = new Map<string, number>()
/**
 * Offsets are cached per 15 minutes, the offset at the block's start. No zone changes its offset twice within one,
 * but not every change falls on a quarter hour (Antarctica/Casey at 16:01Z in 2020–2022, America/St_Johns at hh:31
 * until 2011, Africa/Monrovia at 00:44:30Z in 1972): a block whose start and end offsets differ is answered exactly.
 */
const BUCKET_MS = 15 * 60_000

/**
 * The offset of a whole block, cached: NaN for a block holding a change of offset (its start's offset and the next
 * block's differ), where each instant is read on its own. One lookup per instant on the way.
 */
function bucketOffset(bucket: number, tz: string): number {
  const key = `${tz}|${bucket}`
  const hit = offsetCache.get(key)
  if (hit !== undefined) return hit
  const off = exactOffset(bucket * BUCKET_MS, tz)
  const whole = exactOffset((bucket + 1) * BUCKET_MS, tz) === off ? off : Number.NaN
  if (offsetCache.size > 200_000) offsetCache.clear()
  offsetCache.set(key, whole)
  return whole
}

/** The offset at a whole second (zones change theirs at whole seconds; the formatter reads seconds). */
function exactOffset(at: number, tz: string): number {
  const p = zonedParts(at, tz)
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - at
}

/** The zone's offset from UTC at an instant, in ms (local = UTC + offset; Berlin in summer: +7,200,000). Exact to the ms. */
export function zoneOffsetMs(ms: number, tz: string): number {
  const off = bucketOffset(Math.floor(ms / BUCKET_MS), tz)
  // The block holds a change of offset: read this instant's (its second's).
  return Number.isNaN(off) ? exactOffset(Math.floor(ms / 1000) * 1000, tz) : off
}

/**
 * The instant of a wall-clock time in a zone. In a DST gap (a local time that does not exist) it returns
 * the instant just after the gap; in a repeated hour, the first occurrence.
 */
export function zonedToUtc(year: number, month1: number, day: number, hour: number, minute: number, tz: string): number {
  const guess = Date.UTC(year, month1 - 1, day, hour, minute)
  // Two passes converge for every real zone: the offset at (guess - offset) is the offset in force.
  const o1 = zoneOffsetMs(guess, tz)
  const o2 = zoneOffsetMs(guess - o1, tz)
  if (o1 === o2) return guess - o1
  // Gap or overlap: take the earlier candidate that maps back to the asked wall time, else the later one.
  const a = guess - Math.max(o1, o2)
  const b = guess - Math.min(o1, o2)
  const pa = zonedParts(a, tz)
  return pa.hour === hour && pa.minute === minute ? a : b
}
