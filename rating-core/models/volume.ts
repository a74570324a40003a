/**
 * volume (CONTRACT §3.2): the single tier containing Q — the first whose inclusive up_to is ≥ Q —
 * prices all of Q, plus that tier's flat_fee. Q = 0 falls in the first tier (its flat_fee is
 * charged). free_units come off Q first; the total is clamped to [minimum, maximum].
 */
import type { VolumeCharge } from '../../catalog/types.js'
import { type Dec, ZERO, add, cmp, mul, parseDec, toNano } from '../decimal.js'
import { type Clamp, type PriceLine, type PriceResult, applyClamp, billable, cached, decField, line, parseClamp, result, tierRange } from './common.js'
import { type ParsedTier, parseTiers } from './graduated.js'

interface Parsed {
  tiers: ParsedTier[]
  free: Dec | null
  clamp: Clamp
}
const cache = new WeakMap<VolumeCharge, Parsed>()
const parse = (c: VolumeCharge): Parsed => ({ tiers: parseTiers(c.id, c.tiers), free: decField(c.free_units, c.id, 'free_units'), clamp: parseClamp(c) })

export function evaluateVolume(charge: VolumeCharge, q: Dec, lines: PriceLine[] | null): bigint {
  const p = cached(cache, charge, parse)
  const qb = billable(q, p.free, lines)
  let prev: Dec | null = null
  let sum = 0n
  for (let k = 0; k < p.tiers.length; k++) {
    const t = p.tiers[k]!
    if (t.upTo !== null && cmp(qb, t.upTo) > 0 && k < p.tiers.length - 1) {
      prev = t.upTo
      continue
    }
    let exact = t.price === null ? ZERO : mul(qb, t.price)
    if (t.fee !== null) exact = add(exact, t.fee)
    sum = toNano(exact)
    lines?.push(line(`tier ${k + 1} ${tierRange(prev, t.upTo)}`, qb, sum, t.price, t.fee))
    break
  }
  return applyClamp(sum, p.clamp, lines)
}

export function priceVolume(charge: VolumeCharge, Q: string): PriceResult {
  const lines: PriceLine[] = []
  return result(evaluateVolume(charge, parseDec(Q, 'quantity'), lines), lines)
}
