import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HorizonIndex } from './dedupe-horizon.js'

const HOUR = 3_600_000
const T0 = Date.parse('2026-11-01T00:00:00Z')

describe('HorizonIndex', () => {
  it('dedupes like one index inside the horizon: per source, across generations, with delete putting a key back', () => {
    const ix = new HorizonIndex(10 * HOUR)
    expect(ix.add('s', 'e-1', T0, T0)).toBe(true)
    expect(ix.add('s', 'e-1', T0, T0)).toBe(false)
    expect(ix.add('t', 'e-1', T0, T0)).toBe(true)
    // Accepted 8 hours later: another generation (5 hours wide), and the key in the first is still found.
    expect(ix.add('s', 'e-1', T0, T0 + 8 * HOUR)).toBe(false)
    expect(ix.add('s', 'e-2', T0, T0 + 8 * HOUR)).toBe(true)
    expect(ix.generationCount).toBe(2)
    // A key loaded from the store (placed by its event time) is found by an add in any generation, and vice versa.
    ix.load('s', 'e-3', T0 - 3 * HOUR)
    expect(ix.add('s', 'e-3', T0 - 3 * HOUR, T0 + 8 * HOUR)).toBe(false)
    ix.load('s', 'e-2', T0)
    expect(ix.size).toBe(4)
    expect(ix.delete('s', 'e-2')).toBe(true)
    expect(ix.has('s', 'e-2')).toBe(false)
    expect(ix.add('s', 'e-2', T0, T0 + 8 * HOUR)).toBe(true)
  })

  it('drops a generation a delete leaves empty: future-dated events accepted and then refused leave none behind', () => {
    const ix = new HorizonIndex(10 * HOUR)
    ix.add('s', 'now', T0, T0)
    for (let i = 0; i < 100; i++) {
      expect(ix.add('s', `future-${i}`, T0 + (i + 1) * 24 * HOUR, T0)).toBe(true)
      expect(ix.delete('s', `future-${i}`)).toBe(true)
    }
    expect(ix.generationCount).toBe(1)
    // Keys of a generation with others left stay; the index still works after the drops.
    expect(ix.add('s', 'f-a', T0 + 48 * HOUR, T0)).toBe(true)
    expect(ix.add('s', 'f-b', T0 + 48 * HOUR, T0)).toBe(true)
    ix.delete('s', 'f-a')
    expect([ix.generationCount, ix.has('s', 'f-b'), ix.add('s', 'now', T0, T0), ix.add('s', 'f-a', T0 + 48 * HOUR, T0)]).toEqual([2, true, false, true])
  })

  it('holds a key until max(event time, acceptance) is past the horizon, then drops it with its generation', () => {
    const ix = new HorizonIndex(10 * HOUR)
    // Accepted at T0 for an event of a month before: held for the horizon after its acceptance.
    ix.add('s', 'old-event', T0 - 30 * 24 * HOUR, T0)
    // Future-dated by a day: held for the horizon after its own time.
    ix.add('s', 'future', T0 + 24 * HOUR, T0)
    expect(ix.evict(T0 + 10 * HOUR)).toBe(0)
    expect(ix.has('s', 'old-event')).toBe(true)
    expect(ix.mayMissKeys).toBe(false)
    // Generations are 5 hours wide, counted from the epoch: one is past the horizon once now − 10 h reaches its end.
    const endOf = (ms: number) => (Math.floor(ms / (5 * HOUR)) + 1) * 5 * HOUR
    expect(endOf(T0) - T0).toBeLessThanOrEqual(5 * HOUR)
    expect(ix.evict(endOf(T0) + 10 * HOUR - 1)).toBe(0)
    expect(ix.evict(endOf(T0) + 10 * HOUR)).toBe(1)
    expect([ix.has('s', 'old-event'), ix.has('s', 'future'), ix.mayMissKeys]).toEqual([false, true, true])
    expect(ix.evict(endOf(T0 + 24 * HOUR) + 10 * HOUR - 1)).toBe(0)
    expect(ix.evict(endOf(T0 + 24 * HOUR) + 10 * HOUR)).toBe(1)
    expect([ix.size, ix.generationCount]).toEqual([0, 0])
  })

  it('calls an event late when it is before now − horizon, and only then', () => {
    const ix = new HorizonIndex(10 * HOUR)
    expect(ix.isLate(T0 - 10 * HOUR, T0)).toBe(false)
    expect(ix.isLate(T0 - 10 * HOUR - 1, T0)).toBe(true)
    expect(() => new HorizonIndex(1)).toThrow(/at least 2/)
    expect(() => new HorizonIndex(1.5 * HOUR + 0.5)).toThrow(/whole number/)
  })

  // The guarantee the rater builds on: whatever the order of adds, loads and evictions on a clock that moves
  // forward, (1) an event that is not late finds its original (same source, id and event time) if one was added or
  // loaded, and (2) memory is bounded: after evict(now), no key whose time is before now − 1.5 × horizon is held.
  it('never loses a key inside the horizon and holds none beyond 1.5 × the horizon (property)', () => {
    const H = 1000
    const op = fc.record({
      advance: fc.integer({ min: 0, max: 400 }),
      kind: fc.constantFrom('add', 'load', 'evict'),
      id: fc.integer({ min: 0, max: 30 }),
      // Event times from well before the clock to a little after it.
      offset: fc.integer({ min: -3000, max: 300 }),
    })
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const ix = new HorizonIndex(H)
        // What a plain index would hold: id → its event time and retention time (max of event time and acceptance).
        const model = new Map<string, { eventMs: number; keep: number }>()
        let now = 100_000
        for (const o of ops) {
          now += o.advance
          const key = `e-${o.id}`
          const eventMs = model.get(key)?.eventMs ?? now + o.offset
          if (o.kind === 'evict') {
            ix.evict(now)
            for (const [k, v] of model) {
              if (v.keep < now - 1.5 * H) expect(ix.has('s', k), `${k} kept ${v.keep} at ${now}`).toBe(false)
            }
          } else if (o.kind === 'load') {
            // The rater loads only keys inside the horizon, of committed events (the model's).
            if (model.has(key) && !ix.isLate(eventMs, now)) ix.load('s', key, eventMs)
          } else {
            const fresh = ix.add('s', key, eventMs, now)
            if (!ix.isLate(eventMs, now)) expect(fresh, `${key} at ${now}`).toBe(!model.has(key))
            if (fresh) model.set(key, { eventMs, keep: Math.max(eventMs, now) })
          }
        }
      }),
      { numRuns: 300 },
    )
  })
})
