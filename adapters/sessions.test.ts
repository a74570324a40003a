import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { SessionMerger } from './sessions.js'
import { DEFAULT_SESSIONS, type SessionOptions } from './config.js'
import type { WireRecord } from '../rating-core/record.js'

const opts = (o: Partial<SessionOptions> = {}): SessionOptions => ({ ...DEFAULT_SESSIONS, idle_timeout_s: 60, ...o })

let n = 0
function ev(kind: string | undefined, time: string, metric: string, quantity: string, extra: Partial<WireRecord> = {}): WireRecord {
  return {
    event_id: `e${n++}`,
    source: 'mqtt:t',
    event_time: time,
    device_id: 'fw-1',
    metric,
    quantity,
    dimensions: { session_id: 's1', ...(kind !== undefined && { session_event: kind }), region: 'eu' },
    ...extra,
  }
}

const byMetric = (rs: WireRecord[]) => Object.fromEntries(rs.map((r) => [r.metric, r]))

describe('SessionMerger', () => {
  it('merges start / interim / stop (cumulative: the latest value wins) with duration and flags', () => {
    const m = new SessionMerger<string>(opts())
    expect(m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '0'), 0, 'a').absorbed).toBe(true)
    m.push(ev('interim', '2026-10-01T12:01:00Z', 'bytes_out', '100'), 1, 'b')
    m.push(ev('interim', '2026-10-01T12:01:00Z', 'bytes_in', '7'), 2, 'c')
    const res = m.push(ev('stop', '2026-10-01T12:02:30.5Z', 'bytes_out', '250'), 3, 'd')
    expect(res.closed).toHaveLength(1)
    const s = res.closed[0]!
    expect(s.close).toBe('stop')
    expect(s.tags).toEqual(['a', 'b', 'c', 'd'])
    expect(s.records.map((r) => r.metric)).toEqual(['session_seconds', 'bytes_in', 'bytes_out'])
    const r = byMetric(s.records)
    expect(r.session_seconds!.quantity).toBe('150.5')
    expect(r.bytes_out!.quantity).toBe('250')
    expect(r.bytes_in!.quantity).toBe('7')
    expect(r.bytes_out!.event_time).toBe('2026-10-01T12:00:00Z')
    expect(r.bytes_out!.event_id).toBe('session:fw-1:s1:bytes_out')
    expect(r.bytes_out!.device_id).toBe('fw-1')
    expect(r.bytes_out!.dimensions).toEqual({ session_id: 's1', region: 'eu', session_close: 'stop' })
    expect(m.open).toBe(0)
  })

  it('gives two sessions two ids when their owner and session ids hold ":" (escaped), and a device and an account of one id two sessions', () => {
    const m = new SessionMerger(opts())
    const stop = (device: string | undefined, session: string, extra: Partial<WireRecord> = {}) =>
      m.push(ev('stop', '2026-10-01T12:00:00Z', 'bytes_out', '1', { device_id: device, dimensions: { session_id: session, session_event: 'stop' }, ...extra }), 0).closed[0]!.records[0]!.event_id
    // Unescaped, both were session:ph-1:z:9:session_seconds, and the second (another account's) a duplicate.
    expect(stop('ph-1', 'z:9')).toBe('session:ph-1:z%3A9:session_seconds')
    expect(stop('ph-1:z', '9')).toBe('session:ph-1%3Az:9:session_seconds')
    expect(stop('50%', 'a')).toBe('session:50%25:a:session_seconds')
    // Device x and account x: two owners; and a device named as the marker is not the account.
    expect(stop(undefined, 's', { account_id: 'x' })).toBe('session:account=x:s:session_seconds')
    expect(stop('x', 's')).toBe('session:x:s:session_seconds')
    expect(stop('account=x', 's')).toBe('session:account%3Dx:s:session_seconds')
  })

  it('keeps two open sessions apart whose owner and session ids join to the same text (a NUL in an id)', () => {
    const m = new SessionMerger(opts())
    const start = (device: string, session: string, q: string) =>
      m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', q, { device_id: device, dimensions: { session_id: session, session_event: 'start' } }), 0)
    start('a\u0000b', 'c', '5')
    start('a', 'b\u0000c', '7')
    expect(m.open).toBe(2)
    const closed = m.expire(60_001).flatMap((s) => s.records.filter((r) => r.metric === 'bytes_out').map((r) => [r.device_id, r.quantity]))
    expect(closed).toEqual([
      ['a\u0000b', '5'],
      ['a', '7'],
    ])
  })

  it('cumulative keeps the value of the latest event_time even when events arrive out of order', () => {
    const m = new SessionMerger(opts())
    m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '0'), 0)
    m.push(ev('interim', '2026-10-01T12:05:00Z', 'bytes_out', '500'), 1)
    m.push(ev('interim', '2026-10-01T12:03:00Z', 'bytes_out', '300'), 2)
    const s = m.expire(2 + 60_000)[0]!
    expect(byMetric(s.records).bytes_out!.quantity).toBe('500')
  })

  it('delta adds values up, exactly, and counts a redelivered event once', () => {
    const m = new SessionMerger<number>(opts({ interim: 'delta' }))
    m.push(ev('start', '2026-10-01T12:00:00Z', 'txn_amount', '0.1'), 0, 1)
    const interim = ev('interim', '2026-10-01T12:00:10Z', 'txn_amount', '0.2')
    m.push(interim, 1, 2)
    m.push({ ...interim }, 2, 3)
    const s = m.push(ev('stop', '2026-10-01T12:00:20Z', 'txn_amount', '0.000000001'), 3, 4).closed[0]!
    expect(byMetric(s.records).txn_amount!.quantity).toBe('0.300000001')
    expect(s.tags).toEqual([1, 2, 3, 4])
  })

  it('bills a stop without start and flags it', () => {
    const m = new SessionMerger(opts())
    const s = m.push(ev('stop', '2026-10-01T12:00:20Z', 'bytes_out', '9'), 0).closed[0]!
    const r = byMetric(s.records)
    expect(r.bytes_out!.dimensions).toMatchObject({ session_flag: 'no_start', session_close: 'stop' })
    expect(r.session_seconds!.quantity).toBe('0')
  })

  it('closes an idle session after idle_timeout_s by the caller clock, not before', () => {
    const m = new SessionMerger(opts({ idle_timeout_s: 10 }))
    m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '1'), 1000)
    m.push(ev('interim', '2026-10-01T12:00:05Z', 'bytes_out', '2'), 5000)
    expect(m.nextDeadline()).toBe(15_000)
    expect(m.expire(14_999)).toEqual([])
    const closed = m.expire(15_000)
    expect(closed).toHaveLength(1)
    expect(closed[0]!.close).toBe('idle_timeout')
    expect(byMetric(closed[0]!.records).bytes_out!.dimensions).toMatchObject({ session_close: 'idle_timeout' })
    expect(byMetric(closed[0]!.records).bytes_out!.dimensions!.session_flag).toBeUndefined()
    expect(m.nextDeadline()).toBeUndefined()
  })

  it('uses a reported duration metric instead of computing one', () => {
    const m = new SessionMerger(opts())
    m.push(ev('start', '2026-10-01T12:00:00Z', 'session_seconds', '0'), 0)
    const s = m.push(ev('stop', '2026-10-01T12:00:10Z', 'session_seconds', '42'), 1).closed[0]!
    expect(s.records).toHaveLength(1)
    expect(s.records[0]!.quantity).toBe('42')
  })

  it('passes through non-session records; reports unmergeable values and an unknown kind', () => {
    const m = new SessionMerger(opts())
    const plain: WireRecord = { event_id: 'x', source: 's', event_time: '2026-10-01T00:00:00Z', device_id: 'd', metric: 'm', quantity: '1' }
    expect(m.push(plain, 0)).toEqual({ absorbed: false, closed: [] })
    expect(m.push(ev('interim', '2026-10-01T00:00:00Z', 'm', 'lots'), 0)).toMatchObject({ absorbed: false, problem: expect.stringMatching(/^quantity "lots"/) })
    expect(m.push(ev('interim', 'yesterday', 'm', '1'), 0)).toMatchObject({ absorbed: false, problem: expect.stringMatching(/^event_time "yesterday"/) })
    const bad = m.push(ev('pause', '2026-10-01T00:00:00Z', 'm', '1'), 0)
    expect(bad.absorbed).toBe(false)
    expect(bad.problem).toMatch(/session_event="pause"; expected start, interim or stop/)
    expect(m.push(ev(undefined, '2026-10-01T00:00:00Z', 'm', '1'), 0).problem).toMatch(/\(missing\)/)
    expect(m.open).toBe(0)
  })

  describe('an event the validate stage would reject is not absorbed: it is a problem of its own, the session goes on', () => {
    const QTY = /is not a non-negative decimal with at most 29 integer and 9 fraction digits$/
    const TIME = /is not an ISO-8601 time with offset/

    it('a negative delta is not subtracted, an exponent is not added (delta)', () => {
      const m = new SessionMerger<string>(opts({ interim: 'delta' }))
      const neg = m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '-50'), 0, 'a')
      expect(neg).toEqual({ absorbed: false, problem: expect.stringMatching(QTY), closed: [] })
      expect(neg.problem).toMatch(/^quantity "-50" /)
      expect(m.open).toBe(0)
      expect(m.push(ev('interim', '2026-10-01T12:00:10Z', 'bytes_out', '5'), 1, 'b').absorbed).toBe(true)
      expect(m.push(ev('interim', '2026-10-01T12:00:20Z', 'bytes_out', '1e2'), 2, 'c').problem).toMatch(/^quantity "1e2" /)
      const s = m.push(ev('stop', '2026-10-01T12:00:30Z', 'bytes_out', '80'), 3, 'd').closed[0]!
      expect(byMetric(s.records).bytes_out!.quantity).toBe('85')
      // Tags of the refused events are not held by the session: the caller acknowledges them with their reject.
      expect(s.tags).toEqual(['b', 'd'])
    })

    it('exponent and over-long quantities do not replace the cumulative value', () => {
      const m = new SessionMerger(opts({ interim: 'cumulative' }))
      m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '10'), 0)
      expect(m.push(ev('interim', '2026-10-01T12:00:10Z', 'bytes_out', '1e3'), 1).problem).toMatch(QTY)
      expect(m.push(ev('interim', '2026-10-01T12:00:20Z', 'bytes_out', '0.0000000001'), 2).problem).toMatch(QTY)
      expect(m.push(ev('interim', '2026-10-01T12:00:25Z', 'bytes_out', '1'.repeat(30)), 3).problem).toMatch(QTY)
      const s = m.push(ev('stop', '2026-10-01T12:00:30Z', 'bytes_out', '2e3'), 4)
      expect(s.problem).toMatch(/^quantity "2e3" /)
      expect(s.closed).toEqual([])
      const [closed] = m.drain()
      expect(byMetric(closed!.records).bytes_out!.quantity).toBe('10')
    })

    it('a malformed event_time neither overrides the cumulative value nor moves the session time', () => {
      const m = new SessionMerger(opts({ interim: 'cumulative' }))
      m.push(ev('start', '2026-10-17T12:00:00Z', 'bytes_out', '0'), 0)
      m.push(ev('interim', '2026-10-17T12:30:00Z', 'bytes_out', '40'), 1)
      const bad = m.push(ev('interim', 'Oct 17 2026 13:00', 'bytes_out', '999'), 2)
      expect(bad).toEqual({ absorbed: false, problem: expect.stringMatching(TIME), closed: [] })
      expect(bad.problem).toMatch(/^event_time "Oct 17 2026 13:00" /)
      const s = m.push(ev('stop', '2026-10-17T12:45:00Z', 'bytes_out', '60'), 3).closed[0]!
      const r = byMetric(s.records)
      expect(r.bytes_out!.quantity).toBe('60')
      expect(r.session_seconds!.quantity).toBe('2700')
    })

    it('a zone-less first event is refused on its own; the session starts with the next valid one', () => {
      const m = new SessionMerger(opts({ interim: 'cumulative' }))
      const v1 = ev('start', '2026-10-17T13:00:00', 'bytes_out', '5', { raw: 'v1', origin: 'o1' })
      const v2 = ev('interim', '2026-10-17T13:05:00+02:00', 'bytes_out', '70', { raw: 'v2', origin: 'o2' })
      expect(m.push(v1, 0).problem).toMatch(/^event_time "2026-10-17T13:00:00" is not an ISO-8601 time with offset/)
      expect(m.push(v2, 1).absorbed).toBe(true)
      const [s] = m.drain()
      for (const r of s!.records) expect(r).toMatchObject({ event_time: '2026-10-17T13:05:00+02:00', raw: 'v2', origin: 'o2' })
      expect(byMetric(s!.records).bytes_out!.quantity).toBe('70')
      expect(byMetric(s!.records).session_seconds!.quantity).toBe('0')
      expect(byMetric(s!.records).bytes_out!.dimensions!.session_flag).toBe('no_start')
    })

    it('a time outside the store\'s range is refused as the validate stage refuses it', () => {
      const m = new SessionMerger(opts())
      expect(m.push(ev('start', '2300-01-01T00:00:00Z', 'bytes_out', '1'), 0).problem).toMatch(/^event_time "2300-01-01T00:00:00Z" is outside the range the store holds/)
      expect(m.open).toBe(0)
    })
  })

  it('keeps sessions of different owners apart; drain closes the rest as shutdown', () => {
    const m = new SessionMerger(opts({ kinds: { start: 'S', interim: 'I', stop: 'E' } }))
    m.push(ev('S', '2026-10-01T12:00:00Z', 'bytes_out', '1'), 0)
    m.push(ev('S', '2026-10-01T12:00:00Z', 'bytes_out', '2', { device_id: 'fw-2' }), 0)
    expect(m.open).toBe(2)
    const all = m.drain()
    expect(all.map((s) => s.close)).toEqual(['shutdown', 'shutdown'])
    expect(all.map((s) => byMetric(s.records).bytes_out!.device_id).sort()).toEqual(['fw-1', 'fw-2'])
    expect(m.open).toBe(0)
  })

  it('drain with a pick closes only the sessions whose tags it accepts; the rest stay open', () => {
    const m = new SessionMerger<string>(opts())
    const sid = (id: string) => ({ dimensions: { session_id: id, session_event: 'start' } })
    m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '1', sid('A')), 0, 'ack')
    m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '2', sid('B')), 1, 'none')
    m.push(ev('interim', '2026-10-01T12:00:05Z', 'bytes_out', '3', sid('A')), 2, 'none')
    m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '4', sid('C')), 3, 'ack')
    const closed = m.drain((tags) => tags.includes('none'))
    expect(closed.map((s) => [s.key.split(':').at(-1), s.close, s.tags])).toEqual([
      ['B', 'shutdown', ['none']],
      ['A', 'shutdown', ['ack', 'none']],
    ])
    expect(m.open).toBe(1)
    expect(m.drain().map((s) => s.key.split(':').at(-1))).toEqual(['C'])
  })

  it('max_open_sessions: opening one too many closes the least recently active session early, billed and flagged', () => {
    const m = new SessionMerger<string>(opts({ max_open_sessions: 3 }))
    const sid = (id: string) => ({ dimensions: { session_id: id, session_event: 'start', region: 'eu' } })
    m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '10', sid('A')), 0, 'a1')
    m.push(ev('start', '2026-10-01T12:00:01Z', 'bytes_out', '20', sid('B')), 1, 'b1')
    m.push(ev('start', '2026-10-01T12:00:02Z', 'bytes_out', '30', sid('C')), 2, 'c1')
    // A is active again, so B is now the one without an event for longest.
    m.push(ev('interim', '2026-10-01T12:00:05Z', 'bytes_out', '15', { dimensions: { session_id: 'A', session_event: 'interim' } }), 3, 'a2')
    const res = m.push(ev('start', '2026-10-01T12:00:06Z', 'bytes_out', '40', sid('D')), 4, 'd1')
    expect(res.absorbed).toBe(true)
    expect(res.closed).toHaveLength(1)
    const b = res.closed[0]!
    expect(b.close).toBe('max_open_sessions')
    expect(b.tags).toEqual(['b1'])
    expect(byMetric(b.records).bytes_out!).toMatchObject({ event_id: 'session:fw-1:B:bytes_out', quantity: '20' })
    expect(byMetric(b.records).bytes_out!.dimensions).toEqual({ session_id: 'B', region: 'eu', session_close: 'max_open_sessions' })
    expect(m.open).toBe(3)
    expect(m.evicted).toBe(1)
    // Events of open sessions and a stop of an unknown session (closed at once) do not evict.
    expect(m.push(ev('interim', '2026-10-01T12:00:07Z', 'bytes_out', '35', { dimensions: { session_id: 'C', session_event: 'interim' } }), 5).closed).toEqual([])
    const stop = m.push(ev('stop', '2026-10-01T12:00:08Z', 'bytes_out', '9', { dimensions: { session_id: 'Z', session_event: 'stop' } }), 6)
    expect(stop.closed.map((s) => [s.close, s.key.endsWith('Z')])).toEqual([['stop', true]])
    expect(m.evicted).toBe(1)
    expect(m.drain().map((s) => s.key.split(':').at(-1)).sort()).toEqual(['A', 'C', 'D'])
  })

  it('a flood of starts without stops never holds more than max_open_sessions, and bills every session once', () => {
    const max = 100
    const m = new SessionMerger(opts({ max_open_sessions: max }))
    const billed = new Map<string, number>()
    const count = (closed: { key: string }[]) => closed.forEach((s) => billed.set(s.key, (billed.get(s.key) ?? 0) + 1))
    for (let i = 0; i < 10_000; i++) {
      count(m.push(ev('start', '2026-10-01T12:00:00Z', 'bytes_out', '1', { dimensions: { session_id: `f${i}`, session_event: 'start' } }), i).closed)
      expect(m.open).toBeLessThanOrEqual(max)
    }
    expect(m.evicted).toBe(10_000 - max)
    count(m.drain())
    expect(billed.size).toBe(10_000)
    expect([...billed.values()].every((n) => n === 1)).toBe(true)
  })

  it('idle closes follow the last event, not the opening order', () => {
    const m = new SessionMerger(opts({ idle_timeout_s: 10 }))
    const e = (id: string, kind: string) => ev(kind, '2026-10-01T12:00:00Z', 'bytes_out', '1', { dimensions: { session_id: id, session_event: kind } })
    m.push(e('A', 'start'), 0)
    m.push(e('B', 'start'), 1000)
    m.push(e('A', 'interim'), 2000)
    expect(m.nextDeadline()).toBe(11_000)
    expect(m.expire(11_000).map((s) => s.key.split(':').at(-1))).toEqual(['B'])
    expect(m.expire(12_000).map((s) => s.key.split(':').at(-1))).toEqual(['A'])
    // A caller clock stepping back does not make a fresh session look older than it is.
    m.push(e('C', 'start'), 20_000)
    m.push(e('D', 'start'), 15_000)
    expect(m.expire(29_999)).toEqual([])
    expect(m.expire(30_000).map((s) => s.key.split(':').at(-1))).toEqual(['C', 'D'])
  })

  it('delta total equals the sum of distinct events whatever the order and redeliveries (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 1000 }), (qs, seed) => {
        const m = new SessionMerger(opts({ interim: 'delta' }))
        const events = qs.map((q, i) => ev('interim', `2026-10-01T12:00:${String(i % 60).padStart(2, '0')}Z`, 'bytes_out', String(q)))
        const fed = [...events, ...events.filter((_, i) => (i + seed) % 3 === 0)] // redeliveries
        for (let i = fed.length - 1; i > 0; i--) {
          const j = (seed * 31 + i * 17) % (i + 1)
          ;[fed[i], fed[j]] = [fed[j]!, fed[i]!]
        }
        for (const e of fed) m.push(e, 0)
        const s = m.drain()[0]!
        expect(byMetric(s.records).bytes_out!.quantity).toBe(String(qs.reduce((a, b) => a + b, 0)))
      }),
    )
  })
})
