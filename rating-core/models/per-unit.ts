/** per_unit (CONTRACT §3.2): max(0, Q − free_units) × unit_price, clamped to [minimum, maximum]. */
import type { PerUnitCharge } from '../../catalog/types.js'
import { type Dec, mul, parseDec, toNano } from '../decimal.js'
import { type Clamp, type PriceLine, type PriceResult, applyClamp, billable, cached, decField, line, parseClamp, requiredDec, result } from './common.js'

interface Parsed {
  price: Dec
  free: Dec | null
  clamp: Clamp
}
const cache = new WeakMap<PerUnitCharge, Parsed>()
const parse = (c: PerUnitCharge): Parsed => ({
  price: requiredDec(c.unit_price, c.id, 'unit_price'),
  free: decField(c.free_units, c.id, 'free_units'),
  clamp: parseClamp(c),
})

/** The period total in nano-units for aggregated quantity `q`; appends lines when given an array. */
export function evaluatePerUnit(charge: PerUnitCharge, q: Dec, lines: PriceLine[] | null): bigint {
  const p = cached(cache, charge, parse)
  const qb = billable(q, p.free, lines)
  const amt = toNano(mul(qb, p.price))
  lines?.push(line('per unit', qb, amt, p.price))
  return applyClamp(amt, p.clamp, lines)
}

export function pricePerUnit(charge: PerUnitCharge, Q: string): PriceResult {
  const lines: PriceLine[] = []
  return result(evaluatePerUnit(charge, parseDec(Q, 'quantity'), lines), lines)
}
