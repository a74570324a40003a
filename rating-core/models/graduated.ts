/**
 * graduated (CONTRACT §3.2): each tier prices the part of Q in (previous up_to, up_to], plus the
 * flat_fee of every tier reached. The first tier is always reached, so its flat_fee is charged
 * even at Q = 0. free_units come off Q first; the total is clamped to [minimum, maximum].
 */
import type { GraduatedCharge } from '../../catalog/types.js'
import { type Dec, ZERO, add, cmp, mul, parseDec, sub, toNano } from '../decimal.js'
import { type Clamp, type PriceLine, type PriceResult, applyClamp, billable, cached, decField, line, parseClamp, result, tierRange } from './common.js'

export interface ParsedTier {
  /** Inclusive upper bound; null = unbounded. */
  upTo: Dec | null
  price: Dec | null
  fee: Dec | null
}
interface Parsed {
  tiers: ParsedTier[]
  free: Dec | null
  clamp: Clamp
}

export function parseTiers(id: string, tiers: { up_to: string | null; unit_price?: string; flat_fee?: string }[]): ParsedTier[] {
  return tiers.map((t, k) => ({
    upTo: t.up_to === null ? null : decField(t.up_to, id, `tiers[${k}].up_to`),
    price: decField(t.unit_price, id, `tiers[${k}].unit_price`),
    fee: decField(t.flat_fee, id, `tiers[${k}].flat_fee`),
  }))
}

const cache = new WeakMap<GraduatedCharge, Parsed>()
const parse = (c: GraduatedCharge): Parsed => ({ tiers: parseTiers(c.id, c.tiers), free: decField(c.free_units, c.id, 'free_units'), clamp: parseClamp(c) })

/**
 * round9(Σ over reached tiers of share × unit_price + flat_fee), for billable quantity `qb` ≥ 0: the model's exact
 * total rounded once, so it is the same at 9 decimals whichever way the tiers cut Q (rounding each tier apart gave
 * up to half a unit of 1e-9 per tier, enough to move a half-cent on an invoice). Each line in `lines` shows its tier's
 * own amount rounded to 9 decimals, so the lines can differ from the total by that much.
 * Shared with graduated_percentage, whose tier prices are rate/100.
 */
export function graduatedSum(tiers: ParsedTier[], qb: Dec, lines: PriceLine[] | null, label = 'tier'): bigint {
  const full = lines === null ? fullTiers(tiers) : null
  if (full !== null) {
    // Rating re-prices the period total on every event; the tiers below Q always price the same, so their exact
    // amounts are summed once (full[k]) and only the tier holding Q is priced here. Same sum as the loop.
    let k = 0
    while (k < tiers.length - 1 && cmp(qb, tiers[k]!.upTo!) > 0) k++
    const t = tiers[k]!
    const from = k === 0 ? ZERO : tiers[k - 1]!.upTo!
    const top = t.upTo === null || cmp(qb, t.upTo) < 0 ? qb : t.upTo
    const share = cmp(top, from) > 0 ? sub(top, from) : ZERO
    return toNano(add(full[k]!, tierAmount(t, share)))
  }
  let sum: Dec = ZERO
  let prev: Dec | null = null
  for (let k = 0; k < tiers.length; k++) {
    const t = tiers[k]!
    // Tier k > 0 is reached when Q is above the previous tier's (inclusive) up_to.
    if (prev !== null && cmp(qb, prev) <= 0) break
    const top = t.upTo === null || cmp(qb, t.upTo) < 0 ? qb : t.upTo
    const from = prev ?? ZERO
    const share = cmp(top, from) > 0 ? sub(top, from) : ZERO
    const exact = tierAmount(t, share)
    sum = add(sum, exact)
    lines?.push(line(`${label} ${k + 1} ${tierRange(prev, t.upTo)}`, share, toNano(exact), t.price, t.fee))
    if (t.upTo === null) break
    prev = t.upTo
  }
  return toNano(sum)
}

/** A reached tier's exact amount: its `share` of Q × unit_price, plus its flat_fee. */
function tierAmount(t: ParsedTier, share: Dec): Dec {
  const priced = t.price === null ? ZERO : mul(share, t.price)
  return t.fee === null ? priced : add(priced, t.fee)
}

const fullSums = new WeakMap<ParsedTier[], Dec[] | null>()

/**
 * full[k] = Σ of the exact amounts of tiers 0 … k−1 when each is used up to its up_to; null unless the tiers
 * ascend strictly with only the last unbounded (what catalog validation enforces), which the shortcut needs.
 */
function fullTiers(tiers: ParsedTier[]): Dec[] | null {
  let full = fullSums.get(tiers)
  if (full === undefined) {
    full = [ZERO]
    let prev: Dec = ZERO
    for (let k = 0; k < tiers.length; k++) {
      const t = tiers[k]!
      const last = k === tiers.length - 1
      if ((t.upTo === null) !== last || (t.upTo !== null && (cmp(t.upTo, prev) <= 0 || t.upTo.i < 0n))) {
        full = null
        break
      }
      if (last) break
      full.push(add(full[k]!, tierAmount(t, sub(t.upTo!, prev))))
      prev = t.upTo!
    }
    fullSums.set(tiers, full)
  }
  return full
}

export function evaluateGraduated(charge: GraduatedCharge, q: Dec, lines: PriceLine[] | null): bigint {
  const p = cached(cache, charge, parse)
  return applyClamp(graduatedSum(p.tiers, billable(q, p.free, lines), lines), p.clamp, lines)
}

export function priceGraduated(charge: GraduatedCharge, Q: string): PriceResult {
  const lines: PriceLine[] = []
  return result(evaluateGraduated(charge, parseDec(Q, 'quantity'), lines), lines)
}
