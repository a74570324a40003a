/**
 * Meters (CONTRACT §3): which records a meter reads (metric + filter), how it groups them
 * (group_by) and how it folds one event into the running aggregate of a period.
 *
 * Every fold is pure (the prior aggregate is never mutated, so a caller can keep it to roll
 * back a failed write) and order-independent for every aggregation: the aggregate after a set
 * of events is the same whatever order they came in. Per aggregation:
 * - sum:          Σ quantity × scale.
 * - count:        number of events × scale (scale defaults to 1; "0.001" counts thousands).
 * - max / min:    of quantity × scale.
 * - latest:       quantity × scale of the event with the greatest event_time; equal times are
 *                 broken by the greater event_id, so a replay in any order picks the same one.
 * - unique_count: number of distinct values of `dimension` × scale; events without the
 *                 dimension count nothing.
 * - time_weighted_avg: a reading holds from its event_time until the next reading's event_time
 *                 (ties ordered by event_id), the last one until period end (or until the next
 *                 catalog version takes over, when one does mid-period); before the first
 *                 reading of the period the value is 0. The average is ∫value dt / period
 *                 length, rounded half-even to 18 decimals. A gauge that should count from the
 *                 period start must report a reading at the period start.
 */
import type { Meter } from '../catalog/types.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { lowerBound } from '../common/sorted.js'
import { type Dec, ONE, ZERO, add, cmp, div, fmt, mul, parseDec, sub } from './decimal.js'
import { utcMillis } from './validate.js'

/** Decimal places of a time_weighted_avg (an average is a quotient; it has to stop somewhere). */
export const TIME_WEIGHTED_AVG_DP = 18

/** The aggregate fields of a meter state (JSON-serialisable; decimals as canonical strings). */
export interface MeterAggregate {
  /** Events folded in. */
  n: number
  /** The aggregated, scaled meter value Q. */
  q: string
  /** latest: the ordering key of the reading held. */
  latest?: { t: number; id: string; src?: string }
  /** unique_count: distinct dimension values, sorted. */
  uniques?: string[]
  /**
   * time_weighted_avg: readings sorted by (t, id, source): [epoch ms, event_id, scaled value, source]. The source is
   * absent from readings a checkpoint of an earlier release recorded (readingOrder).
   */
  points?: [number, string, string, string?][]
  /** time_weighted_avg: Σ value × milliseconds held, up to period end. */
  integral?: string
}

export interface FoldEvent {
  event_id: string
  /**
   * The event's source: with event_id, its identity (CONTRACT §2). Readings of two sources with one id at one time
   * are two readings, ordered by source (`latest`, time_weighted_avg); absent where there is none (a price on the CLI).
   */
  source?: string | undefined
  event_time: string
  /** event_time in epoch ms when the caller has read it already (it must be the same instant); else it is parsed. */
  ms?: number | undefined
  dimensions: Record<string, string>
}

interface MeterInfo {
  /** null when the scale is 1 (skips a multiplication per event). */
  scale: Dec | null
  filter: [string, string][]
  groupBy: string[]
}
const infoCache = new WeakMap<Meter, MeterInfo>()

export function meterInfo(meter: Meter): MeterInfo {
  let info = infoCache.get(meter)
  if (info === undefined) {
    const s = meter.scale === undefined ? null : parseDec(meter.scale, `meter ${meter.id}: scale`)
    info = {
      scale: s === null || cmp(s, ONE) === 0 ? null : s,
      filter: Object.entries(meter.filter ?? {}),
      groupBy: meter.group_by ?? [],
    }
    infoCache.set(meter, info)
  }
  return info
}

/** True when a record of `metric` with these dimensions feeds the meter: same metric, and every filter entry equal. */
export function meterAccepts(meter: Meter, metric: string, dimensions: Record<string, string>): boolean {
  if (meter.metric !== metric) return false
  for (const [k, v] of meterInfo(meter).filter) {
    if (dimensions[k] !== v) return false
  }
  return true
}

/**
 * The group an event belongs to: '' without group_by, else the JSON array of the group_by
 * dimension values in group_by order, a missing dimension as null (`["eu",null]`). JSON keeps
 * the key unambiguous whatever characters values contain, and it parses back for invoice lines.
 */
export function groupKey(meter: Meter, dimensions: Record<string, string>): string {
  const g = meterInfo(meter).groupBy
  if (g.length === 0) return ''
  return JSON.stringify(g.map((d) => dimensions[d] ?? null))
}

/** The event's quantity × the meter's scale (meterInfo(meter).scale; null for 1). */
export function scaledQuantity(scale: Dec | null, quantity: string): Dec {
  const q = parseDec(quantity, 'quantity')
  return scale === null ? q : mul(q, scale)
}

export interface FoldResult {
  agg: MeterAggregate
  /** Q after the event, parsed. */
  q: Dec
  /** The event's contribution as stored with the rated event (see usage-rater). */
  metered: Dec
}

/**
 * Folds one event into `prior` (undefined = first event of the period). `priorQ` is prior.q
 * already parsed (callers keep it to avoid re-parsing on the hot path). `periodStartMs`,
 * `periodEndMs` (exclusive) and `holdEndMs` are needed by time_weighted_avg only: readings hold
 * until the period end or `holdEndMs` (when the next catalog version takes over), whichever comes
 * first, and the average divides by the whole period.
 */
export function foldMeter(
  meter: Meter,
  prior: MeterAggregate | undefined,
  priorQ: Dec,
  ev: FoldEvent,
  scaled: Dec,
  periodStartMs: number,
  periodEndMs: number,
  holdEndMs = periodEndMs,
): FoldResult {
  const n = (prior?.n ?? 0) + 1
  switch (meter.aggregation) {
    case 'sum': {
      const q = prior === undefined ? scaled : add(priorQ, scaled)
      return { agg: { n, q: fmt(q) }, q, metered: scaled }
    }
    case 'count': {
      const one = meterInfo(meter).scale ?? ONE
      const q = prior === undefined ? one : add(priorQ, one)
      return { agg: { n, q: fmt(q) }, q, metered: one }
    }
    case 'max':
    case 'min': {
      const better = meter.aggregation === 'max' ? cmp(scaled, priorQ) > 0 : cmp(scaled, priorQ) < 0
      const q = prior === undefined || better ? scaled : priorQ
      return { agg: { n, q: q === priorQ && prior !== undefined ? prior.q : fmt(q) }, q, metered: scaled }
    }
    case 'latest': {
      const t = ev.ms ?? eventMillis(ev.event_time)
      const held = prior?.latest
      const src = ev.source ?? ''
      // The last by (event_time, event_id, source): two sources' readings with one id and time are ordered, not the
      // first to arrive kept (a period total that depended on arrival order).
      const newer = held === undefined || readingOrder(t, ev.event_id, src, held.t, held.id, held.src) > 0
      if (!newer && prior !== undefined) return { agg: { ...prior, n }, q: priorQ, metered: scaled }
      return { agg: { n, q: fmt(scaled), latest: src === '' ? { t, id: ev.event_id } : { t, id: ev.event_id, src } }, q: scaled, metered: scaled }
    }
    case 'unique_count': {
      const dim = meter.dimension
      const value = dim === undefined ? undefined : ev.dimensions[dim]
      const uniques = prior?.uniques ?? []
      const one = meterInfo(meter).scale ?? ONE
      if (value === undefined) {
        return { agg: { n, q: prior?.q ?? '0', uniques }, q: priorQ, metered: ZERO }
      }
      const at = lowerBound(uniques, uniques.length, value)
      if (uniques[at] === value) return { agg: { n, q: prior?.q ?? '0', uniques }, q: priorQ, metered: ZERO }
      // Copy-on-insert keeps the fold pure; it costs O(distinct values) per new value only.
      const next = uniques.slice()
      next.splice(at, 0, value)
      const q = mul({ i: BigInt(next.length), e: 0 }, one)
      return { agg: { n, q: fmt(q), uniques: next }, q, metered: one }
    }
    case 'time_weighted_avg':
      return foldTimeWeighted(prior, ev, scaled, n, periodStartMs, periodEndMs, holdEndMs)
  }
}

function foldTimeWeighted(
  prior: MeterAggregate | undefined,
  ev: FoldEvent,
  v: Dec,
  n: number,
  startMs: number,
  endMs: number,
  holdEndMs: number,
): FoldResult {
  const t = ev.ms ?? eventMillis(ev.event_time)
  if (!(endMs > startMs)) throw new RateflowError(ErrorCode.BadInput, 'time_weighted_avg: the period is empty')
  if (t < startMs || t >= endMs) {
    throw new RateflowError(ErrorCode.BadInput, `time_weighted_avg: event ${ev.event_id} at ${ev.event_time} is outside the period`)
  }
  const points = prior?.points ?? []
  const src = ev.source ?? ''
  // First index whose (t, id, source) sorts after the new reading.
  let lo = 0
  let hi = points.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const p = points[mid]!
    if (readingOrder(p[0], p[1], p[3], t, ev.event_id, src) <= 0) lo = mid + 1
    else hi = mid
  }
  const before = points[lo - 1]
  const metered = v
  const integral0 = prior?.integral === undefined ? ZERO : parseDec(prior.integral)
  if (before !== undefined && readingOrder(before[0], before[1], before[3], t, ev.event_id, src) === 0) {
    // The same reading again (a replay that escaped dedupe): no change.
    return { agg: { ...prior!, n }, q: parseDec(prior!.q), metered }
  }
  // The previous reading held over [t, nextT); now the new one does: Δ = (v − prev) × (nextT − t).
  const after = points[lo]
  // The last reading holds until the hold end; a reading at or after it (a version that took over after the reading
  // was priced by this one: see RatingContext.holdEndMs) holds for no time.
  const nextT = after === undefined ? Math.max(t, Math.min(endMs, holdEndMs)) : after[0]
  const prevV = before === undefined ? ZERO : parseDec(before[2])
  const integral = add(integral0, mul(sub(v, prevV), { i: BigInt(nextT - t), e: 0 }))
  const next = points.slice()
  next.splice(lo, 0, src === '' ? [t, ev.event_id, fmt(v)] : [t, ev.event_id, fmt(v), src])
  const q = div(integral, { i: BigInt(endMs - startMs), e: 0 }, TIME_WEIGHTED_AVG_DP, 'half_even')
  return { agg: { n, q: fmt(q), points: next, integral: fmt(integral) }, q, metered }
}

/**
 * Orders two readings by (epoch ms, event_id, source): negative when the first sorts before the second, 0 for the same
 * reading. A reading recorded without its source (`undefined`: a checkpoint of an earlier release) is compared on time
 * and id alone, as that release did.
 */
function readingOrder(t1: number, id1: string, src1: string | undefined, t2: number, id2: string, src2: string | undefined): number {
  if (t1 !== t2) return t1 < t2 ? -1 : 1
  if (id1 !== id2) return id1 < id2 ? -1 : 1
  if (src1 === undefined || src2 === undefined || src1 === src2) return 0
  return src1 < src2 ? -1 : 1
}

/** Epoch ms of an ISO-8601 event time; the normalised UTC form every staged event has is read digit by digit. */
export function eventMillis(iso: string): number {
  const t = utcMillis(iso) ?? Date.parse(iso)
  if (Number.isNaN(t)) throw new RateflowError(ErrorCode.BadInput, `event_time is not an ISO-8601 time: ${JSON.stringify(iso)}`)
  return t
}

/** Q of an empty period for a meter: 0 for every aggregation. */
export const EMPTY_Q: Dec = ZERO
