import { describe, expect, it } from 'vitest'
import type { Catalog } from '../catalog/types.js'
import { chargeTable, RunningTotals } from './running-totals.js'
import { chargeRef, type StagedCharge } from './stage.js'

const catalog: Catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [
    { id: 'gb', metric: 'bytes_out', aggregation: 'sum', scale: '0.000000001' },
    { id: 'secs', metric: 'bytes_out', aggregation: 'sum' },
    { id: 'reading', metric: 'bytes_out', aggregation: 'latest' },
    { id: 'regions', metric: 'bytes_out', aggregation: 'unique_count', dimension: 'region' },
  ],
  // Weekdays only: a Saturday session has no rate.
  schedules: [{ id: 'weekdays', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '24:00' }],
  plans: [
    {
      id: 'p',
      billing_period: 'month',
      charges: [
        { id: 'base', kind: 'recurring', amount: '10', billing: 'in_advance' },
        { id: 'egress', kind: 'usage', meter: 'gb', model: 'per_unit', unit_price: '0.5' },
        { id: 'calls', kind: 'usage', meter: 'secs', model: 'time_rated', rates: [{ schedule: 'weekdays', steps: [{ from: '0', unit_price: '1', per: '60', increment: '1' }] }] },
        { id: 'orphan', kind: 'usage', meter: 'missing', model: 'per_unit', unit_price: '1' },
        { id: 'last', kind: 'usage', meter: 'reading', model: 'per_unit', unit_price: '1' },
        { id: 'spread', kind: 'usage', meter: 'regions', model: 'per_unit', unit_price: '1' },
      ],
    },
  ],
} as Catalog

function staged(charge: string, eventIso: string, quantity: string): StagedCharge {
  return {
    totalsKey: `s1\u0000p\u0000${charge}\u00002026-10-01T00:00:00.000Z\u0000\u0000v1`,
    chargeRef: chargeRef('v1', 'p', charge),
    quantity,
    dimensions: {},
    eventIso,
    eventMs: Date.parse(eventIso),
    eventId: `e-${eventIso}`,
    timezone: 'UTC',
    periodStartIso: '2026-10-01T00:00:00.000Z',
    periodEndIso: '2026-11-01T00:00:00.000Z',
    prefix: `${charge}\t`,
    suffix: '\n',
  }
}

const THURSDAY = '2026-10-01T12:00:00.000Z'
const SATURDAY = '2026-10-03T12:00:00.000Z'

describe('chargeTable', () => {
  it('holds the usage charges whose meter exists, by chargeRef', () => {
    expect([...chargeTable([catalog]).keys()].map((k) => k.split('\u0000').join('/'))).toEqual(['v1/p/egress', 'v1/p/calls', 'v1/p/last', 'v1/p/spread'])
  })
})

describe('a catalog version that takes over mid-period', () => {
  // The same seat price in both versions: the version change must not change the bill.
  const seats = (version: string, from: string): Catalog =>
    ({
      version,
      effective_from: from,
      currency: 'USD',
      meters: [{ id: 'seats', metric: 'seats', aggregation: 'time_weighted_avg' }],
      plans: [{ id: 'p', billing_period: 'month', charges: [{ id: 'seats', kind: 'usage', meter: 'seats', model: 'per_unit', unit_price: '10' }] }],
    }) as Catalog
  const g1 = seats('g1', '2026-01-01T00:00:00Z')
  const g2 = seats('g2', '2026-10-16T00:00:00Z')
  const reading = (version: string, eventIso: string, quantity: string): StagedCharge => ({
    ...staged('seats', eventIso, quantity),
    totalsKey: `s1\u0000p\u0000seats\u00002026-10-01T00:00:00.000Z\u0000\u0000${version}`,
    chargeRef: chargeRef(version, 'p', 'seats'),
  })
  const amount = (line: string | Error) => {
    if (typeof line !== 'string') throw line
    return line.split('\t')[2]!.trim()
  }

  it('ends each version at the next one\'s effective_from, the latest at Infinity, whatever the order given', () => {
    const t = chargeTable([g2, g1])
    expect(t.get(chargeRef('g1', 'p', 'seats'))!.versionEndMs).toBe(Date.parse('2026-10-16T00:00:00Z'))
    expect(t.get(chargeRef('g2', 'p', 'seats'))!.versionEndMs).toBe(Infinity)
  })

  it('holds a time_weighted_avg reading only until the next version takes over: the two versions bill the period once', () => {
    const totals = new RunningTotals(chargeTable([g1, g2]))
    // 10 seats all October, reported at the start of each version's part: 10 × 15/31 under g1, 10 × 16/31 under g2.
    const a1 = amount(totals.foldEvent([reading('g1', '2026-10-01T00:00:00.000Z', '10')], 'src'))
    const a2 = amount(totals.foldEvent([reading('g2', '2026-10-16T00:00:00.000Z', '10')], 'src'))
    expect([a1, a2]).toEqual(['48.387096774', '51.612903226'])
    expect((Number(a1) + Number(a2)).toFixed(6)).toBe('100.000000') // = price --quantity 10
    // One version alone holds the reading to the period end.
    const alone = new RunningTotals(chargeTable([g1]))
    expect(amount(alone.foldEvent([reading('g1', '2026-10-01T00:00:00.000Z', '10')], 'src'))).toBe('100')
  })

  it('holds a reading until its subscription ends (the key\'s first part), when that comes before the next version', () => {
    const ends = new Map([['s1', Date.parse('2026-10-11T00:00:00Z')]])
    const totals = new RunningTotals(chargeTable([g1, g2]), undefined, (id) => ends.get(id) ?? Infinity)
    // 10 seats from 1 October, the subscription ending on the 11th: 10 × 10/31.
    expect(amount(totals.foldEvent([reading('g1', '2026-10-01T00:00:00.000Z', '10')], 'src'))).toBe('32.258064516')
    // Ending after the next version took over: the version's end holds (10 × 15/31).
    ends.set('s1', Date.parse('2026-10-20T00:00:00Z'))
    const later = new RunningTotals(chargeTable([g1, g2]), undefined, (id) => ends.get(id) ?? Infinity)
    expect(amount(later.foldEvent([reading('g1', '2026-10-01T00:00:00.000Z', '10')], 'src'))).toBe('48.387096774')
  })
})

describe('RunningTotals.fold (a stored row folded again)', () => {
  it('folds a stored time_rated session longer than new events may be (rated by a release without the limit): a start does not fail on it', () => {
    // Every day priced (the rate's schedule, all week): 1 per 60 s.
    const allWeek = { ...catalog, schedules: [{ id: 'weekdays', weekdays: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '24:00' }] } as Catalog
    const key = `s1\u0000p\u0000calls\u00002026-10-01T00:00:00.000Z\u0000\u0000v1`
    const resolved = chargeTable([allWeek]).get(chargeRef('v1', 'p', 'calls'))!
    const ctx = { schedules: allWeek.schedules!, timezone: 'UTC', periodStart: '2026-10-01T00:00:00.000Z', periodEnd: '2026-11-01T00:00:00.000Z' }
    // 400 days: new, it is refused.
    const seconds = String(400 * 86_400)
    const live = new RunningTotals(chargeTable([allWeek]))
    expect(live.foldEvent([staged('calls', THURSDAY, seconds)], 'src')).toMatchObject({ message: expect.stringMatching(/longer than a time_rated charge prices/) })
    const rebuilt = new RunningTotals(chargeTable([allWeek]))
    const r = rebuilt.fold(key, resolved, { event_id: 'old', event_time: THURSDAY, ms: Date.parse(THURSDAY), quantity: seconds, dimensions: {} }, ctx)
    // 400 × 1,440 minutes at 1 a minute.
    expect(r.amount).toBe('576000')
    expect(rebuilt.get(key)!.n).toBe(1)
  })
})

describe('RunningTotals.foldEvent', () => {
  it('returns each charge line with metered quantity and amount, the increment of its running total', () => {
    const totals = new RunningTotals(chargeTable([catalog]))
    expect(totals.foldEvent([staged('egress', THURSDAY, '3000000000')], 'src')).toBe('egress\t3\t1.5\n')
    expect(totals.foldEvent([staged('egress', THURSDAY, '1000000000')], 'src')).toBe('egress\t1\t0.5\n')
    const t = totals.get(staged('egress', THURSDAY, '0').totalsKey)!
    expect([t.n, t.total]).toEqual([2, 2_000_000_000n])
  })

  it('an event one of whose charges cannot price it moves no total: the error comes back and the next event rates as if it never came', () => {
    const totals = new RunningTotals(chargeTable([catalog]))
    totals.foldEvent([staged('egress', THURSDAY, '2000000000')], 'src')
    const key = staged('egress', THURSDAY, '0').totalsKey
    const before = totals.get(key)
    const r = totals.foldEvent([staged('egress', SATURDAY, '5000000000'), staged('calls', SATURDAY, '30')], 'src')
    expect(r).toBeInstanceOf(Error)
    expect((r as Error).message).toMatch(/no rate's schedule covers weekday 6/)
    expect(totals.get(key)).toBe(before)
    expect(totals.foldEvent([staged('egress', THURSDAY, '1000000000'), staged('calls', THURSDAY, '30')], 'src')).toBe('egress\t1\t0.5\ncalls\t30\t0.5\n')
  })

  it('an amount or metered quantity the store cannot hold (more than 29 integer digits) is an error and moves no total', () => {
    const big = { ...catalog, plans: [{ ...catalog.plans[0]!, charges: [{ id: 'egress', kind: 'usage', meter: 'secs', model: 'per_unit', unit_price: '1000' }] }] } as Catalog
    const totals = new RunningTotals(chargeTable([big]))
    expect(totals.foldEvent([staged('egress', THURSDAY, '1')], 'src')).toBe('egress\t1\t1000\n')
    const key = staged('egress', THURSDAY, '0').totalsKey
    const before = totals.get(key)
    const r = totals.foldEvent([staged('egress', THURSDAY, '99999999999999999999999999999')], 'src')
    expect(r).toBeInstanceOf(Error)
    expect((r as Error).message).toBe("charge egress: amount 99999999999999999999999999999000 has more than 29 integer digits, more than rated_usage's Decimal(38, 9) holds")
    expect(totals.get(key)).toBe(before)
    // 29 digits still fit.
    expect(totals.foldEvent([staged('egress', THURSDAY, '99999999999999999999999998')], 'src')).toBe('egress\t99999999999999999999999998\t99999999999999999999999998000\n')
    // So does each amount of the next event; but the period's total would pass 29 digits, and sum(amount) in the store
    // wrapped around to a negative number: an error, and no total moves.
    const full = totals.get(key)
    expect(full!.total).toBe(99999999999999999999999999000n * 10n ** 9n)
    const over = totals.foldEvent([staged('egress', THURSDAY, '1')], 'src')
    expect((over as Error).message).toBe("charge egress: the period's total would pass 29 integer digits, more than rated_usage's Decimal(38, 9) sums hold")
    expect(totals.get(key)).toBe(full)
    const scaled = { ...catalog, meters: [{ id: 'k', metric: 'bytes_out', aggregation: 'sum', scale: '1000' }], plans: [{ ...catalog.plans[0]!, charges: [{ id: 'egress', kind: 'usage', meter: 'k', model: 'per_unit', unit_price: '0' }] }] } as Catalog
    const r2 = new RunningTotals(chargeTable([scaled])).foldEvent([staged('egress', THURSDAY, '99999999999999999999999999999')], 'src')
    expect((r2 as Error).message).toMatch(/^charge egress: metered quantity 99999999999999999999999999999000 has more than 29 integer digits/)
  })

  it('a total keeps what it read of each event, not the event (the fold reuses one event object): latest and unique_count', () => {
    const totals = new RunningTotals(chargeTable([catalog]))
    const later = { ...staged('last', '2026-10-08T12:00:00.000Z', '7'), eventId: 'e-later' }
    const earlier = { ...staged('last', '2026-10-08T11:00:00.000Z', '3'), eventId: 'e-earlier' }
    expect(totals.foldEvent([later], 'src')).toBe('last\t7\t7\n')
    // An older reading than the one held changes nothing.
    expect(totals.foldEvent([earlier], 'src')).toBe('last\t3\t0\n')
    expect(totals.get(later.totalsKey)!.agg).toEqual({ n: 2, q: '7', latest: { t: Date.parse('2026-10-08T12:00:00.000Z'), id: 'e-later', src: 'src' } })
    const eu = { ...staged('spread', THURSDAY, '1'), dimensions: { region: 'eu' } }
    const us = { ...staged('spread', THURSDAY, '1'), dimensions: { region: 'us' } }
    expect([totals.foldEvent([eu], 'src'), totals.foldEvent([us], 'src'), totals.foldEvent([eu], 'src')]).toEqual(['spread\t1\t1\n', 'spread\t1\t1\n', 'spread\t0\t0\n'])
    expect(totals.get(eu.totalsKey)!.agg).toMatchObject({ n: 3, q: '2', uniques: ['eu', 'us'] })
  })

  it('a charge missing from the table is an error naming it', () => {
    const totals = new RunningTotals(new Map())
    expect((totals.foldEvent([staged('egress', THURSDAY, '1')], 'src') as Error).message).toBe("charge v1/p/egress missing from the rater's catalog snapshot")
  })

  it('a charge missing from the table is looked up again after onMissingCharge reloads: a version applied a moment ago rates', () => {
    const asked: string[] = []
    const totals: RunningTotals = new RunningTotals(new Map(), (ref) => {
      asked.push(ref)
      totals.setCharges(chargeTable([catalog]))
    })
    expect(totals.foldEvent([staged('egress', THURSDAY, '2000000000')], 'src')).toBe('egress\t2\t1\n')
    expect(asked).toEqual(['v1\u0000p\u0000egress'])
    // Found now: no second reload.
    expect(totals.foldEvent([staged('egress', THURSDAY, '1000000000')], 'src')).toBe('egress\t1\t0.5\n')
    expect(asked).toHaveLength(1)
  })

  it('a charge still missing after onMissingCharge is the same error, and no total moved', () => {
    const totals = new RunningTotals(new Map(), () => undefined)
    expect((totals.foldEvent([staged('egress', THURSDAY, '1')], 'src') as Error).message).toBe("charge v1/p/egress missing from the rater's catalog snapshot")
    expect(totals.get(staged('egress', THURSDAY, '1').totalsKey)).toBeUndefined()
  })

  it('keeps its totals when the charge table is swapped for a reloaded one', () => {
    const totals = new RunningTotals(chargeTable([catalog]))
    totals.foldEvent([staged('egress', THURSDAY, '2000000000')], 'src')
    totals.setCharges(chargeTable([catalog]))
    expect(totals.foldEvent([staged('egress', THURSDAY, '2000000000')], 'src')).toBe('egress\t2\t1\n')
    expect(totals.size).toBe(1)
  })
})
