/**
 * RFC 3164 (BSD) messages: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG`. The timestamp has no year and no zone:
 *
 * Year rule: the timestamp is read in the configured offset (default UTC) in the latest year, of now's UTC year and
 * the years before and after it, in which that instant is at most 1 day after `now` (a December message read on
 * January 1st is of the year before; a January 1st message read on December 31st in UTC, from a zone east of UTC or
 * a clock a little fast, of the year after). rsyslog's forwarding format (this layout with an RFC 3339 timestamp, which
 * has its year and zone) is read too, its timestamp as written. Messages whose header has no timestamp at all
 * (FortiGate sends `<189>date=… time=…`) are accepted: the whole text after <PRI> is the message and the mapping
 * supplies the time.
 */
import { parsePri, TIMESTAMP, type ParseResult } from './rfc5424.js'

export interface Rfc3164Message {
  readonly pri: number
  /** ISO-8601 with offset, after the year rule. */
  readonly timestamp?: string
  readonly hostname?: string
  readonly tag?: string
  readonly msg: string
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const HEADER = /^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) /
const TAG = /^([A-Za-z0-9_.\-/]{1,48})(\[[^\]\s]{1,32}\])?: ?/
const DAY_MS = 86_400_000

/** `+02:00` → minutes east of UTC. */
function offsetMinutes(zone: string): number {
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)
  if (!m) return 0
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]))
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0')
}

/** Applies the year rule to a month/day/time read in `zone`; undefined for an impossible date (Feb 30). */
export function resolve3164Time(month: number, day: number, h: number, mi: number, s: number, zone: string, now: Date): string | undefined {
  const off = offsetMinutes(zone)
  const zoneText = zone === 'Z' || off === 0 ? 'Z' : `${off < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`
  const at = (year: number): number | undefined => {
    const t = Date.UTC(year, month, day, h, mi, s) - off * 60_000
    const d = new Date(t + off * 60_000)
    return d.getUTCMonth() === month && d.getUTCDate() === day ? t : undefined
  }
  // The latest of the years around now's UTC year that is at most a day ahead: the next year too, since in a zone
  // east of UTC (or from a clock a little fast) January 1st begins before now's UTC year ends.
  let year = now.getUTCFullYear() + 1
  for (; year >= now.getUTCFullYear() - 1; year--) {
    const t = at(year)
    if (t !== undefined && t <= now.getTime() + DAY_MS) break
  }
  if (year < now.getUTCFullYear() - 1) return undefined
  return `${pad(year, 4)}-${pad(month + 1)}-${pad(day)}T${pad(h)}:${pad(mi)}:${pad(s)}${zoneText}`
}

export function parseRfc3164(text: string, now: Date, zone: string): ParseResult<Rfc3164Message> {
  const p = parsePri(text)
  if ('error' in p) return { ok: false, error: p.error }
  const rest = text.slice(p.rest)
  const h = HEADER.exec(rest)
  if (!h) {
    // rsyslog's forwarding format (RSYSLOG_ForwardFormat) writes the BSD layout with an RFC 3339 timestamp, which
    // carries its year and zone: taken as written. Its text read as the body was refused as "expected key=value".
    const sp = rest.indexOf(' ')
    if (sp > 0 && TIMESTAMP.test(rest.slice(0, sp))) return { ok: true, message: afterTimestamp(p.pri, rest.slice(0, sp), rest.slice(sp + 1)) }
    return { ok: true, message: { pri: p.pri, msg: rest } }
  }
  const [, mon, dd, hh, mi, ss] = h as unknown as [string, string, string, string, string, string]
  const hour = Number(hh)
  const min = Number(mi)
  const sec = Number(ss)
  if (hour > 23 || min > 59 || sec > 60) return { ok: false, error: `bad RFC 3164 time ${hh}:${mi}:${ss}` }
  const timestamp = resolve3164Time(MONTHS.indexOf(mon), Number(dd.trim()), hour, min, Math.min(sec, 59), zone, now)
  if (timestamp === undefined) return { ok: false, error: `bad RFC 3164 date ${mon} ${dd.trim()}` }
  return { ok: true, message: afterTimestamp(p.pri, timestamp, rest.slice(h[0].length)) }
}

/** The message after its header's timestamp: `HOSTNAME TAG: MSG`, HOSTNAME and TAG each optional. */
function afterTimestamp(pri: number, timestamp: string, text: string): Rfc3164Message {
  let after = text
  const sp = after.indexOf(' ')
  let hostname = sp < 0 ? after : after.slice(0, sp)
  // A header without HOSTNAME (some appliances): the first word is already key=value body.
  if (hostname.includes('=')) hostname = ''
  else after = sp < 0 ? '' : after.slice(sp + 1)
  const t = TAG.exec(after)
  return {
    pri,
    timestamp,
    ...(hostname !== '' && { hostname }),
    ...(t && { tag: t[1] }),
    msg: t ? after.slice(t[0].length) : after,
  }
}
