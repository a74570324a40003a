import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Meter } from '../catalog/types.js'
import { type Dec, ZERO, fmt, parseDec } from './decimal.js'
import { type MeterAggregate, foldMeter, groupKey, meterAccepts, meterInfo, scaledQuantity } from './meters.js'

const START = Date.parse('2026-11-01T00:00:00Z')
const END = Date.parse('2026-12-01T00:00:00Z')

interface E {
  id: string
  t: string
  q: string
  dims?: Record<string, string>
}

function foldAll(meter: Meter, events: E[]): MeterAggregate | undefined {
  let agg: MeterAggregate | undefined
  let q: Dec = ZERO
  for (const e of events) {
    const r = foldMeter(meter, agg, q, { event_id: e.id, event_time: e.t, dimensions: e.dims ?? {} }, scaledQuantity(meterInfo(meter).scale, e.q), START, END)
    agg = r.agg
    q = r.q
    expect(fmt(q)).toBe(agg.q)
  }
  return agg
}

const m = (aggregation: Meter['aggregation'], extra: Partial<Meter> = {}): Meter => ({ id: 'm', metric: 'x', aggregation, ...extra })
const at = (day: number, hour = 0) => new Date(START + (day * 24 + hour) * 3_600_000).toISOString()

const cases: { name: string; meter: Meter; events: E[]; q: string }[] = [
  { name: 'sum with scale (bytes → GB)', meter: m('sum', { scale: '0.000000001' }), events: [{ id: 'a', t: at(0), q: '1500000000' }, { id: 'b', t: at(1), q: '500000000' }], q: '2' },
  { name: 'sum of negatives', meter: m('sum'), events: [{ id: 'a', t: at(0), q: '5' }, { id: 'b', t: at(1), q: '-7.5' }], q: '-2.5' },
  { name: 'count ignores quantity', meter: m('count'), events: [{ id: 'a', t: at(0), q: '5' }, { id: 'b', t: at(1), q: '0' }], q: '2' },
  { name: 'count × scale', meter: m('count', { scale: '0.5' }), events: [{ id: 'a', t: at(0), q: '5' }, { id: 'b', t: at(1), q: '0' }, { id: 'c', t: at(1), q: '0' }], q: '1.5' },
  { name: 'max', meter: m('max'), events: [{ id: 'a', t: at(0), q: '5' }, { id: 'b', t: at(1), q: '9.5' }, { id: 'c', t: at(2), q: '1' }], q: '9.5' },
  { name: 'min', meter: m('min'), events: [{ id: 'a', t: at(0), q: '5' }, { id: 'b', t: at(1), q: '9.5' }, { id: 'c', t: at(2), q: '1' }], q: '1' },
  { name: 'latest by time, not arrival', meter: m('latest'), events: [{ id: 'a', t: at(5), q: '5' }, { id: 'b', t: at(1), q: '9' }], q: '5' },
  { name: 'latest: equal times, greater event_id wins', meter: m('latest'), events: [{ id: 'b', t: at(5), q: '5' }, { id: 'a', t: at(5), q: '9' }], q: '5' },
  { name: 'unique_count', meter: m('unique_count', { dimension: 'user' }), events: ['x', 'y', 'x', 'z'].map((u, k) => ({ id: `e${k}`, t: at(k), q: '1', dims: { user: u } })), q: '3' },
  { name: 'unique_count without the dimension', meter: m('unique_count', { dimension: 'user' }), events: [{ id: 'a', t: at(0), q: '1' }], q: '0' },
  { name: 'time_weighted_avg: one reading from the start holds all period', meter: m('time_weighted_avg'), events: [{ id: 'a', t: at(0), q: '12' }], q: '12' },
  { name: 'time_weighted_avg: 0 before the first reading (reading at mid-period)', meter: m('time_weighted_avg'), events: [{ id: 'a', t: at(15), q: '12' }], q: '6' },
  { name: 'time_weighted_avg: 10 for 10 days, 40 for 5, 20 for 15 = 20', meter: m('time_weighted_avg'), events: [{ id: 'c', t: at(15), q: '20' }, { id: 'a', t: at(0), q: '10' }, { id: 'b', t: at(10), q: '40' }], q: '20' },
  { name: 'time_weighted_avg: a third of the period at 1 rounds at 18 decimals', meter: m('time_weighted_avg'), events: [{ id: 'a', t: at(20), q: '1' }], q: '0.333333333333333333' },
  { name: 'time_weighted_avg: the same reading twice counts once', meter: m('time_weighted_avg'), events: [{ id: 'a', t: at(15), q: '12' }, { id: 'a', t: at(15), q: '12' }], q: '6' },
]

describe('foldMeter', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      expect(foldAll(tc.meter, tc.events)?.q).toBe(tc.q)
    })
  }

  it('never mutates the prior aggregate', () => {
    const meter = m('unique_count', { dimension: 'user' })
    const a = foldAll(meter, [{ id: 'a', t: at(0), q: '1', dims: { user: 'x' } }])!
    const snapshot = JSON.stringify(a)
    foldMeter(meter, a, parseDec(a.q), { event_id: 'b', event_time: at(1), dimensions: { user: 'y' } }, parseDec('1'), START, END)
    expect(JSON.stringify(a)).toBe(snapshot)
  })

  it('time_weighted_avg: the incremental integral equals a from-scratch recomputation, any order', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 30 * 24 - 1 }), fc.integer({ min: 0, max: 100 })), { minLength: 1, maxLength: 30 }), (raw) => {
        const events = raw.map(([h, v], k) => ({ id: `e${k}`, t: new Date(START + h * 3_600_000).toISOString(), q: String(v) }))
        const agg = foldAll(m('time_weighted_avg'), events)!
        // From scratch: sort by (t, id); each value holds until the next; 0 before the first.
        const sorted = [...events].sort((x, y) => (x.t < y.t ? -1 : x.t > y.t ? 1 : x.id < y.id ? -1 : 1))
        let integral = 0n
        sorted.forEach((e, k) => {
          const next = sorted[k + 1]
          const until = next ? Date.parse(next.t) : END
          integral += BigInt(e.q) * BigInt(until - Date.parse(e.t))
        })
        expect(agg.integral).toBe(integral.toString())
      }),
    )
  })
})

describe('readings of two sources with one event_id and time', () => {
  // CONTRACT §2: an event is (source, event_id). Two sites sending hourly gauges with ids like `r1` are two readings:
  // time_weighted_avg took the second for a replay (amount 0), and latest kept whichever came first.
  const fold = (meter: Meter, events: Array<{ src: string; q: string; id?: string; t?: string }>, prior?: MeterAggregate) => {
    let agg = prior
    let q: Dec = prior === undefined ? ZERO : parseDec(prior.q)
    for (const e of events) {
      const r = foldMeter(meter, agg, q, { event_id: e.id ?? 'r1', source: e.src, event_time: e.t ?? at(0), dimensions: {} }, parseDec(e.q), START, END)
      agg = r.agg
      q = r.q
    }
    return agg!
  }
  it('latest: the last by (time, id, source), whichever arrives first', () => {
    const a = { src: 'csv:site-a', q: '5' }
    const b = { src: 'csv:site-b', q: '7' }
    expect(fold(m('latest'), [a, b]).q).toBe('7')
    expect(fold(m('latest'), [b, a]).q).toBe('7')
    // The same reading again (same source) changes nothing.
    expect(fold(m('latest'), [b, a, b]).q).toBe('7')
  })
  it('time_weighted_avg: both readings are folded, in one order whatever the arrival; the same reading again is no change', () => {
    const a = { src: 'csv:site-a', q: '5', t: at(0) }
    const b = { src: 'csv:site-b', q: '7', t: at(0) }
    const later = { src: 'csv:site-a', q: '1', id: 'r2', t: at(15) }
    const ab = fold(m('time_weighted_avg'), [a, b, later])
    const ba = fold(m('time_weighted_avg'), [later, b, a])
    expect(ab).toEqual(ba)
    // site-b's 7 holds from day 0 (it sorts after site-a's 5 at the same instant) to day 15, then 1 to the month's end.
    expect(ab.integral).toBe(String(7 * 15 * 86_400_000 + 1 * 15 * 86_400_000))
    expect(ab.points!.map((p) => p[3])).toEqual(['csv:site-a', 'csv:site-b', 'csv:site-a'])
    expect(fold(m('time_weighted_avg'), [a], ab)).toEqual({ ...ab, n: ab.n + 1 })
  })
  it('readings a checkpoint of an earlier release recorded without their source match on time and id, as then', () => {
    const old: MeterAggregate = { n: 1, q: '5', points: [[START, 'r1', '5']], integral: String(5 * (END - START)) }
    expect(fold(m('time_weighted_avg'), [{ src: 'csv:site-a', q: '5' }], old)).toEqual({ ...old, n: 2 })
    const oldLatest: MeterAggregate = { n: 1, q: '5', latest: { t: START, id: 'r1' } }
    expect(fold(m('latest'), [{ src: 'csv:site-b', q: '7' }], oldLatest).q).toBe('5')
  })
})

describe('meterAccepts / groupKey / scaledQuantity', () => {
  const meter = m('sum', { metric: 'bytes_out', filter: { direction: 'out' }, group_by: ['region'], scale: '0.001' })
  it('metric and filter', () => {
    expect(meterAccepts(meter, 'bytes_out', { direction: 'out' })).toBe(true)
    expect(meterAccepts(meter, 'bytes_out', { direction: 'in' })).toBe(false)
    expect(meterAccepts(meter, 'bytes_in', { direction: 'out' })).toBe(false)
  })
  it('group key', () => {
    expect(groupKey(meter, { region: 'eu', direction: 'out' })).toBe('["eu"]')
    expect(groupKey(meter, {})).toBe('[null]')
  })
  it('scale', () => {
    expect(fmt(scaledQuantity(meterInfo(meter).scale, '1234'))).toBe('1.234')
  })
})
