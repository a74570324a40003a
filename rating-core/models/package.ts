/**
 * package (CONTRACT §3.2): ceil(max(0, Q − free_units) / package_size) × package_price; a started
 * package is a whole package. The total is clamped to [minimum, maximum].
 */
import type { PackageCharge } from '../../catalog/types.js'
import { type Dec, ZERO, ceilDiv, fmt, mul, parseDec, toNano } from '../decimal.js'
import { type Clamp, type PriceLine, type PriceResult, applyClamp, billable, cached, decField, line, parseClamp, requiredDec, result } from './common.js'

interface Parsed {
  size: Dec
  price: Dec
  free: Dec | null
  clamp: Clamp
}
const cache = new WeakMap<PackageCharge, Parsed>()
const parse = (c: PackageCharge): Parsed => ({
  size: requiredDec(c.package_size, c.id, 'package_size'),
  price: requiredDec(c.package_price, c.id, 'package_price'),
  free: decField(c.free_units, c.id, 'free_units'),
  clamp: parseClamp(c),
})

export function evaluatePackage(charge: PackageCharge, q: Dec, lines: PriceLine[] | null): bigint {
  const p = cached(cache, charge, parse)
  const qb = billable(q, p.free, lines)
  const n = qb.i === 0n ? 0n : ceilDiv(qb, p.size)
  const packages: Dec = { i: n, e: 0 }
  const amt = toNano(mul(packages, p.price))
  lines?.push(line(`packages of ${fmt(p.size)}`, n === 0n ? ZERO : packages, amt, p.price))
  return applyClamp(amt, p.clamp, lines)
}

export function pricePackage(charge: PackageCharge, Q: string): PriceResult {
  const lines: PriceLine[] = []
  return result(evaluatePackage(charge, parseDec(Q, 'quantity'), lines), lines)
}
