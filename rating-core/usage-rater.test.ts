import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Meter, UsageCharge } from '../catalog/types.js'
import { fmtNano } from './decimal.js'
import {
  type MeterState,
  type RatingContext,
  type RunningTotal,
  type UsageEventInput,
  foldUsageEvent,
  groupKey,
  meterAccepts,
  meterStateOf,
  periodTotal,
  rateUsageEvent,
  runningTotalOf,
} from './usage-rater.js'

const ctx: RatingContext = {
  schedules: [
    { id: 'day', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '18:00' },
    { id: 'evening', weekdays: [1, 2, 3, 4, 5], from: '18:00', to: '24:00' },
    { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
  ],
  timezone: 'Europe/Berlin',
  periodStart: '2026-10-01T00:00:00Z',
  periodEnd: '2026-11-01T00:00:00Z',
}

const sumMeter: Meter = { id: 'm', metric: 'bytes_out', aggregation: 'sum' }
const perUnit: UsageCharge = { id: 'c', kind: 'usage', meter: 'm', model: 'per_unit', unit_price: '0.05' }

function ev(n: number, quantity: string, extra: Partial<UsageEventInput> = {}): UsageEventInput {
  const t = new Date(Date.parse(ctx.periodStart) + n * 60_000).toISOString()
  return { event_id: `e${String(n).padStart(6, '0')}`, event_time: t, quantity, dimensions: {}, ...extra }
}

/** Rates events in order; returns the amounts and the final state. */
function rateAll(charge: UsageCharge, meter: Meter, events: UsageEventInput[]): { amounts: string[]; state: MeterState | undefined } {
  let state: MeterState | undefined
  const amounts: string[] = []
  for (const e of events) {
    const r = rateUsageEvent(charge, meter, state, e, ctx)
    amounts.push(r.amount)
    state = r.state
  }
  return { amounts, state }
}

/** Exact sum of decimal strings via scaled BigInt at 9 decimals (amounts never have more). */
function sumNano(xs: string[]): bigint {
  let s = 0n
  for (const x of xs) {
    const neg = x.startsWith('-')
    const [i, f = ''] = (neg ? x.slice(1) : x).split('.')
    const v = BigInt(i! + f.padEnd(9, '0'))
    s += neg ? -v : v
  }
  return s
}

describe('meterAccepts / groupKey', () => {
  const m: Meter = { id: 'g', metric: 'bytes_out', aggregation: 'sum', filter: { direction: 'out' }, group_by: ['region', 'pop'] }
  it('matches metric and every filter entry', () => {
    expect(meterAccepts(m, 'bytes_out', { direction: 'out', region: 'eu' })).toBe(true)
    expect(meterAccepts(m, 'bytes_out', { direction: 'in' })).toBe(false)
    expect(meterAccepts(m, 'bytes_out', {})).toBe(false)
    expect(meterAccepts(m, 'bytes_in', { direction: 'out' })).toBe(false)
  })
  it('group key is "" without group_by and a JSON array in group_by order otherwise', () => {
    expect(groupKey(sumMeter, { region: 'eu' })).toBe('')
    expect(groupKey(m, { pop: 'fra', region: 'eu' })).toBe('["eu","fra"]')
    expect(groupKey(m, { region: 'eu' })).toBe('["eu",null]')
    expect(groupKey(m, { region: 'a","b' })).not.toBe(groupKey(m, { region: 'a', pop: 'b' }))
  })
})

describe('rateUsageEvent: per_unit', () => {
  it('each event pays its increment; the sum equals the period total', () => {
    const { amounts, state } = rateAll(perUnit, sumMeter, [ev(1, '10'), ev(2, '0.5'), ev(3, '7')])
    expect(amounts).toEqual(['0.5', '0.025', '0.35'])
    expect(periodTotal(perUnit, state, ctx)).toMatchObject({ quantity: '17.5', amount: '0.875' })
  })

  it('applies the meter scale (bytes → GB) and reports the scaled quantity', () => {
    const gb: Meter = { ...sumMeter, scale: '0.000000001' }
    const r = rateUsageEvent(perUnit, gb, undefined, ev(1, '2500000000'), ctx)
    expect(r).toMatchObject({ amount: '0.125', metered: '2.5' })
  })

  it('reports a scaled quantity of more than 9 decimals rounded half-even to 9, as amounts are (the store keeps 9)', () => {
    const gb: Meter = { ...sumMeter, scale: '0.000000001' }
    expect(rateUsageEvent(perUnit, gb, undefined, ev(1, '999999999.9'), ctx).metered).toBe('1')
    expect(rateUsageEvent(perUnit, gb, undefined, ev(1, '2.5'), ctx).metered).toBe('0.000000002')
    expect(rateUsageEvent(perUnit, gb, undefined, ev(1, '3.5'), ctx).metered).toBe('0.000000004')
    expect(rateUsageEvent(perUnit, gb, undefined, ev(1, '0.4'), ctx).metered).toBe('0')
  })

  it('keeps 9 decimals and never loses a nano-unit across events (round half-even of the running total)', () => {
    const c: UsageCharge = { ...perUnit, unit_price: '0.0000000001' } // 1e-10 per unit
    const events = Array.from({ length: 25 }, (_, k) => ev(k, '3'))
    const { amounts, state } = rateAll(c, sumMeter, events)
    // Q = 75 → 7.5e-9 → half-even to 9 dp = 0.000000008
    expect(periodTotal(c, state).amount).toBe('0.000000008')
    expect(sumNano(amounts)).toBe(8n)
  })

  it('free_units come off first; min and max clamp the running total', () => {
    const c: UsageCharge = { ...perUnit, unit_price: '1', free_units: '5', minimum: '2', maximum: '10' }
    const { amounts, state } = rateAll(c, sumMeter, [ev(1, '3'), ev(2, '3'), ev(3, '4'), ev(4, '100')])
    // Q: 3 → 0 billable → min 2; 6 → 1 → 2; 10 → 5; 110 → 105 → max 10
    expect(amounts).toEqual(['2', '0', '3', '5'])
    expect(periodTotal(c, state).amount).toBe('10')
  })

  it('a negative correction yields a negative amount', () => {
    const { amounts } = rateAll(perUnit, sumMeter, [ev(1, '10'), ev(2, '-4')])
    expect(amounts).toEqual(['0.5', '-0.2'])
  })

  it('a state that went through JSON rates the next event identically', () => {
    const a = rateUsageEvent(perUnit, sumMeter, undefined, ev(1, '10'), ctx)
    const revived = JSON.parse(JSON.stringify(a.state)) as MeterState
    expect(Object.getOwnPropertySymbols(revived)).toEqual([])
    const b1 = rateUsageEvent(perUnit, sumMeter, a.state, ev(2, '1.1'), ctx)
    const b2 = rateUsageEvent(perUnit, sumMeter, revived, ev(2, '1.1'), ctx)
    expect(b2).toEqual(b1)
    expect(JSON.stringify(b2.state)).toBe(JSON.stringify(b1.state))
  })

  it('does not mutate the prior state', () => {
    const a = rateUsageEvent(perUnit, sumMeter, undefined, ev(1, '10'), ctx)
    const before = JSON.stringify(a.state)
    rateUsageEvent(perUnit, sumMeter, a.state, ev(2, '5'), ctx)
    expect(JSON.stringify(a.state)).toBe(before)
  })

  it('accepts a frozen prior state (read, never annotated)', () => {
    const a = rateUsageEvent(perUnit, sumMeter, undefined, ev(1, '10'), ctx)
    const frozen = Object.freeze(JSON.parse(JSON.stringify(a.state))) as MeterState
    expect(rateUsageEvent(perUnit, sumMeter, frozen, ev(2, '2'), ctx).amount).toBe('0.1')
  })

  it('refuses a state built for another model', () => {
    const a = rateUsageEvent(perUnit, sumMeter, undefined, ev(1, '10'), ctx)
    const grad: UsageCharge = { id: 'g', kind: 'usage', meter: 'm', model: 'graduated', tiers: [{ up_to: null, unit_price: '1' }] }
    expect(() => rateUsageEvent(grad, sumMeter, a.state, ev(2, '1'), ctx)).toThrow(/built for model per_unit/)
  })

  it('rejects a non-decimal quantity with BAD_INPUT', () => {
    expect(() => rateUsageEvent(perUnit, sumMeter, undefined, ev(1, '1e3'), ctx)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }))
  })

  it('periodTotal without events is the model at Q = 0 (first tier flat fee, minimum)', () => {
    const c: UsageCharge = { ...perUnit, minimum: '3' }
    expect(periodTotal(c, undefined)).toMatchObject({ quantity: '0', amount: '3' })
  })
})

describe('rateUsageEvent: aggregations', () => {
  const grad: UsageCharge = {
    id: 'g',
    kind: 'usage',
    meter: 'm',
    model: 'graduated',
    tiers: [
      { up_to: '5', unit_price: '7' },
      { up_to: '10', unit_price: '6.5' },
      { up_to: null, unit_price: '6' },
    ],
  }
  const meter = (aggregation: Meter['aggregation'], extra: Partial<Meter> = {}): Meter => ({ id: 'm', metric: 'x', aggregation, ...extra })

  it('count counts events (times scale)', () => {
    const { state } = rateAll(perUnit, meter('count'), [ev(1, '99'), ev(2, '1'), ev(3, '5')])
    expect(state?.q).toBe('3')
    const { state: s2 } = rateAll(perUnit, meter('count', { scale: '0.001' }), [ev(1, '99'), ev(2, '1')])
    expect(s2?.q).toBe('0.002')
  })

  it('max: amounts only go up', () => {
    const { amounts, state } = rateAll(grad, meter('max'), [ev(1, '3'), ev(2, '8'), ev(3, '2')])
    expect(amounts).toEqual(['21', '33.5', '0'])
    expect(state?.q).toBe('8')
  })

  it('min: a lower reading gives a negative amount', () => {
    const { amounts } = rateAll(grad, meter('min'), [ev(1, '8'), ev(2, '3')])
    expect(amounts).toEqual(['54.5', '-33.5'])
  })

  it('latest: greatest event_time wins, ties broken by event_id, whatever the order', () => {
    const events = [
      ev(5, '4', { event_id: 'b' }),
      ev(5, '6', { event_id: 'a' }),
      ev(1, '9', { event_id: 'z' }),
    ]
    const { amounts, state } = rateAll(grad, meter('latest'), events)
    expect(state?.q).toBe('4')
    expect(sumNano(amounts)).toBe(28_000_000_000n)
    const rev = rateAll(grad, meter('latest'), [...events].reverse())
    expect(JSON.stringify(rev.state)).toBe(JSON.stringify(state))
  })

  it('unique_count counts distinct dimension values; events without it count nothing', () => {
    const m = meter('unique_count', { dimension: 'user' })
    const events = ['u1', 'u2', 'u1', undefined, 'u3'].map((u, k) => ev(k, '1', { dimensions: u === undefined ? {} : { user: u } }))
    const { amounts, state } = rateAll(perUnit, m, events)
    expect(state?.q).toBe('3')
    expect(amounts).toEqual(['0.05', '0.05', '0', '0', '0.05'])
  })

  it('time_weighted_avg: each reading holds until the next one, 0 before the first (seats over a 30-day period)', () => {
    const c: RatingContext = { ...ctx, periodStart: '2026-11-01T00:00:00Z', periodEnd: '2026-12-01T00:00:00Z' }
    const m = meter('time_weighted_avg')
    const seats = { ...perUnit, unit_price: '30' }
    let s: MeterState | undefined
    // 10 seats from day 0, 20 seats from day 15: average 15
    const r1 = rateUsageEvent(seats, m, s, { event_id: 'a', event_time: '2026-11-01T00:00:00Z', quantity: '10', dimensions: {} }, c)
    s = r1.state
    const r2 = rateUsageEvent(seats, m, s, { event_id: 'b', event_time: '2026-11-16T00:00:00Z', quantity: '20', dimensions: {} }, c)
    expect(r2.state.q).toBe('15')
    expect(r1.amount).toBe('300')
    expect(r2.amount).toBe('150')
    expect(periodTotal(seats, r2.state, c).amount).toBe('450')
    // out of order: a late reading at day 10 of 40 seats replaces 10 seats for days 10..15
    const r3 = rateUsageEvent(seats, m, r2.state, { event_id: 'c', event_time: '2026-11-11T00:00:00Z', quantity: '40', dimensions: {} }, c)
    // avg = (10×10 + 40×5 + 20×15)/30 = 20
    expect(r3.state.q).toBe('20')
    expect(r3.amount).toBe('150')
  })

  it('time_weighted_avg refuses an event outside the period', () => {
    const m = meter('time_weighted_avg')
    expect(() => rateUsageEvent(perUnit, m, undefined, { event_id: 'a', event_time: '2026-09-30T23:59:59Z', quantity: '1', dimensions: {} }, ctx)).toThrow(/outside the period/)
  })
})

describe('rateUsageEvent: per-event models', () => {
  const txn: Meter = { id: 'm', metric: 'txn_amount', aggregation: 'sum' }
  it('percentage: free allowance consumed in arrival order; sum of amounts = period total', () => {
    const c: UsageCharge = { id: 'p', kind: 'usage', meter: 'm', model: 'percentage', rate: '2', fixed_fee_per_event: '0.1', free_units: '150' }
    const { amounts, state } = rateAll(c, txn, [ev(1, '100'), ev(2, '100'), ev(3, '100')])
    // 100 free; 50 free + 50 × 2% + 0.1 = 1.1; 100 × 2% + 0.1 = 2.1
    expect(amounts).toEqual(['0', '1.1', '2.1'])
    expect(periodTotal(c, state)).toMatchObject({ quantity: '300', amount: '3.2' })
  })

  // Day: connect 1, a first 60 s block, then per second at 1; evening: 0.5 per minute in minutes; weekend free.
  const calls: UsageCharge = {
    id: 't',
    kind: 'usage',
    meter: 'm',
    model: 'time_rated',
    rates: [
      { schedule: 'day', connect_fee: '1', steps: [{ from: '0', unit_price: '1', per: '1', increment: '60' }, { from: '60', unit_price: '1', per: '1', increment: '1' }] },
      { schedule: 'evening', steps: [{ from: '0', unit_price: '0.5', per: '60', increment: '60' }] },
      { schedule: 'weekend', steps: [{ from: '0', unit_price: '0', per: '1', increment: '1' }] },
    ],
  }

  it('time_rated: each session priced on its own; the state sums them', () => {
    const c = calls
    const secs: Meter = { id: 'm', metric: 'session_seconds', aggregation: 'sum' }
    // Thursday 2026-10-01 10:00 Berlin (08:00Z): 61 s → 1 + 60 + 1 = 62
    const r1 = rateUsageEvent(c, secs, undefined, { event_id: 'a', event_time: '2026-10-01T08:00:00Z', quantity: '61', dimensions: {} }, ctx)
    expect(r1.amount).toBe('62')
    // Thursday 20:00 Berlin: 90 s → 2 increments of 60 s × 0.5/60 = 1
    const r2 = rateUsageEvent(c, secs, r1.state, { event_id: 'b', event_time: '2026-10-01T18:00:00Z', quantity: '90', dimensions: {} }, ctx)
    expect(r2.amount).toBe('1')
    expect(periodTotal(c, r2.state)).toMatchObject({ quantity: '151', amount: '63' })
  })

  it('time_rated with free_units, minimum and maximum (CONTRACT §3.1): free seconds taken in rating order, the clamp on Σ prices', () => {
    const c: UsageCharge = { ...calls, free_units: '90', minimum: '5', maximum: '90' } as UsageCharge
    const secs: Meter = { id: 'm', metric: 'session_seconds', aggregation: 'sum' }
    const call = (id: string, at: string, quantity: string) => ({ event_id: id, event_time: at, quantity, dimensions: {} })
    // Thursday 10:00 Berlin, 60 s: inside the free 90 s, no connect fee; the period total rises to the minimum, 5.
    const r1 = rateUsageEvent(c, secs, undefined, call('a', '2026-10-01T08:00:00Z', '60'), ctx)
    // 61 s with the last 30 free seconds: its 60 s block has 30 free (30) + 1 s + connect 1 = 32; total 32.
    const r2 = rateUsageEvent(c, secs, r1.state, call('b', '2026-10-01T09:00:00Z', '61'), ctx)
    // 61 s with no allowance left: 62; Σ 94 is capped at 90.
    const r3 = rateUsageEvent(c, secs, r2.state, call('c', '2026-10-01T10:00:00Z', '61'), ctx)
    // Thursday 20:00 Berlin, 90 s: 1 more, above the cap.
    const r4 = rateUsageEvent(c, secs, JSON.parse(JSON.stringify(r3.state)) as MeterState, call('d', '2026-10-01T18:00:00Z', '90'), ctx)
    expect([r1.amount, r2.amount, r3.amount, r4.amount]).toEqual(['5', '27', '58', '0'])
    expect(r2.state).toMatchObject({ free_used: '90', fees: '32', total: '32' })
    expect(r4.state).toMatchObject({ free_used: '90', fees: '95', total: '90' })
    expect(periodTotal(c, r4.state)).toMatchObject({ quantity: '272', amount: '90' })
    // No session: the minimum.
    expect(periodTotal(c, undefined)).toMatchObject({ amount: '5' })
  })
})

// ---- property tests ----------------------------------------------------------------------

import Big from 'big.js'
import { priceGraduated } from './models/graduated.js'
import { priceGraduatedPercentage } from './models/graduated-percentage.js'
import { pricePackage } from './models/package.js'
import { pricePerUnit } from './models/per-unit.js'
import { priceVolume } from './models/volume.js'

const decArb = (maxInt: number, dp: number) =>
  fc.tuple(fc.integer({ min: 0, max: maxInt }), fc.integer({ min: 0, max: 10 ** dp - 1 })).map(([i, f]) => (dp === 0 ? String(i) : `${i}.${String(f).padStart(dp, '0')}`))

const tiersArb = (priceField: 'unit_price' | 'rate') =>
  fc
    .tuple(
      fc.uniqueArray(fc.integer({ min: 1, max: 500 }), { maxLength: 4 }),
      fc.array(fc.tuple(decArb(20, 4), fc.option(decArb(50, 2), { nil: undefined })), { minLength: 5, maxLength: 5 }),
    )
    .map(([ups, prices]) => {
      const bounds: (string | null)[] = [...ups.sort((a, b) => a - b).map(String), null]
      return bounds.map((up_to, k) => {
        const [p, fee] = prices[k]!
        const t: Record<string, string | null> = { up_to, [priceField]: p }
        if (fee !== undefined) t.flat_fee = fee
        return t
      })
    })

const clampArb = fc.option(fc.tuple(decArb(50, 2), decArb(500, 2)), { nil: undefined }).map((c) =>
  c === undefined ? {} : { minimum: Big(c[0]).lte(c[1]) ? c[0] : c[1], maximum: Big(c[0]).lte(c[1]) ? c[1] : c[0] },
)
const freeArb = fc.option(decArb(100, 3), { nil: undefined }).map((f) => (f === undefined ? {} : { free_units: f }))

const chargeArb: fc.Arbitrary<UsageCharge> = fc.oneof(
  fc.tuple(decArb(10, 6), freeArb, clampArb).map(([p, f, c]) => ({ id: 'c', kind: 'usage', meter: 'm', model: 'per_unit', unit_price: p, ...f, ...c }) as UsageCharge),
  fc.tuple(tiersArb('unit_price'), freeArb, clampArb).map(([t, f, c]) => ({ id: 'c', kind: 'usage', meter: 'm', model: 'graduated', tiers: t, ...f, ...c }) as UsageCharge),
  fc.tuple(tiersArb('unit_price'), freeArb, clampArb).map(([t, f, c]) => ({ id: 'c', kind: 'usage', meter: 'm', model: 'volume', tiers: t, ...f, ...c }) as UsageCharge),
  fc.tuple(decArb(50, 2), decArb(20, 2), freeArb, clampArb).map(
    ([size, price, f, c]) => ({ id: 'c', kind: 'usage', meter: 'm', model: 'package', package_size: Big(size).eq(0) ? '1' : size, package_price: price, ...f, ...c }) as UsageCharge,
  ),
  fc.tuple(tiersArb('rate'), freeArb, clampArb).map(([t, f, c]) => ({ id: 'c', kind: 'usage', meter: 'm', model: 'graduated_percentage', tiers: t, ...f, ...c }) as UsageCharge),
  fc
    .tuple(decArb(10, 3), fc.option(decArb(1, 2), { nil: undefined }), freeArb, clampArb)
    .map(([rate, fixed, f, c]) => ({ id: 'c', kind: 'usage', meter: 'm', model: 'percentage', rate, ...(fixed ? { fixed_fee_per_event: fixed } : {}), ...f, ...c }) as UsageCharge),
)

const aggArb = fc.constantFrom<Meter['aggregation']>('sum', 'count', 'max', 'min', 'unique_count', 'latest', 'time_weighted_avg')
const eventsArb = fc.array(
  fc.record({
    minute: fc.integer({ min: 0, max: 31 * 24 * 60 - 1 }),
    quantity: fc.oneof(decArb(1000, 3), decArb(5, 0).map((s) => '-' + s)),
    user: fc.constantFrom('u1', 'u2', 'u3', 'u4'),
  }),
  { minLength: 1, maxLength: 40 },
)

function toEvents(raw: { minute: number; quantity: string; user: string }[]): UsageEventInput[] {
  return raw.map((r, k) => ev(r.minute, r.quantity, { event_id: `e${k}`, dimensions: { user: r.user } }))
}

function priceAt(charge: UsageCharge, q: string): string {
  switch (charge.model) {
    case 'per_unit':
      return pricePerUnit(charge, q).amount
    case 'graduated':
      return priceGraduated(charge, q).amount
    case 'volume':
      return priceVolume(charge, q).amount
    case 'package':
      return pricePackage(charge, q).amount
    case 'graduated_percentage':
      return priceGraduatedPercentage(charge, q).amount
    default:
      throw new Error('per-event model')
  }
}

describe('properties', () => {
  it('Σ per-event amounts == periodTotal == the model applied to the period Q, for every model and aggregation', () => {
    fc.assert(
      fc.property(chargeArb, aggArb, eventsArb, (charge, aggregation, raw) => {
        const perEvent = charge.model === 'percentage'
        const meter: Meter = { id: 'm', metric: 'x', aggregation: perEvent ? 'sum' : aggregation, ...(aggregation === 'unique_count' && !perEvent ? { dimension: 'user' } : {}) }
        const { amounts, state } = rateAll(charge, meter, toEvents(raw))
        const total = periodTotal(charge, state, ctx)
        expect(sumNano(amounts)).toBe(sumNano([total.amount]))
        expect(total.amount).toBe(state!.total)
        expect(sumNano(total.lines.map((l) => l.amount))).toBe(sumNano([total.amount]))
        if (!perEvent) expect(total.amount).toBe(priceAt(charge, state!.q))
      }),
      { numRuns: 400 },
    )
  })

  it('percentage sums its fees exact and rounds the total once: as a one-tier graduated_percentage at the same rate', () => {
    // Three fees of 5e-10 each, rounded one by one, made 0 where the period's model gives 1.5e-9, rounded to 2e-9.
    const pct: UsageCharge = { id: 'p', kind: 'usage', meter: 'm', model: 'percentage', rate: '0.005' }
    const sum: Meter = { id: 'm', metric: 'x', aggregation: 'sum' }
    const three = rateAll(pct, sum, [ev(0, '0.00001'), ev(1, '0.00001'), ev(2, '0.00001')])
    expect(three.amounts).toEqual(['0', '0.000000001', '0.000000001'])
    expect(periodTotal(pct, three.state, ctx).amount).toBe('0.000000002')
    // Rates and values with more decimals than amounts keep, any number of events, a state through JSON midway.
    fc.assert(
      fc.property(decArb(99, 6), fc.array(decArb(999, 7), { minLength: 1, maxLength: 25 }), fc.nat(), (rate, values, cut) => {
        const p: UsageCharge = { id: 'p', kind: 'usage', meter: 'm', model: 'percentage', rate }
        const g: UsageCharge = { id: 'g', kind: 'usage', meter: 'm', model: 'graduated_percentage', tiers: [{ up_to: null, rate }] }
        let running: RunningTotal | undefined
        const amounts: string[] = []
        values.forEach((v, k) => {
          if (k === cut % values.length && running !== undefined) running = runningTotalOf(JSON.parse(JSON.stringify(meterStateOf(running))) as MeterState)
          const r = foldUsageEvent(p, sum, running, ev(k, v), ctx)
          amounts.push(r.amount)
          running = r.next
        })
        const q = values.reduce((a, v) => a.plus(v), new Big(0)).toFixed()
        expect(fmtNano(sumNano(amounts))).toBe(priceAt(g, q))
        expect(periodTotal(p, meterStateOf(running!), ctx).amount).toBe(priceAt(g, q))
      }),
      { numRuns: 300 },
    )
  })

  it('foldUsageEvent on a running total rates as rateUsageEvent on its state, through a JSON round trip of the state midway', () => {
    fc.assert(
      fc.property(chargeArb, aggArb, eventsArb, fc.nat(), (charge, aggregation, raw, cut) => {
        const perEvent = charge.model === 'percentage'
        const meter: Meter = { id: 'm', metric: 'x', aggregation: perEvent ? 'sum' : aggregation, ...(aggregation === 'unique_count' && !perEvent ? { dimension: 'user' } : {}) }
        const events = toEvents(raw)
        let state: MeterState | undefined
        let running: RunningTotal | undefined
        events.forEach((e, k) => {
          // Midway, the running total restarts from a state that went through JSON (as after a restart).
          if (k === cut % events.length && running !== undefined) running = runningTotalOf(JSON.parse(JSON.stringify(meterStateOf(running))) as MeterState)
          const a = rateUsageEvent(charge, meter, state, e, ctx)
          const b = foldUsageEvent(charge, meter, running, e, ctx)
          expect([b.amount, b.metered]).toEqual([a.amount, a.metered])
          expect(JSON.stringify(meterStateOf(b.next))).toBe(JSON.stringify(a.state))
          state = a.state
          running = b.next
        })
      }),
      { numRuns: 300 },
    )
  })

  it('time_rated with free_units, minimum and maximum: Σ amounts = periodTotal, and a JSON round trip of the state midway changes nothing', () => {
    const rates = [
      { schedule: 'day', connect_fee: '1', steps: [{ from: '0', unit_price: '1', per: '1', increment: '60' }, { from: '60', unit_price: '0.5', per: '1', increment: '1' }] },
      { schedule: 'evening', steps: [{ from: '0', unit_price: '0.5', per: '60', increment: '60' }] },
      { schedule: 'weekend', steps: [{ from: '0', unit_price: '0.01', per: '1', increment: '0.5' }] },
    ]
    const secs: Meter = { id: 'm', metric: 'session_seconds', aggregation: 'sum' }
    fc.assert(
      fc.property(
        fc.option(decArb(300, 1), { nil: undefined }),
        clampArb,
        fc.array(fc.record({ minute: fc.integer({ min: 0, max: 31 * 24 * 60 - 1 }), seconds: decArb(400, 3) }), { minLength: 1, maxLength: 30 }),
        fc.nat(),
        (free, clamp, raw, cut) => {
          const charge = { id: 't', kind: 'usage', meter: 'm', model: 'time_rated', rates, ...(free ? { free_units: free } : {}), ...clamp } as UsageCharge
          const events = raw.map((r, k) => ev(r.minute, r.seconds, { event_id: `s${k}` }))
          let state: MeterState | undefined
          let running: RunningTotal | undefined
          const amounts: string[] = []
          events.forEach((e, k) => {
            if (k === cut % events.length && running !== undefined) running = runningTotalOf(JSON.parse(JSON.stringify(meterStateOf(running))) as MeterState)
            const a = rateUsageEvent(charge, secs, state, e, ctx)
            const b = foldUsageEvent(charge, secs, running, e, ctx)
            expect([b.amount, b.metered]).toEqual([a.amount, a.metered])
            expect(JSON.stringify(meterStateOf(b.next))).toBe(JSON.stringify(a.state))
            amounts.push(a.amount)
            state = a.state
            running = b.next
          })
          const total = periodTotal(charge, state, ctx)
          expect(sumNano(amounts)).toBe(sumNano([total.amount]))
          expect(sumNano(total.lines.map((l) => l.amount))).toBe(sumNano([total.amount]))
        },
      ),
      { numRuns: 200 },
    )
  })

  it('a running total built for one model is refused by another', () => {
    const first = foldUsageEvent(perUnit, sumMeter, undefined, ev(1, '2'), ctx)
    const grad: UsageCharge = { id: 'c', kind: 'usage', meter: 'm', model: 'graduated', tiers: [{ up_to: null, unit_price: '1' }] }
    expect(() => foldUsageEvent(grad, sumMeter, first.next, ev(2, '1'), ctx)).toThrow(/built for model per_unit/)
  })

  it('the final state and period total do not depend on event order (all aggregations)', () => {
    fc.assert(
      fc.property(chargeArb.filter((c) => c.model !== 'percentage'), aggArb, eventsArb, fc.integer(), (charge, aggregation, raw, seed) => {
        const meter: Meter = { id: 'm', metric: 'x', aggregation, ...(aggregation === 'unique_count' ? { dimension: 'user' } : {}) }
        const events = toEvents(raw)
        const shuffled = [...events]
        let s = seed >>> 0
        for (let i = shuffled.length - 1; i > 0; i--) {
          s = (Math.imul(s, 1103515245) + 12345) >>> 0
          const j = s % (i + 1)
          ;[shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!]
        }
        const a = rateAll(charge, meter, events)
        const b = rateAll(charge, meter, shuffled)
        expect(JSON.stringify(b.state)).toBe(JSON.stringify(a.state))
        expect(sumNano(b.amounts)).toBe(sumNano(a.amounts))
      }),
      { numRuns: 300 },
    )
  })

  it('percentage without free units or clamp: total independent of order', () => {
    fc.assert(
      fc.property(decArb(10, 3), fc.option(decArb(1, 2), { nil: undefined }), eventsArb, (rate, fixed, raw) => {
        const charge = { id: 'c', kind: 'usage', meter: 'm', model: 'percentage', rate, ...(fixed ? { fixed_fee_per_event: fixed } : {}) } as UsageCharge
        const events = toEvents(raw)
        const a = rateAll(charge, sumMeter, events)
        const b = rateAll(charge, sumMeter, [...events].reverse())
        expect(b.state?.total).toBe(a.state?.total)
      }),
    )
  })

  it('sum meter: Q equals the big.js sum of scaled quantities; per_unit total equals big.js Q × price rounded half-even to 9 dp', () => {
    fc.assert(
      fc.property(decArb(10, 6), eventsArb, fc.constantFrom('1', '0.001', '0.000000001', '1024'), (price, raw, scale) => {
        const charge = { id: 'c', kind: 'usage', meter: 'm', model: 'per_unit', unit_price: price } as UsageCharge
        const meter: Meter = { id: 'm', metric: 'x', aggregation: 'sum', scale }
        const events = toEvents(raw)
        const { state } = rateAll(charge, meter, events)
        const q = events.reduce((s, e) => s.plus(Big(e.quantity).times(scale)), Big(0))
        expect(Big(state!.q).eq(q)).toBe(true)
        const pos = q.gt(0) ? q : Big(0)
        expect(Big(state!.total).eq(pos.times(price).round(9, Big.roundHalfEven))).toBe(true)
      }),
    )
  })
})
