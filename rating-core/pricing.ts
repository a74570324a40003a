/**
 * The engines behind `rateflow price` and `rateflow rate` (CONTRACT §1), and plan-level
 * figures billing needs. Pure: a catalog in, a price out.
 *
 * `price` quotes a usage charge for a period:
 * - `{ quantity }` is the period's aggregated meter value Q, in meter units (after scale);
 *   for `percentage` it is one event's value.
 * - `{ events }` are per-event values in meter units, in arrival order. `percentage` prices each
 *   one; the other models aggregate them with the meter's aggregation (sum, count, max, min,
 *   latest = the last given, unique_count = distinct values, which are the dimension's values as
 *   text; count and unique_count times the meter's scale) and price Q. time_weighted_avg
 *   needs event times, so it takes `--quantity` only.
 * `rate` prices one per-event usage: a `time_rated` session (quantity = seconds from `start`,
 * schedules in `timezone`), or one `percentage` event (start is not needed for its price).
 */
import type { Catalog, Charge, Plan, UsageCharge } from '../catalog/types.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { zoneOffsetMs } from '../common/time.js'
import { type Dec, ONE, ZERO, add, cmp, fmt, mul, parseDec } from './decimal.js'
import type { PriceResult } from './models/common.js'
import { priceGraduatedPercentage } from './models/graduated-percentage.js'
import { priceGraduated } from './models/graduated.js'
import { pricePackage } from './models/package.js'
import { pricePercentage } from './models/percentage.js'
import { pricePerUnit } from './models/per-unit.js'
import { priceVolume } from './models/volume.js'
import { rateTimedSession, startOfEvent } from './time-rated.js'

export type { PriceLine, PriceResult } from './models/common.js'

export type PriceInput = { quantity: string } | { events: string[] }

export type QuotedPrice = PriceResult & { currency: string }

/** The plan and charge named by the ids, or RateflowError(BAD_USAGE) naming what exists. */
export function findCharge(catalog: Catalog, planId: string, chargeId: string): { plan: Plan; charge: Charge } {
  const plan = catalog.plans.find((p) => p.id === planId)
  if (plan === undefined) {
    throw new RateflowError(
      ErrorCode.BadUsage,
      `no plan "${planId}" in catalog ${catalog.version} (plans: ${catalog.plans.map((p) => p.id).join(', ') || 'none'})`,
    )
  }
  const charge = plan.charges.find((c) => c.id === chargeId)
  if (charge === undefined) {
    throw new RateflowError(
      ErrorCode.BadUsage,
      `no charge "${chargeId}" in plan "${planId}" (charges: ${plan.charges.map((c) => c.id).join(', ') || 'none'})`,
    )
  }
  return { plan, charge }
}

function usageCharge(charge: Charge, planId: string, command: string): UsageCharge {
  if (charge.kind !== 'usage') {
    throw new RateflowError(ErrorCode.BadUsage, `charge "${charge.id}" of plan "${planId}" is a ${charge.kind} charge of ${charge.amount}; \`${command}\` prices usage charges`)
  }
  return charge
}

/**
 * Aggregates per-event values the way the charge's meter would: decimals in meter units, except for unique_count,
 * whose values are the counted dimension's values (any text, compared exactly). count and unique_count are
 * multiplied by the meter's scale, as the rater's fold does (meters.ts): each event, or each new value, adds the scale.
 */
function aggregateValues(catalog: Catalog, charge: UsageCharge, values: string[]): string {
  const meter = catalog.meters.find((m) => m.id === charge.meter)
  const aggregation = meter?.aggregation ?? 'sum'
  const scale = meter?.scale === undefined ? ONE : parseDec(meter.scale)
  // An event without the dimension ('') counts no value, as the rater's fold counts none for it.
  if (aggregation === 'unique_count') return fmt(mul({ i: BigInt(new Set(values.filter((v) => v !== '')).size), e: 0 }, scale))
  if (aggregation === 'count') return fmt(mul({ i: BigInt(values.length), e: 0 }, scale))
  const ds: Dec[] = values.map((v, k) => parseDec(v, `--events value ${k + 1}`))
  switch (aggregation) {
    case 'sum':
      return fmt(ds.reduce((s, d) => add(s, d), ZERO))
    case 'max':
      return ds.length === 0 ? '0' : fmt(ds.reduce((a, b) => (cmp(b, a) > 0 ? b : a)))
    case 'min':
      return ds.length === 0 ? '0' : fmt(ds.reduce((a, b) => (cmp(b, a) < 0 ? b : a)))
    case 'latest':
      return ds.length === 0 ? '0' : fmt(ds[ds.length - 1]!)
    case 'time_weighted_avg':
      throw new RateflowError(ErrorCode.BadUsage, `meter "${charge.meter}" is a time_weighted_avg: it needs event times; give the average with --quantity`)
  }
}

/** `rateflow price`: the price of one usage charge for a period's usage. */
export function priceCharge(catalog: Catalog, planId: string, chargeId: string, input: PriceInput): QuotedPrice {
  const { charge: c } = findCharge(catalog, planId, chargeId)
  const charge = usageCharge(c, planId, 'price')
  const currency = catalog.currency
  if (charge.model === 'time_rated') {
    throw new RateflowError(
      ErrorCode.BadUsage,
      `charge "${chargeId}" is time_rated: sessions are priced one at a time with \`rateflow rate --start TIME --quantity SECONDS\``,
    )
  }
  if (charge.model === 'percentage') {
    const values = 'events' in input ? input.events : [input.quantity]
    return { ...pricePercentage(charge, values), currency }
  }
  const q = 'events' in input ? aggregateValues(catalog, charge, input.events) : input.quantity
  switch (charge.model) {
    case 'per_unit':
      return { ...pricePerUnit(charge, q), currency }
    case 'graduated':
      return { ...priceGraduated(charge, q), currency }
    case 'volume':
      return { ...priceVolume(charge, q), currency }
    case 'package':
      return { ...pricePackage(charge, q), currency }
    case 'graduated_percentage':
      return { ...priceGraduatedPercentage(charge, q), currency }
  }
}

/** `rateflow rate`: the price of one per-event usage (a time_rated session or a percentage event). */
export function rateEvent(catalog: Catalog, planId: string, chargeId: string, start: string, quantity: string, timezone = 'UTC'): QuotedPrice {
  const { charge: c } = findCharge(catalog, planId, chargeId)
  const charge = usageCharge(c, planId, 'rate')
  const currency = catalog.currency
  if (charge.model === 'time_rated') {
    return { ...rateTimedSession(charge, catalog.schedules ?? [], start, quantity, timezone), currency }
  }
  if (charge.model === 'percentage') {
    // Its price needs neither, but a quote for a time that does not exist, or in a zone that does not, is no quote
    // (they were taken as given, and `--start yesterday` priced).
    zoneOffsetMs(startOfEvent(start), timezone)
    return { ...pricePercentage(charge, [quantity]), currency }
  }
  throw new RateflowError(
    ErrorCode.BadUsage,
    `charge "${chargeId}" uses the ${charge.model} model, which prices a period's total, not one event: use \`rateflow price --quantity Q\``,
  )
}

/** The plan's minimum commitment for a billing period, canonical decimal ("0" when none). */
export function minimumCommitment(plan: Plan): string {
  return plan.minimum_commitment === undefined ? '0' : fmt(parseDec(plan.minimum_commitment, `plan ${plan.id}: minimum_commitment`))
}
