/**
 * graduated_percentage (CONTRACT §3.2): tiers with a `rate` in percent and a `flat_fee`, applied
 * to the cumulative value exactly as `graduated` applies unit prices (rate/100 is the unit price).
 */
import type { GraduatedPercentageCharge } from '../../catalog/types.js'
import { type Dec, parseDec } from '../decimal.js'
import { type Clamp, type PriceLine, type PriceResult, applyClamp, billable, cached, decField, parseClamp, percentToFraction, result } from './common.js'
import { type ParsedTier, graduatedSum } from './graduated.js'

interface Parsed {
  tiers: ParsedTier[]
  free: Dec | null
  clamp: Clamp
}
const cache = new WeakMap<GraduatedPercentageCharge, Parsed>()
const parse = (c: GraduatedPercentageCharge): Parsed => ({
  tiers: c.tiers.map((t, k) => {
    const rate = decField(t.rate, c.id, `tiers[${k}].rate`)
    return {
      upTo: t.up_to === null ? null : decField(t.up_to, c.id, `tiers[${k}].up_to`),
      price: rate === null ? null : percentToFraction(rate),
      fee: decField(t.flat_fee, c.id, `tiers[${k}].flat_fee`),
    }
  }),
  free: decField(c.free_units, c.id, 'free_units'),
  clamp: parseClamp(c),
})

export function evaluateGraduatedPercentage(charge: GraduatedPercentageCharge, q: Dec, lines: PriceLine[] | null): bigint {
  const p = cached(cache, charge, parse)
  return applyClamp(graduatedSum(p.tiers, billable(q, p.free, lines), lines), p.clamp, lines)
}

export function priceGraduatedPercentage(charge: GraduatedPercentageCharge, Q: string): PriceResult {
  const lines: PriceLine[] = []
  return result(evaluateGraduatedPercentage(charge, parseDec(Q, 'quantity'), lines), lines)
}
