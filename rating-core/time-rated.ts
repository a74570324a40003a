/**
 * time_rated (CONTRACT §3.3): the price of one session of `seconds` starting at `start`.
 *
 * 1. Split: the session is cut where the local wall-clock time (IANA timezone of the account)
 *    leaves the current schedule window or the zone's UTC offset changes. Adjacent pieces under
 *    the same rate are merged, so a weekend that runs from Saturday into Sunday is one part.
 *    Local time follows the zone: on a spring-forward day the missing hour is skipped, on a
 *    fall-back day the repeated hour is passed through twice, each time by its wall-clock time.
 * 2. Steps are session-relative: a step's `from` counts seconds since the session started, not
 *    since the part started (a rate change at 18:00 does not restart the "first minute"). The
 *    session is billed in blocks: at elapsed position t, the rate in force at t and that rate's
 *    step containing t give the increment; the blocks up to the end of the part (or step, or
 *    session) are billed — whole increments, so the last block may run past that end — and
 *    billing resumes where the last block ended. A block that straddles a schedule boundary is
 *    billed once, by the rate where it started; the next part starts counting after it. This
 *    never bills a second of the session twice.
 * 3. Each block costs increment × unit_price / per. The connect fee is the first part's rate's.
 * 4. The sum is rounded once, by `rounding` (default: half-even to 9 decimals), then capped at
 *    max_cost_per_event (strategy "free": the rest of the event is free).
 * A session of 0 seconds never connected and costs nothing.
 */
import type { Schedule, TimeRatedCharge, TimeRatedRate } from '../catalog/types.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { parseIsoTime, zoneOffsetMs } from '../common/time.js'
import { type Dec, type RoundingMode, ONE, ZERO, add, cmp, divInt, fmt, fmtNano, min, mul, parseDec, pow10, sub, toNano } from './decimal.js'
import { type Clamp, type PriceLine, type PriceResult, applyClamp, cached, decField, parseClamp } from './models/common.js'

// ---- time zones ----------------------------------------------------------------------------

const DAY_MS = 86_400_000

/**
 * A stretch of time over which a zone's UTC offset does not change: [from, to). `to` is the zone's next
 * transition when `endsAtTransition`, else only where the search for one stopped.
 */
interface OffsetSpan {
  readonly from: number
  readonly to: number
  readonly offset: number
  readonly endsAtTransition: boolean
}

/** The spans of one zone found so far, sorted by time, and the last one asked for (sessions cluster in time). */
interface ZoneSpans {
  spans: OffsetSpan[]
  last: OffsetSpan | undefined
}

/** Spans searched for at most this far from the instant asked about (then the search goes on from there). */
const SPAN_REACH_MS = 400 * DAY_MS
const spansByZone = new Map<string, ZoneSpans>()

/**
 * UTC offset of `tz` at instant `ms`, in milliseconds (local = UTC + offset). An unknown zone is bad input.
 * Answered from the span of constant offset around `ms`: most calls read one span the zone already has,
 * with no hash lookup per instant.
 */
export function zoneOffset(tz: string, ms: number): number {
  return spanAt(tz, ms).offset
}

function spanAt(tz: string, ms: number): OffsetSpan {
  let z = spansByZone.get(tz)
  if (z === undefined) {
    if (spansByZone.size >= 1000) spansByZone.clear()
    z = { spans: [], last: undefined }
    spansByZone.set(tz, z)
  }
  const last = z.last
  if (last !== undefined && last.from <= ms && ms < last.to) return last
  let lo = 0
  let hi = z.spans.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (z.spans[mid]!.to <= ms) lo = mid + 1
    else hi = mid
  }
  let span = z.spans[lo]
  if (span === undefined || span.from > ms) {
    span = findSpan(tz, ms)
    // A bounded list: a feed spread over centuries would otherwise grow it without end.
    if (z.spans.length >= 256) z.spans = []
    // Spans are maximal around the instant they were found from (or cut at the same reach), so sorted by
    // `from` they are sorted by `to` too, which the binary search above relies on.
    z.spans.push(span)
    z.spans.sort((x, y) => x.from - y.from)
  }
  z.last = span
  return span
}

/**
 * The span of constant offset around `ms`: probes a day apart outwards (a zone changes its offset at most a
 * few times a year), then a binary search over seconds for the exact transition (zones change at whole seconds,
 * not always on a quarter hour: Antarctica/Casey at 16:01Z, Africa/Monrovia at 00:44:30Z). Spans found from
 * different instants may overlap; each is exact where it says it is.
 */
function findSpan(tz: string, ms: number): OffsetSpan {
  const offset = zoneOffsetMs(ms, tz) // throws for an unknown zone
  const second = Math.floor(ms / 1000)
  const later = edge(tz, second, offset, 1)
  const earlier = edge(tz, second, offset, -1)
  return {
    from: earlier.same * 1000,
    to: (later.other ?? later.same + 1) * 1000,
    offset,
    endsAtTransition: later.other !== null,
  }
}

const DAY_SECONDS = DAY_MS / 1000
const REACH_SECONDS = Math.ceil(SPAN_REACH_MS / 1000)

/**
 * Walks from `second` (whose offset is `offset`) a day at a time towards `dir` (1 later, −1 earlier), at most
 * SPAN_REACH_MS: `other` is the first second that way with another offset (null when none was met) and `same` the
 * last second before it with `offset` (or the last one probed).
 */
function edge(tz: string, second: number, offset: number, dir: 1 | -1): { same: number; other: number | null } {
  let same = second
  let other: number | null = null
  for (let k = DAY_SECONDS; k <= REACH_SECONDS; k += DAY_SECONDS) {
    const probe = second + dir * k
    if (zoneOffsetMs(probe * 1000, tz) !== offset) {
      other = probe
      break
    }
    same = probe
  }
  if (other !== null) {
    while (Math.abs(other - same) > 1) {
      const m = Math.floor((same + other) / 2)
      if (zoneOffsetMs(m * 1000, tz) === offset) same = m
      else other = m
    }
  }
  return { same, other }
}

/** The first instant in (from, to] where the offset differs from the offset at `from`, or null; `span` is spanAt(tz, from). */
function nextTransition(tz: string, span: OffsetSpan, from: number, to: number): number | null {
  // The span ends where a search stopped, not at a transition: go on from there (the same offset).
  while (span.to <= to && !span.endsAtTransition) span = spanAt(tz, span.to)
  return span.to > to ? null : Math.max(span.to, from + 1)
}

// ---- splitting -------------------------------------------------------------------------------

interface ScheduleWindow {
  rate: TimeRatedRate
  weekdays: number[]
  /** Minutes of the local day, [from, to). */
  from: number
  to: number
}

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(':')
  return Number(h) * 60 + Number(m)
}

const windowCache = new WeakMap<TimeRatedCharge, { schedules: Schedule[]; windows: ScheduleWindow[] }>()

function windowsOf(charge: TimeRatedCharge, schedules: Schedule[]): ScheduleWindow[] {
  const hit = windowCache.get(charge)
  if (hit !== undefined && hit.schedules === schedules) return hit.windows
  const windows = charge.rates.map((rate) => {
    const s = schedules.find((x) => x.id === rate.schedule)
    if (s === undefined) throw new RateflowError(ErrorCode.BadInput, `charge ${charge.id}: no schedule "${rate.schedule}"`)
    return { rate, weekdays: s.weekdays, from: minutes(s.from), to: minutes(s.to) }
  })
  windowCache.set(charge, { schedules, windows })
  return windows
}

export interface SessionPart {
  rate: TimeRatedRate
  /** Elapsed seconds since session start, [from, to). */
  from: Dec
  to: Dec
}

/** A part of a session in whole milliseconds since its start, [fromMs, toMs). */
interface PartMs {
  rate: TimeRatedRate
  fromMs: number
  toMs: number
}

/**
 * Splits a session at schedule boundaries (local time of `tz`); adjacent parts with one rate are merged.
 * Boundaries are instants of the clock, so every part but the last starts and ends on a whole millisecond
 * since the session started; the last ends at the session's end, `seconds`, kept exact.
 */
export function splitSession(charge: TimeRatedCharge, schedules: Schedule[], startMs: number, seconds: Dec, tz: string): SessionPart[] {
  const n = splitSessionMs(charge, schedules, startMs, Number(divInt(seconds.i * 1000n, pow10(seconds.e), 'ceil')), tz)
  const parts = splitParts.slice(0, n)
  return parts.map((p, k) => ({
    rate: p.rate,
    from: { i: BigInt(p.fromMs), e: 3 },
    to: k === parts.length - 1 ? seconds : { i: BigInt(p.toMs), e: 3 },
  }))
}

/**
 * The parts splitSessionMs found, in its first n slots; valid until its next call (rating reads them at once).
 * Reused: a fresh array and part objects per session were a tenth of what pricing one allocated.
 */
const splitParts: PartMs[] = []

/**
 * splitSession of a session of `durMs` milliseconds (a session of sub-millisecond length is given its
 * ceiling: a part boundary is a whole millisecond, so the parts are the same), into splitParts; returns how
 * many parts. Positions are integers of milliseconds: time, not money, and exact as JS numbers far beyond any
 * session's length.
 */
function splitSessionMs(charge: TimeRatedCharge, schedules: Schedule[], startMs: number, durMs: number, tz: string): number {
  const windows = windowsOf(charge, schedules)
  const endMs = startMs + durMs
  const parts = splitParts
  // The last call's parts are read by now; a session once split into very many parts does not keep them all for good.
  if (parts.length > 64) parts.length = 64
  let n = 0
  let pos = 0
  while (pos < durMs) {
    const u = startMs + pos
    const span = spanAt(tz, u)
    const off = span.offset
    const local = u + off
    const dayStart = Math.floor(local / DAY_MS) * DAY_MS
    const minuteOfDay = (local - dayStart) / 60_000
    // Day 0 (1970-01-01) was a Thursday; ISO weekdays run 1 = Monday … 7 = Sunday.
    const weekday = ((((dayStart / DAY_MS + 3) % 7) + 7) % 7) + 1
    let w: ScheduleWindow | undefined
    for (const x of windows) {
      if (minuteOfDay >= x.from && minuteOfDay < x.to && x.weekdays.includes(weekday)) {
        w = x
        break
      }
    }
    if (w === undefined) {
      const hh = String(Math.floor(minuteOfDay / 60)).padStart(2, '0')
      const mm = String(Math.floor(minuteOfDay % 60)).padStart(2, '0')
      throw new RateflowError(
        ErrorCode.BadInput,
        `charge ${charge.id}: no rate's schedule covers weekday ${weekday} ${hh}:${mm} in ${tz} (${new Date(u).toISOString()})`,
      )
    }
    let partEnd = dayStart + w.to * 60_000 - off
    const tr = nextTransition(tz, span, u, Math.min(partEnd, endMs))
    if (tr !== null && tr < partEnd) partEnd = tr
    const to = Math.min(partEnd - startMs, durMs)
    const last = n > 0 ? parts[n - 1]! : undefined
    if (last !== undefined && last.rate === w.rate) last.toMs = to
    else {
      const part = parts[n]
      if (part === undefined) parts.push({ rate: w.rate, fromMs: pos, toMs: to })
      else {
        part.rate = w.rate
        part.fromMs = pos
        part.toMs = to
      }
      n++
    }
    pos = to
  }
  return n
}

// ---- pricing ---------------------------------------------------------------------------------

interface ParsedStep {
  from: Dec
  price: Dec
  per: Dec
  increment: Dec
}
const stepCache = new WeakMap<TimeRatedRate, { steps: ParsedStep[]; connect: Dec | null }>()

function parsedRate(chargeId: string, r: TimeRatedRate): { steps: ParsedStep[]; connect: Dec | null } {
  let p = stepCache.get(r)
  if (p === undefined) {
    const what = `charge ${chargeId} rate ${r.schedule}`
    p = {
      steps: r.steps.map((s) => ({
        from: parseDec(s.from, `${what}: from`),
        price: parseDec(s.unit_price, `${what}: unit_price`),
        per: parseDec(s.per, `${what}: per`),
        increment: parseDec(s.increment, `${what}: increment`),
      })),
      connect: r.connect_fee === undefined ? null : parseDec(r.connect_fee, `${what}: connect_fee`),
    }
    stepCache.set(r, p)
  }
  return p
}

/** An exact fraction n/d (d > 0): unit_price / per need not terminate (1 per 60 s). */
interface Frac {
  n: bigint
  d: bigint
}
function fracOf(num: Dec, den: Dec): Frac {
  // (num.i / 10^num.e) / (den.i / 10^den.e)
  return { n: num.i * pow10(den.e), d: den.i * pow10(num.e) }
}
function fracAdd(a: Frac, b: Frac): Frac {
  return a.d === b.d ? { n: a.n + b.n, d: a.d } : { n: a.n * b.d + b.n * a.d, d: a.d * b.d }
}
function fracRound(f: Frac, dp: number, mode: RoundingMode): bigint {
  return divInt(f.n * pow10(dp), f.d, mode)
}

/**
 * A quoted event's start, epoch ms; bad input naming it unless an ISO-8601 time with its offset (the pipeline's rule
 * for event times: Date.parse read a time without one in the machine's zone, so one quote differed by machine, and
 * took 2026-02-30 as 2 March).
 */
export function startOfEvent(start: string): number {
  const startMs = parseIsoTime(start)
  if (startMs === undefined) throw new RateflowError(ErrorCode.BadInput, `start ${JSON.stringify(start)} is not an ISO-8601 time with offset, e.g. 2026-10-02T17:59:00Z`)
  return startMs
}

/**
 * The price of one session with its lines. `free`: seconds of the session the period's free allowance covers (they
 * cover its first billed seconds; see timedEventNano).
 */
export function rateTimedEvent(
  charge: TimeRatedCharge,
  schedules: Schedule[],
  start: string,
  seconds: string,
  timezone: string,
  free: Dec = ZERO,
  limited = true,
): PriceResult {
  const startMs = startOfEvent(start)
  const dur = parseDec(seconds, 'seconds')
  if (dur.i < 0n) throw new RateflowError(ErrorCode.BadInput, `a session cannot last ${seconds} seconds`)
  const lines: PriceLine[] = []
  const total = timedEventNano(charge, schedules, startMs, dur, timezone, lines, free, limited)
  return { amount: fmtNano(total), lines }
}

/** A time_rated charge's period terms: its free allowance in seconds and the clamp of its period total. */
interface PeriodTerms {
  readonly free: Dec | null
  readonly clamp: Clamp
}
const periodTerms = new WeakMap<TimeRatedCharge, PeriodTerms>()
function termsOf(charge: TimeRatedCharge): PeriodTerms {
  return cached(periodTerms, charge, (c) => ({ free: decField(c.free_units, c.id, 'free_units'), clamp: parseClamp(c) }))
}

/**
 * How many of a session's `seconds` the period's free allowance covers, given `freeUsed` seconds of it taken by the
 * sessions rated before in the period, and the allowance used after it. Sessions take the allowance in the order they
 * are rated, as percentage events take theirs (CONTRACT §3.2: free_units are subtracted from Q first).
 */
export function timedFreeSeconds(charge: TimeRatedCharge, seconds: Dec, freeUsed: Dec): { free: Dec; freeUsed: Dec } {
  const { free } = termsOf(charge)
  if (free === null || seconds.i <= 0n || cmp(freeUsed, free) >= 0) return { free: ZERO, freeUsed }
  const left = sub(free, freeUsed)
  const here = cmp(seconds, left) <= 0 ? seconds : left
  return { free: here, freeUsed: add(freeUsed, here) }
}

/** A time_rated charge's period total from the sum of its sessions' prices: clamped to [minimum, maximum]. */
export function timedPeriodTotal(charge: TimeRatedCharge, sumOfFees: bigint, lines: PriceLine[] | null): bigint {
  return applyClamp(sumOfFees, termsOf(charge).clamp, lines)
}

/**
 * `rateflow rate` of a time_rated charge: one session as the period's only one, so its free allowance and the charge's
 * minimum and maximum apply, as `rate` of a percentage event applies that model's (lines say so).
 */
export function rateTimedSession(charge: TimeRatedCharge, schedules: Schedule[], start: string, seconds: string, timezone: string): PriceResult {
  const dur = parseDec(seconds, 'seconds')
  const { free } = timedFreeSeconds(charge, dur, ZERO)
  const r = rateTimedEvent(charge, schedules, start, seconds, timezone, free)
  const total = timedPeriodTotal(charge, toNano(parseDec(r.amount)), r.lines)
  return { amount: fmtNano(total), lines: r.lines }
}

const caps = new WeakMap<TimeRatedCharge, bigint | null>()

/**
 * The longest session priced: 366 days. A session is split and priced one schedule window at a time, so its cost
 * grows with its length (~50 ms for 366 days here); a duration of 10^11 seconds (a counter sent as a duration, say)
 * ran for minutes, held its whole batch, and came back with the batch after every restart. A longer one is bad input:
 * the event's reject, with the limit in its reason.
 */
export const MAX_SESSION_SECONDS: Dec = { i: 366n * 86_400n, e: 0 }

/**
 * The price of a session of `dur` seconds from `startMs`, in nano-units (9 decimals), as rateTimedEvent
 * prices it; appends the lines when given an array. Rating passes null: describing each block cost more
 * than pricing it.
 *
 * `free` (0 ≤ free): seconds of the session the period's free allowance covers (timedFreeSeconds). The session is
 * billed in its blocks as without it, and the first `free` billed seconds cost nothing: so the allowance never makes a
 * session dearer (starting the blocks at `free` did, where a first block of a free step ran past the session's end
 * and a later, priced step then billed what it had covered). A session the allowance covers whole costs nothing, not
 * even its connect fee; one it covers in part pays the connect fee, as a percentage event straddling its allowance
 * pays its fixed fee.
 *
 * `limited`: a session longer than MAX_SESSION_SECONDS is BAD_INPUT; false only to fold again a session rated already
 * (RatingContext.stored), which an earlier release priced whatever its length.
 */
export function timedEventNano(
  charge: TimeRatedCharge,
  schedules: Schedule[],
  startMs: number,
  dur: Dec,
  timezone: string,
  lines: PriceLine[] | null,
  free: Dec = ZERO,
  limited = true,
): bigint {
  if (dur.i < 0n) throw new RateflowError(ErrorCode.BadInput, `a session cannot last ${fmt(dur)} seconds`)
  if (dur.i === 0n) return 0n
  if (limited && cmp(dur, MAX_SESSION_SECONDS) > 0) {
    throw new RateflowError(
      ErrorCode.BadInput,
      `charge ${charge.id}: a session of ${fmt(dur)} seconds is longer than a time_rated charge prices (at most ${fmt(MAX_SESSION_SECONDS)} seconds, 366 days)`,
    )
  }
  if (cmp(free, dur) >= 0) {
    lines?.push({ description: `free_units: all ${fmt(dur)} s of the session`, quantity: fmt(dur), amount: '0' })
    return 0n
  }
  if (lines === null) {
    const plan = msPlanOf(charge)
    const durMs = plan === null ? -1 : sessionMillis(dur)
    const freeMs = free.i === 0n ? 0 : sessionMillis(free)
    if (plan !== null && durMs >= 0 && freeMs >= 0) {
      const total = msSessionNano(charge, plan, splitSessionMs(charge, schedules, startMs, durMs, timezone), durMs, freeMs)
      return plan.cap !== null && total > plan.cap ? plan.cap : total
    }
  }

  const parts = splitSession(charge, schedules, startMs, dur, timezone)
  let exact: Frac = { n: 0n, d: 1n }
  let linesNano = 0n
  const first = parts[0]!
  const connect = parsedRate(charge.id, first.rate).connect
  if (connect !== null && connect.i !== 0n) {
    exact = fracAdd(exact, fracOf(connect, ONE))
    if (lines !== null) {
      const a = toNano(connect)
      linesNano += a
      lines.push({ description: `connect fee (${first.rate.schedule})`, quantity: '1', unit_price: fmt(connect), amount: fmtNano(a) })
    }
  }

  // Free seconds not yet set against billed ones.
  let freeLeft = free
  let t: Dec = ZERO
  let k = 0
  while (cmp(t, dur) < 0) {
    while (k < parts.length - 1 && cmp(parts[k]!.to, t) <= 0) k++
    const part = parts[k]!
    const { steps } = parsedRate(charge.id, part.rate)
    let s = 0
    while (s < steps.length - 1 && cmp(steps[s + 1]!.from, t) <= 0) s++
    const step = steps[s]!
    const stepEnd = steps[s + 1]?.from
    let segEnd = min(part.to, dur)
    if (stepEnd !== undefined) segEnd = min(segEnd, stepEnd)
    // Whole increments from t: ceil((segEnd − t) / increment).
    const span = sub(segEnd, t)
    const e = Math.max(span.e, step.increment.e)
    const blocks = divInt(span.i * pow10(e - span.e), step.increment.i * pow10(e - step.increment.e), 'ceil')
    const billed = mul({ i: blocks, e: 0 }, step.increment)
    const covered = freeLeft.i === 0n ? ZERO : min(billed, freeLeft)
    if (covered.i !== 0n) freeLeft = sub(freeLeft, covered)
    const charged = covered.i === 0n ? billed : sub(billed, covered)
    const cost = fracOf(mul(charged, step.price), step.per)
    exact = fracAdd(exact, cost)
    if (lines !== null) {
      const a = fracRound(cost, 9, 'half_even')
      linesNano += a
      const l: PriceLine = {
        description:
          `${part.rate.schedule}: ${fmt(billed)} s from ${fmt(t)} s at ${fmt(step.price)} per ${fmt(step.per)} s in ${fmt(step.increment)} s increments` +
          (covered.i === 0n ? '' : `, ${fmt(covered)} s of them free (free_units)`),
        quantity: fmt(charged),
        amount: fmtNano(a),
      }
      if (cmp(step.per, ONE) === 0) l.unit_price = fmt(step.price)
      lines.push(l)
    }
    t = add(t, billed)
  }

  let total = roundSession(charge, exact)
  const r = charge.rounding
  if (lines !== null && total !== linesNano) {
    lines.push({ description: r === undefined ? 'rounding' : `rounding (${r.mode}, ${r.decimals} decimals)`, quantity: '1', amount: fmtNano(total - linesNano) })
  }
  const cap = capOf(charge)
  if (cap !== null && total > cap) {
    lines?.push({ description: 'maximum cost per event', quantity: '1', amount: fmtNano(cap - total) })
    total = cap
  }
  return total
}

/** An exact session price rounded as the charge says (default half-even to 9 decimals), in nano-units. */
function roundSession(charge: TimeRatedCharge, exact: Frac): bigint {
  const r = charge.rounding
  return r === undefined ? fracRound(exact, 9, 'half_even') : fracRound(exact, r.decimals, r.mode) * pow10(9 - r.decimals)
}

/** Sessions up to ~285 years: block arithmetic in JS integers stays below 2^53. */
const MAX_SESSION_MS = 2n ** 52n / 1000n

/** Milliseconds per unit of a duration with 3, 2, 1 or 0 decimals of a second. */
const MS_PER_UNIT = [1000, 100, 10, 1]
/** Up to this many units of any of those, the milliseconds (≤ units × 1000) stay within MAX_SESSION_MS. */
const MAX_FAST_UNITS = MAX_SESSION_MS / 1000n

/**
 * `d` seconds as a whole number of milliseconds (time, not money: a JS integer, exact below MAX_SESSION_MS), or
 * -1 when it has sub-millisecond digits or is longer than MAX_SESSION_MS. The common durations (at most 3
 * decimals, up to ~142 years) take no BigInt arithmetic.
 */
function sessionMillis(d: Dec): number {
  if (d.e <= 3 && d.i <= MAX_FAST_UNITS) return Number(d.i) * MS_PER_UNIT[d.e]!
  const ms = wholeMillis(d)
  return ms !== null && ms <= MAX_SESSION_MS ? Number(ms) : -1
}

/** `d` seconds in whole milliseconds, or null when it has sub-millisecond digits. */
function wholeMillis(d: Dec): bigint | null {
  if (d.e <= 3) return d.i * pow10(3 - d.e)
  const unit = pow10(d.e - 3)
  return d.i % unit === 0n ? d.i / unit : null
}

/** max_cost_per_event in nano-units, or null. */
function capOf(charge: TimeRatedCharge): bigint | null {
  let cap = caps.get(charge)
  if (cap === undefined) {
    cap = charge.max_cost_per_event === undefined ? null : toNano(parseDec(charge.max_cost_per_event, `charge ${charge.id}: max_cost_per_event`))
    caps.set(charge, cap)
  }
  return cap
}

// ---- the same price in whole milliseconds ----------------------------------------------------------

/** A step in milliseconds, with its price per billed millisecond as a numerator over the charge's denominator. */
interface MsStep {
  fromMs: number
  incMs: number
  /** cost of one billed millisecond = perMs / MsPlan.den, exactly. */
  perMs: bigint
}

/**
 * A time_rated charge whose step starts and increments are whole milliseconds, for rating: every price is a
 * numerator over one common denominator, so a session's exact price is Σ (milliseconds billed per step ×
 * numerator) + connect, one division at the end. It is the sum timedEventNano's fractions make, term for term.
 */
interface MsPlan {
  den: bigint
  rates: Map<TimeRatedRate, { steps: MsStep[]; connect: bigint }>
  /** max_cost_per_event in nano-units (strategy "free"), or null. */
  cap: bigint | null
}

const msPlans = new WeakMap<TimeRatedCharge, MsPlan | null>()

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b]
  return a
}

/** The charge's MsPlan, or null when a step's from or increment has sub-millisecond digits. */
function msPlanOf(charge: TimeRatedCharge): MsPlan | null {
  const hit = msPlans.get(charge)
  if (hit !== undefined) return hit
  const ms = (d: Dec) => Number(wholeMillis(d))
  let plan: MsPlan | null = null
  const parsed = charge.rates.map((r) => ({ r, p: parsedRate(charge.id, r) }))
  if (parsed.every(({ p }) => p.steps.every((st) => wholeMillis(st.from) !== null && wholeMillis(st.increment) !== null))) {
    // A billed millisecond of a step costs price / (per × 1000) = price.i × 10^per.e / (per.i × 1000 × 10^price.e).
    const perMsFrac = (st: ParsedStep): Frac => ({ n: st.price.i * pow10(st.per.e), d: st.per.i * 1000n * pow10(st.price.e) })
    let den = 1n
    const lcm = (d: bigint) => {
      den = (den / gcd(den, d)) * d
    }
    for (const { p } of parsed) {
      for (const st of p.steps) lcm(perMsFrac(st).d)
      if (p.connect !== null) lcm(pow10(p.connect.e))
    }
    const rates = new Map<TimeRatedRate, { steps: MsStep[]; connect: bigint }>()
    for (const { r, p } of parsed) {
      rates.set(r, {
        steps: p.steps.map((st) => {
          const f = perMsFrac(st)
          return { fromMs: ms(st.from), incMs: ms(st.increment), perMs: f.n * (den / f.d) }
        }),
        connect: p.connect === null ? 0n : p.connect.i * (den / pow10(p.connect.e)),
      })
    }
    plan = { den, rates, cap: capOf(charge) }
  }
  msPlans.set(charge, plan)
  return plan
}

/**
 * timedEventNano's rounded, uncapped price of a session whose `n` parts splitSessionMs left in splitParts, whose first
 * `freeMs` billed milliseconds cost nothing (below durMs).
 */
function msSessionNano(charge: TimeRatedCharge, plan: MsPlan, n: number, durMs: number, freeMs: number): bigint {
  const parts = splitParts
  let num = plan.rates.get(parts[0]!.rate)!.connect
  // Milliseconds billed by the last step seen, summed while the step does not change (a BigInt op per step, not per part).
  let step: MsStep | undefined
  let billedMs = 0
  let freeLeft = freeMs
  let t = 0
  let k = 0
  while (t < durMs) {
    while (k < n - 1 && parts[k]!.toMs <= t) k++
    const part = parts[k]!
    const steps = plan.rates.get(part.rate)!.steps
    let s = 0
    while (s < steps.length - 1 && steps[s + 1]!.fromMs <= t) s++
    const st = steps[s]!
    const stepEnd = s + 1 < steps.length ? steps[s + 1]!.fromMs : Infinity
    const segEnd = Math.min(part.toMs, durMs, stepEnd)
    // Whole increments from t: ceil((segEnd − t) / increment), in integers (the checks undo a quotient's rounding).
    const span = segEnd - t
    let blocks = Math.ceil(span / st.incMs)
    if ((blocks - 1) * st.incMs >= span) blocks--
    else if (blocks * st.incMs < span) blocks++
    const billed = blocks * st.incMs
    if (st !== step) {
      if (step !== undefined) num += BigInt(billedMs) * step.perMs
      step = st
      billedMs = 0
    }
    // The free milliseconds cover the first billed ones (timedEventNano).
    const covered = freeLeft < billed ? freeLeft : billed
    freeLeft -= covered
    billedMs += billed - covered
    t += billed
  }
  if (step !== undefined) num += BigInt(billedMs) * step.perMs
  return roundSession(charge, { n: num, d: plan.den })
}
