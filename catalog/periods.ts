import { zonedParts, zonedToUtc } from '../common/time.js'
import type { Account, Plan } from './types.js'

/** A billing period: [start, end) in epoch ms. */
export interface Period {
  readonly start: number
  readonly end: number
  /** start and end as normalised UTC ISO strings. */
  readonly startIso: string
  readonly endIso: string
}

const MONTHS: Record<Plan['billing_period'], number> = { month: 1, quarter: 3, year: 12 }

/**
 * The billing period that contains `ms` for an account on a plan. Periods start at local midnight of the
 * account's `bill_cycle_day` in its time zone (so a Berlin account's October starts at
 * 2026-09-30T22:00:00Z); quarters start in January, April, July and October, years in January.
 * Start inclusive, end exclusive.
 */
export function billingPeriod(ms: number, account: Pick<Account, 'timezone' | 'bill_cycle_day'>, period: Plan['billing_period']): Period {
  // Zone arithmetic goes through Intl and costs microseconds; events of one account cluster in a few
  // periods, so the periods already computed per (zone, cycle day, length) answer almost every call.
  const key = `${account.timezone}\u0000${account.bill_cycle_day}\u0000${period}`
  let known = cache.get(key)
  if (known) {
    for (const p of known) if (p.start <= ms && ms < p.end) return p
  } else {
    known = []
    cache.set(key, known)
  }
  const p = computePeriod(ms, account, period)
  known.push(p)
  if (known.length > 64) known.shift()
  return p
}

const cache = new Map<string, Period[]>()

function computePeriod(ms: number, account: Pick<Account, 'timezone' | 'bill_cycle_day'>, period: Plan['billing_period']): Period {
  const tz = account.timezone
  const day = account.bill_cycle_day
  const len = MONTHS[period]
  const local = zonedParts(ms, tz)
  // Month index (0-based, absolute) of the candidate period start: the latest period month <= local month.
  let m = local.year * 12 + (local.month - 1)
  m -= m % len
  let start = startOf(m, day, tz)
  if (start > ms) {
    m -= len
    start = startOf(m, day, tz)
  } else {
    const next = startOf(m + len, day, tz)
    if (next <= ms) {
      m += len
      start = next
    }
  }
  const end = startOf(m + len, day, tz)
  return { start, end, startIso: new Date(start).toISOString(), endIso: new Date(end).toISOString() }
}

function startOf(absMonth: number, day: number, tz: string): number {
  return zonedToUtc(Math.floor(absMonth / 12), (absMonth % 12) + 1, day, 0, 0, tz)
}
