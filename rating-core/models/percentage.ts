/**
 * percentage (CONTRACT §3.2), priced per event value v:
 *   fee(v) = clamp(v × rate/100 + fixed_fee_per_event, [per_event_min, per_event_max])
 * and the charge total Σ fee is clamped to [minimum, maximum].
 *
 * free_units is an allowance of VALUE, consumed by events in the order they are given (arrival
 * order in the pipeline): an event entirely inside the allowance is free — no fixed fee and no
 * per-event minimum, as a free transaction is not a transaction to charge for; an event that
 * straddles the end of the allowance pays the rate on the part above it plus the fixed fee.
 * A value of 0 is an event like any other (CONTRACT §3.2 prices every event): it pays the fixed fee, clamped to the
 * per-event minimum, unless it falls inside the allowance. A negative value is not charged and consumes no allowance
 * (none reaches here: validation and `price --events` refuse them).
 * Because of the allowance the split of the total between events depends on their order; with
 * no free_units and no charge clamp the total does not.
 */
import type { PercentageCharge } from '../../catalog/types.js'
import { type Dec, ZERO, add, cmp, fmt, mul, parseDec, sub, toNano } from '../decimal.js'
import { type Clamp, type PriceLine, type PriceResult, applyClamp, cached, decField, parseClamp, percentToFraction, requiredDec, result } from './common.js'

interface Parsed {
  fraction: Dec
  fixed: Dec | null
  min: Dec | null
  max: Dec | null
  free: Dec | null
  clamp: Clamp
}
const cache = new WeakMap<PercentageCharge, Parsed>()
const parse = (c: PercentageCharge): Parsed => {
  const lo = decField(c.per_event_min, c.id, 'per_event_min')
  const hi = decField(c.per_event_max, c.id, 'per_event_max')
  return {
    fraction: percentToFraction(requiredDec(c.rate, c.id, 'rate')),
    fixed: decField(c.fixed_fee_per_event, c.id, 'fixed_fee_per_event'),
    min: lo,
    max: hi,
    free: decField(c.free_units, c.id, 'free_units'),
    clamp: parseClamp(c),
  }
}

/**
 * The fee of one event of value `v`, given the allowance already used by earlier events: exact (not rounded), clamped
 * to the per-event minimum and maximum. Returns it and the allowance used after this event. Fees are summed exact and
 * the sum rounded once (percentageTotal): rounded one by one, three fees of 5e-10 made 0 where the period's model
 * gives 1.5e-9, rounded to 0.000000002, as a one-tier graduated_percentage at the same rate does.
 */
export function percentageEventFee(charge: PercentageCharge, v: Dec, freeUsed: Dec): { fee: Dec; freeUsed: Dec } {
  const p = cached(cache, charge, parse)
  if (v.i < 0n) return { fee: ZERO, freeUsed }
  let billed = v
  if (p.free !== null && cmp(freeUsed, p.free) < 0) {
    const left = sub(p.free, freeUsed)
    if (cmp(v, left) <= 0) return { fee: ZERO, freeUsed: add(freeUsed, v) }
    billed = sub(v, left)
    freeUsed = p.free
  }
  let fee = mul(billed, p.fraction)
  if (p.fixed !== null) fee = add(fee, p.fixed)
  if (p.min !== null && cmp(fee, p.min) < 0) fee = p.min
  if (p.max !== null && cmp(fee, p.max) > 0) fee = p.max
  return { fee, freeUsed }
}

/**
 * The charge's total in nano-units: the exact sum of per-event fees rounded half-even to 9 decimals, once, then
 * clamped to the charge's minimum and maximum (which hold 9 decimals at most, so rounding first gives what clamping first would).
 */
export function percentageTotal(charge: PercentageCharge, sumOfFees: Dec, lines: PriceLine[] | null): bigint {
  return applyClamp(toNano(sumOfFees), cached(cache, charge, parse).clamp, lines)
}

/** Prices a period's events, given as values in arrival order; one line per event. */
export function pricePercentage(charge: PercentageCharge, values: string[]): PriceResult {
  const lines: PriceLine[] = []
  let used = ZERO
  let sum = ZERO
  values.forEach((s, k) => {
    const v = parseDec(s, `--events value ${k + 1}`)
    const r = percentageEventFee(charge, v, used)
    used = r.freeUsed
    sum = add(sum, r.fee)
    // Each line's fee rounded on its own, as shown; the amount is their exact sum rounded once.
    lines.push({ description: `event ${k + 1}: ${charge.rate}% of ${fmt(v)}`, quantity: fmt(v), amount: fmt({ i: toNano(r.fee), e: 9 }) })
  })
  return result(percentageTotal(charge, sum, lines), lines)
}
