/**
 * What every pricing model shares: the result shape, the free-units rule and the period clamp.
 *
 * Amounts are summed as 9-decimal nano-units (rated events keep 9 decimal places). Each line is
 * rounded half-even to 9 decimals on its own and the charge total is the sum of its lines, so an
 * invoice's lines always add up to its total; the clamp adds its own adjustment line.
 */
import { ErrorCode, RateflowError } from '../../common/errors.js'
import { type Dec, ZERO, cmp, fmt, fmtNano, max, parseDec, round, sub, toNano } from '../decimal.js'

export interface PriceLine {
  description: string
  /** The quantity this line prices (a tier's share of Q, a package count, an event's value). */
  quantity: string
  unit_price?: string
  flat_fee?: string
  /** Rounded half-even to 9 decimals. */
  amount: string
}

export interface PriceResult {
  /** Σ lines' amounts, 9 decimals at most, canonical form ("54.5"). */
  amount: string
  lines: PriceLine[]
}

/**
 * Parsed decimals of a catalog charge, cached per charge object: the catalog is immutable once
 * validated, and re-parsing tier strings on every event would cost more than the pricing itself.
 */
export function cached<C extends object, P>(cache: WeakMap<C, P>, charge: C, parse: (c: C) => P): P {
  let p = cache.get(charge)
  if (p === undefined) {
    p = parse(charge)
    cache.set(charge, p)
  }
  return p
}

export function decField(v: string | undefined, chargeId: string, field: string): Dec | null {
  return v === undefined ? null : parseDec(v, `charge ${chargeId}: ${field}`)
}

export function requiredDec(v: string | undefined, chargeId: string, field: string): Dec {
  if (v === undefined) throw new RateflowError(ErrorCode.BadInput, `charge ${chargeId}: ${field} is required`)
  return parseDec(v, `charge ${chargeId}: ${field}`)
}

/** The charge-level clamp (CONTRACT §3.2 minimum / maximum), inclusive, in nano-units. */
export interface Clamp {
  min: bigint | null
  max: bigint | null
}

export function parseClamp(c: { id: string; minimum?: string; maximum?: string }): Clamp {
  const lo = decField(c.minimum, c.id, 'minimum')
  const hi = decField(c.maximum, c.id, 'maximum')
  return { min: lo === null ? null : toNano(lo), max: hi === null ? null : toNano(hi) }
}

/** Clamps the sum of the lines to [minimum, maximum] and records the adjustment as a line. */
export function applyClamp(sum: bigint, clamp: Clamp, lines: PriceLine[] | null): bigint {
  let total = sum
  if (clamp.min !== null && total < clamp.min) total = clamp.min
  if (clamp.max !== null && total > clamp.max) total = clamp.max
  if (lines !== null && total !== sum) {
    lines.push({
      description: total > sum ? 'minimum charge adjustment' : 'maximum charge cap',
      quantity: '1',
      amount: fmtNano(total - sum),
    })
  }
  return total
}

/**
 * Q minus free_units, never below zero (CONTRACT §3.2: free units are subtracted from Q first).
 * A negative Q (net corrections) bills nothing rather than paying the customer: tiers start at 0.
 */
export function billable(q: Dec, free: Dec | null, lines: PriceLine[] | null): Dec {
  const pos = q.i > 0n ? q : ZERO
  if (free === null || free.i === 0n) return pos
  if (lines !== null && pos.i > 0n) {
    lines.push({ description: 'free units', quantity: fmt(cmp(pos, free) < 0 ? pos : free), amount: '0' })
  }
  return max(ZERO, sub(pos, free))
}

export function line(description: string, quantity: Dec, amount: bigint, unitPrice?: Dec | null, flatFee?: Dec | null): PriceLine {
  const l: PriceLine = { description, quantity: fmt(quantity), amount: fmtNano(amount) }
  if (unitPrice) l.unit_price = fmt(unitPrice)
  if (flatFee) l.flat_fee = fmt(flatFee)
  return l
}

export function result(total: bigint, lines: PriceLine[]): PriceResult {
  return { amount: fmtNano(total), lines }
}

/** Rate in percent → fraction, exactly: "2.5" → 0.025. */
export function percentToFraction(rate: Dec): Dec {
  return { i: rate.i, e: rate.e + 2 }
}

/** Describes a tier's range, e.g. "(5, 10]" — lower bound exclusive, upper inclusive. */
export function tierRange(prev: Dec | null, upTo: Dec | null): string {
  return `(${prev === null ? '0' : fmt(prev)}, ${upTo === null ? '∞' : fmt(upTo)}]`
}

export { round }
