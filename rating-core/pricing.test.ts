import { describe, expect, it } from 'vitest'
import { validateCatalog } from '../catalog/validate-catalog.js'
import { minimumCommitment, priceCharge, rateEvent } from './pricing.js'

const catalog = validateCatalog({
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'EUR',
  meters: [
    { id: 'fonts', metric: 'fonts', aggregation: 'max' },
    { id: 'calls', metric: 'api_calls', aggregation: 'sum' },
    { id: 'txn', metric: 'txn_amount', aggregation: 'sum' },
    { id: 'secs', metric: 'session_seconds', aggregation: 'sum' },
    { id: 'users', metric: 'login', aggregation: 'unique_count', dimension: 'user' },
    { id: 'seats', metric: 'seats', aggregation: 'time_weighted_avg' },
  ],
  schedules: [
    { id: 'day', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '18:00' },
    { id: 'evening', weekdays: [1, 2, 3, 4, 5], from: '18:00', to: '24:00' },
    { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
  ],
  plans: [
    {
      id: 'pro',
      billing_period: 'month',
      minimum_commitment: '500.00',
      charges: [
        { id: 'base', kind: 'recurring', amount: '99', billing: 'in_advance', proration: 'daily' },
        { id: 'fonts', kind: 'usage', meter: 'fonts', model: 'graduated', tiers: [{ up_to: '5', unit_price: '7' }, { up_to: '10', unit_price: '6.5' }, { up_to: null, unit_price: '6' }] },
        { id: 'calls', kind: 'usage', meter: 'calls', model: 'package', package_size: '100', package_price: '5', free_units: '100' },
        { id: 'card', kind: 'usage', meter: 'txn', model: 'percentage', rate: '2.9', fixed_fee_per_event: '0.30' },
        { id: 'users', kind: 'usage', meter: 'users', model: 'per_unit', unit_price: '3' },
        { id: 'seats', kind: 'usage', meter: 'seats', model: 'per_unit', unit_price: '10' },
        {
          id: 'voice',
          kind: 'usage',
          meter: 'secs',
          model: 'time_rated',
          rates: [
            { schedule: 'day', connect_fee: '1', steps: [{ from: '0', unit_price: '1', per: '1', increment: '60' }, { from: '60', unit_price: '1', per: '1', increment: '1' }] },
            { schedule: 'evening', steps: [{ from: '0', unit_price: '0.5', per: '60', increment: '60' }] },
            { schedule: 'weekend', steps: [{ from: '0', unit_price: '0', per: '1', increment: '1' }] },
          ],
          max_cost_per_event: '10',
          max_cost_strategy: 'free',
          rounding: { decimals: 2, mode: 'up' },
        },
      ],
    },
    { id: 'free', billing_period: 'month', charges: [] },
  ],
})

describe('priceCharge', () => {
  it('--quantity: Stripe graduated, 8 fonts = 54.5 EUR with one line per tier', () => {
    const r = priceCharge(catalog, 'pro', 'fonts', { quantity: '8' })
    expect(r).toMatchObject({ amount: '54.5', currency: 'EUR' })
    expect(r.lines).toHaveLength(2)
  })
  it('--events on a max meter prices the max', () => {
    expect(priceCharge(catalog, 'pro', 'fonts', { events: ['3', '8', '2'] }).amount).toBe('54.5')
  })
  it('--events on a sum meter prices the sum (Lago package: 201 units = 10)', () => {
    expect(priceCharge(catalog, 'pro', 'calls', { events: ['101', '100'] }).amount).toBe('10')
  })
  it('--events on a unique_count meter counts distinct values, compared as text as the rater compares dimension values', () => {
    expect(priceCharge(catalog, 'pro', 'users', { events: ['alice', 'bob', 'alice'] }).amount).toBe('6')
    expect(priceCharge(catalog, 'pro', 'users', { events: ['1', '2', '1', '1.0'] }).amount).toBe('9')
    // Not trimmed (" u1" is another value), "-x" is a value like any, and an event without a value ('') counts none.
    expect(priceCharge(catalog, 'pro', 'users', { events: ['u1', ' u1', '', '-x', 'u1'] }).amount).toBe('9')
  })
  it('--events on count and unique_count meters multiplies by the meter scale, as rating does', () => {
    const scaled = validateCatalog({
      ...catalog,
      meters: [
        { id: 'users', metric: 'login', aggregation: 'unique_count', dimension: 'user', scale: '2' },
        { id: 'calls', metric: 'api_calls', aggregation: 'count', scale: '2' },
      ],
      plans: [
        {
          id: 'p',
          billing_period: 'month',
          charges: [
            { id: 'users', kind: 'usage', meter: 'users', model: 'per_unit', unit_price: '3' },
            { id: 'calls', kind: 'usage', meter: 'calls', model: 'per_unit', unit_price: '3' },
          ],
        },
      ],
    })
    // alice, bob, carol: 3 users × scale 2 = 6 × 3 = 18; 4 calls × 2 = 8 × 3 = 24.
    expect(priceCharge(scaled, 'p', 'users', { events: ['alice', 'bob', 'alice', 'carol'] })).toMatchObject({ amount: '18', lines: [expect.objectContaining({ quantity: '6' })] })
    expect(priceCharge(scaled, 'p', 'calls', { events: ['1', '1', '1', '1'] }).amount).toBe('24')
  })
  it('--events on a percentage charge prices each event (2.9% + 0.30)', () => {
    const r = priceCharge(catalog, 'pro', 'card', { events: ['100', '10'] })
    expect(r.amount).toBe('3.79')
    expect(r.lines).toHaveLength(2)
  })
  it('a percentage event of value 0 pays the fixed fee, clamped to the per-event minimum (CONTRACT §3.2)', () => {
    const fees = { ...catalog, plans: [{ id: 'p', billing_period: 'month' as const, charges: [{ id: 'fees', kind: 'usage' as const, meter: 'txn', model: 'percentage' as const, rate: '2.9', fixed_fee_per_event: '0.30', per_event_min: '0.50' }] }] }
    // 0 → max(0 + 0.30, 0.50) = 0.50; 10 → max(0.29 + 0.30, 0.50) = 0.59.
    expect(priceCharge(fees, 'p', 'fees', { events: ['0', '10'] })).toMatchObject({ amount: '1.09', lines: [expect.objectContaining({ amount: '0.5' }), expect.objectContaining({ amount: '0.59' })] })
    // Inside the free allowance it is free, as any event entirely inside it.
    const free = { ...fees, plans: [{ ...fees.plans[0]!, charges: [{ ...fees.plans[0]!.charges[0]!, free_units: '5' }] }] }
    expect(priceCharge(free, 'p', 'fees', { events: ['0', '10'] }).amount).toBe('0.5')
  })
  it('--quantity on a percentage charge is one event', () => {
    expect(priceCharge(catalog, 'pro', 'card', { quantity: '100' }).amount).toBe('3.2')
  })
  it('time_weighted_avg with --events is BAD_USAGE; --quantity works', () => {
    expect(() => priceCharge(catalog, 'pro', 'seats', { events: ['1'] })).toThrow(expect.objectContaining({ code: 'BAD_USAGE' }))
    expect(priceCharge(catalog, 'pro', 'seats', { quantity: '2.5' }).amount).toBe('25')
  })
  it('unknown plan / charge, recurring and time_rated charges are BAD_USAGE with a clear message', () => {
    expect(() => priceCharge(catalog, 'nope', 'fonts', { quantity: '1' })).toThrow(/no plan "nope" in catalog v1 \(plans: pro, free\)/)
    expect(() => priceCharge(catalog, 'pro', 'nope', { quantity: '1' })).toThrow(/no charge "nope" in plan "pro"/)
    expect(() => priceCharge(catalog, 'pro', 'base', { quantity: '1' })).toThrow(/recurring charge/)
    expect(() => priceCharge(catalog, 'pro', 'voice', { quantity: '1' })).toThrow(/rateflow rate/)
    try {
      priceCharge(catalog, 'pro', 'base', { quantity: '1' })
    } catch (e) {
      expect((e as { code: string }).code).toBe('BAD_USAGE')
    }
  })
  it('a bad quantity is BAD_INPUT', () => {
    expect(() => priceCharge(catalog, 'pro', 'fonts', { quantity: 'eight' })).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }))
  })
})

describe('rateEvent', () => {
  it('time_rated: the CONTRACT §3.3 day rate (61 s = 62) is capped at max_cost_per_event 10', () => {
    const r = rateEvent(catalog, 'pro', 'voice', '2026-10-01T08:00:00Z', '61', 'Europe/Berlin')
    expect(r).toMatchObject({ amount: '10', currency: 'EUR' })
    expect(r.lines.at(-1)).toMatchObject({ description: 'maximum cost per event', amount: '-52' })
  })
  it('time_rated: evening, 150 s = 3 minute blocks × 0.5', () => {
    expect(rateEvent(catalog, 'pro', 'voice', '2026-10-01T17:00:00Z', '150', 'Europe/Berlin').amount).toBe('1.5')
  })
  it('timezone defaults to UTC', () => {
    // 17:30Z: day in UTC (capped), evening in Berlin.
    expect(rateEvent(catalog, 'pro', 'voice', '2026-10-01T17:30:00Z', '60').amount).toBe('10')
    expect(rateEvent(catalog, 'pro', 'voice', '2026-10-01T17:30:00Z', '60', 'Europe/Berlin').amount).toBe('0.5')
  })
  it('percentage: one event; a start that is no time, or a zone that does not exist, is bad input as for a session', () => {
    expect(rateEvent(catalog, 'pro', 'card', '2026-10-01T08:00:00Z', '100').amount).toBe('3.2')
    expect(rateEvent(catalog, 'pro', 'card', '2026-10-01T08:00:00+02:00', '100', 'Europe/Berlin').amount).toBe('3.2')
    // Taken as given before: `--start yesterday --timezone Nowhere/Land` priced.
    for (const [start, tz, message] of [
      ['yesterday', 'UTC', 'start "yesterday" is not an ISO-8601 time with offset, e.g. 2026-10-02T17:59:00Z'],
      ['2026-02-30T00:00:00Z', 'UTC', 'start "2026-02-30T00:00:00Z" is not an ISO-8601 time with offset, e.g. 2026-10-02T17:59:00Z'],
      ['2026-10-01T08:00:00Z', 'Nowhere/Land', 'unknown time zone "Nowhere/Land"'],
    ] as const) {
      expect(() => rateEvent(catalog, 'pro', 'card', start, '100', tz)).toThrow(expect.objectContaining({ code: 'BAD_INPUT', message }))
    }
  })
  it('a period model is BAD_USAGE', () => {
    expect(() => rateEvent(catalog, 'pro', 'fonts', '2026-10-01T08:00:00Z', '1')).toThrow(/rateflow price/)
  })
})

describe('minimumCommitment', () => {
  it('canonical decimal, "0" when absent', () => {
    expect(minimumCommitment(catalog.plans[0]!)).toBe('500')
    expect(minimumCommitment(catalog.plans[1]!)).toBe('0')
  })
})
