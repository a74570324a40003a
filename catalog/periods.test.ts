import { describe, expect, it } from 'vitest'
import { billingPeriod } from './periods.js'

const iso = (ms: number) => new Date(ms).toISOString()

describe('billingPeriod', () => {
  it('starts at local midnight of the bill cycle day in the account zone (Berlin, summer time)', () => {
    const p = billingPeriod(Date.parse('2026-10-15T12:00:00Z'), { timezone: 'Europe/Berlin', bill_cycle_day: 1 }, 'month')
    expect(iso(p.start)).toBe('2026-09-30T22:00:00.000Z')
    // October ends in winter time: the period is 31 days and one hour long.
    expect(iso(p.end)).toBe('2026-10-31T23:00:00.000Z')
  })

  it('puts an instant before the cycle day in the previous period, and the start itself in the period (inclusive)', () => {
    const a = { timezone: 'America/New_York', bill_cycle_day: 15 }
    const before = billingPeriod(Date.parse('2026-10-15T03:59:59.999Z'), a, 'month')
    expect(iso(before.start)).toBe('2026-09-15T04:00:00.000Z')
    const at = billingPeriod(Date.parse('2026-10-15T04:00:00Z'), a, 'month')
    expect(iso(at.start)).toBe('2026-10-15T04:00:00.000Z')
    expect(iso(at.end)).toBe('2026-11-15T05:00:00.000Z')
  })

  it('answers the same from its cache as computed fresh, across many periods', () => {
    const a = { timezone: 'Europe/Berlin', bill_cycle_day: 3 }
    const t0 = Date.parse('2025-01-01T00:00:00Z')
    for (let i = 0; i < 2000; i++) {
      const ms = t0 + i * 7 * 3_600_000 * 13
      const p = billingPeriod(ms, a, 'month')
      expect(p.start <= ms && ms < p.end).toBe(true)
    }
  })

  it('quarters and years start in January/April/July/October and January', () => {
    const a = { timezone: 'UTC', bill_cycle_day: 1 }
    const q = billingPeriod(Date.parse('2026-05-20T00:00:00Z'), a, 'quarter')
    expect([iso(q.start), iso(q.end)]).toEqual(['2026-04-01T00:00:00.000Z', '2026-07-01T00:00:00.000Z'])
    const y = billingPeriod(Date.parse('2026-05-20T00:00:00Z'), a, 'year')
    expect([iso(y.start), iso(y.end)]).toEqual(['2026-01-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z'])
  })
})
