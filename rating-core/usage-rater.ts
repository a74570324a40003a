/**
 * Incremental rating of usage events (ARCHITECTURE invariant 4, CONTRACT §3.2).
 *
 * For every (subscription, charge, period, group, catalog version) the caller keeps one MeterState
 * (stage.ts totalsKey). Rating an event folds it into the state and prices the new state:
 *   1. Q(after) = meter aggregate with the event folded in (meters.ts).
 *   2. T(after) = the charge model applied to Q(after), summed line by line in 9-decimal units
 *      and clamped to [minimum, maximum] — exactly what periodTotal reports for the invoice.
 *   3. amount   = T(after) − T(before), where T(before the first event) = 0.
 * The amounts telescope: Σ amounts of a period's events = T(final state), exactly, to the
 * nano-unit, whatever the order. A period with no events has no rated events, but its invoice
 * still carries the model at Q = 0 (first tier's flat_fee, minimum): periodTotal(undefined).
 *
 * An amount is negative when T goes down: a `sum` meter fed a negative correction, `min` and
 * `latest` meters (a lower reading), a `time_weighted_avg` reading below the one it replaces, and
 * `volume` where Q crosses into a cheaper tier (10 at 1.2 = 12, then 10.5 at 0.75 = 7.875).
 * `max`, `count`, `unique_count` and non-negative `sum` give no negative amounts with the other
 * models, which are non-decreasing in Q.
 *
 * Per-event models:
 * - percentage: each event pays its own fee (models/percentage.ts); the free allowance of
 *   value is consumed in the order events are rated, so which event is free depends on order
 *   (the total does not when there is no free allowance). The charge clamp applies to Σ fees.
 * - time_rated: each session is priced on its own (time-rated.ts), less the part of it the free
 *   allowance of seconds covers (consumed in the order sessions are rated, as for percentage);
 *   the charge clamp applies to Σ prices.
 *
 * The state is immutable: rateUsageEvent returns a new one and never mutates `prior`, so a
 * caller can keep the prior state until its write commits. A rater that keeps totals in memory
 * uses foldUsageEvent on a RunningTotal (the same fold, no state strings printed per event) and
 * turns a total into a MeterState with meterStateOf when it needs the JSON form.
 */
import type { Meter, Schedule, TimeRatedCharge, UsageCharge } from '../catalog/types.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { AMOUNT_DP, type Dec, ZERO, add, fmt, fmtNano, isCanonical, parseDec, toNano } from './decimal.js'
import { type MeterAggregate, eventMillis, foldMeter, groupKey, meterAccepts, meterInfo, scaledQuantity } from './meters.js'
import { evaluateGraduatedPercentage } from './models/graduated-percentage.js'
import { evaluateGraduated } from './models/graduated.js'
import type { PriceLine } from './models/common.js'
import { evaluatePackage } from './models/package.js'
import { percentageEventFee, percentageTotal } from './models/percentage.js'
import { evaluatePerUnit } from './models/per-unit.js'
import { evaluateVolume } from './models/volume.js'
import { rateTimedEvent, timedEventNano, timedFreeSeconds, timedPeriodTotal } from './time-rated.js'

export { groupKey, meterAccepts }
export type { PriceLine }

export interface UsageEventInput {
  event_id: string
  /** The event's source (FoldEvent.source): orders readings of one id and time from two sources. */
  source?: string | undefined
  /** UTC ISO-8601. */
  event_time: string
  /** event_time in epoch ms when the caller has read it already (it must be the same instant); else it is parsed. */
  ms?: number | undefined
  /** Decimal string in the metric's own unit (before the meter's scale). */
  quantity: string
  dimensions: Record<string, string>
}

export interface RatingContext {
  /** The catalog's schedules (time_rated). */
  schedules: Schedule[]
  /** The account's IANA timezone (time_rated). */
  timezone: string
  /** Inclusive period start, ISO-8601 (time_weighted_avg). */
  periodStart: string
  /** Exclusive period end, ISO-8601 (time_weighted_avg). */
  periodEnd: string
  /**
   * Epoch ms (exclusive) after which a reading holds no longer (time_weighted_avg), when before the period end: the
   * next catalog version taking over (a version that takes effect mid-period bills its own part of the period, and
   * the next version's readings the rest, never both), or the subscription's end (a cancelled subscription's seats
   * are not billed past it), whichever comes first. Absent: the period end.
   */
  holdEndMs?: number | undefined
  /**
   * The event is a stored rated row folded again (a start's rebuild): limits that refuse new events do not apply, as its
   * amount was decided when it was rated. A time_rated session longer than MAX_SESSION_SECONDS, priced by a release
   * without that limit, made every start fail on the store it had written.
   */
  stored?: boolean | undefined
}

/**
 * The running aggregate of one (subscription, charge, period, group). Plain JSON: decimals are
 * canonical strings, so a state that went through JSON.stringify/parse, msgpack or a KV store
 * rates the next event identically.
 */
export interface MeterState extends MeterAggregate {
  v: 1
  /** The charge model this state was built for (a state is not portable between models). */
  model: UsageCharge['model']
  /** T(state): Σ of the amounts rated so far, 9 decimals at most. */
  total: string
  /** percentage / time_rated: Σ per-event fees before the charge clamp (percentage: exact, so it may hold more than 9 decimals). */
  fees?: string
  /** percentage: free allowance (of value) consumed so far; time_rated: seconds of it, when the charge has one. */
  free_used?: string
}

export interface RatedUsage {
  /** T(after) − T(before), canonical decimal string with at most 9 decimals. */
  amount: string
  /**
   * The event's scaled quantity (for count: the scale, for unique_count: the scale when the
   * event brought a new value else 0 — the event's contribution to Q).
   */
  metered: string
  state: MeterState
}

export interface PeriodTotal {
  /** Q: the aggregated meter value (percentage / time_rated: Σ event values). */
  quantity: string
  amount: string
  lines: PriceLine[]
}

/**
 * A running total as a rater keeps it in memory between events: the state's decimals parsed, nothing
 * printed. Folding an event into one (foldUsageEvent) prints only the event's amount and metered value;
 * printing q and total per event, as a MeterState needs them, cost two decimal-to-text conversions per
 * event that nothing read until an invoice or a test asked. Immutable, like MeterState: a fold returns a
 * new one, so a caller can put the prior back when a later charge of the same event fails.
 */
export interface RunningTotal {
  readonly model: UsageCharge['model']
  /** Events folded in. */
  readonly n: number
  /** Q, the aggregated scaled meter value. */
  readonly q: Dec
  /** T in nano-units (9 decimals). */
  readonly total: bigint
  /** time_rated: Σ session prices in nano-units before the charge clamp (each rounded by its charge's own rounding); else 0. */
  readonly fees: bigint
  /**
   * percentage: Σ per-event fees exact, before the charge clamp, which the total rounds once (a fee is not rounded on its
   * own: percentageEventFee); else 0.
   */
  readonly exactFees: Dec
  /** percentage: free allowance (of value) consumed so far; time_rated: of seconds; else 0. */
  readonly freeUsed: Dec
  /** Aggregations other than sum (count, max, min, latest, unique_count, time_weighted_avg): the aggregate as foldMeter keeps it. */
  readonly agg: MeterAggregate | undefined
}

/** The result of folding one event into a running total. */
export interface FoldedUsage {
  /** T(after) − T(before), canonical decimal string with at most 9 decimals. */
  readonly amount: string
  /** As RatedUsage.metered. */
  readonly metered: string
  readonly next: RunningTotal
}

// A MeterState rated in this thread carries its RunningTotal under a symbol, so the next event does not
// parse its strings again (a third of the per-event cost); a deserialised state is parsed once.
const HOT = Symbol('rateflow.meterState.parsed')
type StateWithHot = MeterState & { [HOT]?: RunningTotal }

/** The running total of a MeterState (parsed once, then kept with a state that can take it). */
export function runningTotalOf(s: MeterState): RunningTotal {
  const st = s as StateWithHot
  let h = st[HOT]
  if (h === undefined) {
    const { v: _v, model, total, fees, free_used, ...agg } = s
    h = {
      model,
      n: s.n,
      q: parseDec(s.q, 'state.q'),
      total: toNano(parseDec(total, 'state.total')),
      fees: model === 'time_rated' && fees !== undefined ? toNano(parseDec(fees, 'state.fees')) : 0n,
      // A state written before fees were kept exact holds them rounded, as its amounts were.
      exactFees: model === 'percentage' && fees !== undefined ? parseDec(fees, 'state.fees') : ZERO,
      freeUsed: free_used === undefined ? ZERO : parseDec(free_used, 'state.free_used'),
      // For a sum meter the fold ignores it.
      agg,
    }
    // A caller's frozen state is read, not annotated.
    if (Object.isExtensible(s)) st[HOT] = h
  }
  return h
}

/** The plain JSON state of a running total (decimals as canonical strings), carrying it for the next event. */
export function meterStateOf(t: RunningTotal): MeterState {
  let s: MeterState
  if (t.model === 'time_rated') {
    s = { v: 1, model: t.model, n: t.n, q: fmt(t.q), total: fmtNano(t.total), fees: fmtNano(t.fees) }
    // Only with a free allowance: a state of a charge without one keeps the shape it always had.
    if (t.freeUsed.i !== 0n) s.free_used = fmt(t.freeUsed)
  } else if (t.model === 'percentage') {
    s = { v: 1, model: t.model, n: t.n, q: fmt(t.q), total: fmtNano(t.total), fees: fmt(t.exactFees), free_used: fmt(t.freeUsed) }
  } else if (t.agg === undefined) {
    s = { n: t.n, q: fmt(t.q), v: 1, model: t.model, total: fmtNano(t.total) }
  } else {
    s = { ...t.agg, v: 1, model: t.model, total: fmtNano(t.total) }
  }
  // A plain symbol-keyed property: Object.defineProperty per event cost a quarter of the per-event time.
  // Symbol keys are skipped by JSON.stringify, Object.keys and structuredClone.
  ;(s as StateWithHot)[HOT] = t
  return s
}

/** The model's period total in nano-units for aggregated quantity q (not for per-event models). */
function modelTotal(charge: UsageCharge, q: Dec, lines: PriceLine[] | null): bigint {
  switch (charge.model) {
    case 'per_unit':
      return evaluatePerUnit(charge, q, lines)
    case 'graduated':
      return evaluateGraduated(charge, q, lines)
    case 'volume':
      return evaluateVolume(charge, q, lines)
    case 'package':
      return evaluatePackage(charge, q, lines)
    case 'graduated_percentage':
      return evaluateGraduatedPercentage(charge, q, lines)
    case 'percentage':
    case 'time_rated':
      throw new RateflowError(ErrorCode.Internal, `model ${charge.model} is priced per event`)
  }
}

function checkPrior(charge: UsageCharge, prior: MeterState | undefined): void {
  if (prior !== undefined && (prior.v !== 1 || prior.model !== charge.model)) {
    throw new RateflowError(
      ErrorCode.Internal,
      `meter state for charge ${charge.id} was built for model ${String(prior.model)} (v${String(prior.v)}), not ${charge.model}`,
    )
  }
}

/**
 * A time_rated session's price in nano-units; the session lasts the event's scaled quantity in seconds, of which the
 * first `free` the period's free allowance covers.
 */
function sessionFee(charge: TimeRatedCharge, scale: Dec | null, scaled: Dec, free: Dec, ev: UsageEventInput, ctx: RatingContext): bigint {
  if (scale !== null) {
    // A scaled duration goes through its text, as `rateflow rate` would be given it (same limits, same price).
    return toNano(parseDec(rateTimedEvent(charge, ctx.schedules, ev.event_time, fmt(scaled), ctx.timezone, free, ctx.stored !== true).amount))
  }
  return timedEventNano(charge, ctx.schedules, ev.ms ?? eventMillis(ev.event_time), scaled, ctx.timezone, null, free, ctx.stored !== true)
}

/** meteredFmt(scaled) for the rated row; without a scale that is the quantity itself whenever it is already canonical. */
function meteredText(scale: Dec | null, scaled: Dec, quantity: string): string {
  return scale === null && isCanonical(quantity) ? quantity : meteredFmt(scaled)
}

/**
 * A metered value as the rated row keeps it: at most 9 decimals, rounded half-even as amounts are. The store's
 * Decimal(38, 9) cut the rest off (999999999.9 bytes at a GB scale was stored as 0.999999999, not 1); the running
 * totals keep the exact value either way.
 */
function meteredFmt(d: Dec): string {
  return d.e <= AMOUNT_DP ? fmt(d) : fmtNano(toNano(d))
}

/** Rates one event of `charge` (whose meter is `meter` and accepts the event) against the running state. */
export function rateUsageEvent(
  charge: UsageCharge,
  meter: Meter,
  prior: MeterState | undefined,
  ev: UsageEventInput,
  ctx: RatingContext,
): RatedUsage {
  checkPrior(charge, prior)
  const r = foldUsageEvent(charge, meter, prior === undefined ? undefined : runningTotalOf(prior), ev, ctx)
  return { amount: r.amount, metered: r.metered, state: meterStateOf(r.next) }
}

/**
 * rateUsageEvent on a RunningTotal (undefined for the period's first event): the same amount and metered value,
 * and the next total, with no state strings printed. What the rater runs per event. Keeps no reference to `ev`
 * or `ctx` (only to strings in them), so a caller may reuse both objects for the next event.
 */
export function foldUsageEvent(
  charge: UsageCharge,
  meter: Meter,
  prior: RunningTotal | undefined,
  ev: UsageEventInput,
  ctx: RatingContext,
): FoldedUsage {
  if (prior !== undefined && prior.model !== charge.model) {
    throw new RateflowError(ErrorCode.Internal, `running total for charge ${charge.id} was built for model ${prior.model}, not ${charge.model}`)
  }
  // The meter's parsed scale, looked up once per event (a WeakMap probe each time it was asked for).
  const scale = meterInfo(meter).scale
  const scaled = scaledQuantity(scale, ev.quantity)
  const n = (prior?.n ?? 0) + 1

  if (charge.model === 'time_rated') {
    // The session's own price, less what the period's free allowance covers; the total is Σ prices clamped to the
    // charge's minimum and maximum, and the event's amount its increment (as for percentage).
    const f = timedFreeSeconds(charge, scaled, prior?.freeUsed ?? ZERO)
    const fee = sessionFee(charge, scale, scaled, f.free, ev, ctx)
    const q = prior === undefined ? scaled : add(prior.q, scaled)
    const fees = (prior?.fees ?? 0n) + fee
    const total = timedPeriodTotal(charge, fees, null)
    const next: RunningTotal = { model: charge.model, n, q, total, fees, exactFees: ZERO, freeUsed: f.freeUsed, agg: undefined }
    return { amount: fmtNano(total - (prior?.total ?? 0n)), metered: meteredText(scale, scaled, ev.quantity), next }
  }

  if (charge.model === 'percentage') {
    const r = percentageEventFee(charge, scaled, prior?.freeUsed ?? ZERO)
    const exactFees = prior === undefined ? r.fee : add(prior.exactFees, r.fee)
    const total = percentageTotal(charge, exactFees, null)
    const q = prior === undefined ? scaled : add(prior.q, scaled)
    const next: RunningTotal = { model: charge.model, n, q, total, fees: 0n, exactFees, freeUsed: r.freeUsed, agg: undefined }
    return { amount: fmtNano(total - (prior?.total ?? 0n)), metered: meteredFmt(scaled), next }
  }

  if (meter.aggregation === 'sum') {
    // The common case, folded here: foldMeter's intermediate objects cost more than the addition.
    const q = prior === undefined ? scaled : add(prior.q, scaled)
    const total = modelTotal(charge, q, null)
    const next: RunningTotal = { model: charge.model, n, q, total, fees: 0n, exactFees: ZERO, freeUsed: ZERO, agg: undefined }
    return { amount: fmtNano(total - (prior?.total ?? 0n)), metered: meteredText(scale, scaled, ev.quantity), next }
  }

  const startMs = meter.aggregation === 'time_weighted_avg' ? eventMillis(ctx.periodStart) : 0
  const endMs = meter.aggregation === 'time_weighted_avg' ? eventMillis(ctx.periodEnd) : 0
  const folded = foldMeter(meter, prior?.agg, prior?.q ?? ZERO, ev, scaled, startMs, endMs, ctx.holdEndMs ?? endMs)
  const total = modelTotal(charge, folded.q, null)
  const next: RunningTotal = { model: charge.model, n, q: folded.q, total, fees: 0n, exactFees: ZERO, freeUsed: ZERO, agg: folded.agg }
  return { amount: fmtNano(total - (prior?.total ?? 0n)), metered: meteredFmt(folded.metered), next }
}

/**
 * The period's quantity, amount and invoice lines. With events, amount = state.total = Σ of the
 * rated amounts. Without (state undefined) it is the model at zero usage: the first tier's
 * flat_fee and the charge minimum still apply.
 */
export function periodTotal(charge: UsageCharge, state: MeterState | undefined, _ctx?: RatingContext): PeriodTotal {
  checkPrior(charge, state)
  const hot = state === undefined ? undefined : runningTotalOf(state)
  const lines: PriceLine[] = []
  const q = hot?.q ?? ZERO
  if (charge.model === 'time_rated') {
    const fees = hot?.fees ?? 0n
    if (state !== undefined) lines.push({ description: `${state.n} sessions`, quantity: fmt(q), amount: fmtNano(fees) })
    const total = timedPeriodTotal(charge, fees, lines)
    return { quantity: fmt(q), amount: fmtNano(total), lines }
  }
  if (charge.model === 'percentage') {
    const fees = hot?.exactFees ?? ZERO
    if (state !== undefined) {
      lines.push({ description: `${state.n} events at ${charge.rate}%`, quantity: fmt(q), amount: fmtNano(toNano(fees)) })
    }
    const total = percentageTotal(charge, fees, lines)
    return { quantity: fmt(q), amount: fmtNano(total), lines }
  }
  const total = modelTotal(charge, q, lines)
  return { quantity: fmt(q), amount: fmtNano(total), lines }
}
