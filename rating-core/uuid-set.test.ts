import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { UuidSet } from './uuid-set.js'

const hex = (n: number, bits: number) => n.toString(16).padStart(bits / 4, '0')
/** A canonical lowercase UUID from four 32-bit words. */
const uuidOf = (w: number[]) => {
  const h = w.map((x) => hex(x >>> 0, 32)).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

describe('UuidSet', () => {
  it('takes canonical lowercase UUIDs only: other forms come back null, not taken', () => {
    const set = new UuidSet()
    expect(set.add('a12b4869-0000-4000-a030-a12b486939f1')).toBe(true)
    expect(set.add('a12b4869-0000-4000-a030-a12b486939f1')).toBe(false)
    expect(set.add('00000000-0000-0000-0000-000000000000')).toBe(true)
    for (const other of ['A12B4869-0000-4000-A030-A12B486939F1', '{a12b4869-0000-4000-a030-a12b486939f1}', 'a12b486900004000a030a12b486939f1', 'a12b4869-0000-4000-a030-a12b486939fg', 'a12b4869_0000-4000-a030-a12b486939f1', 'a12b4869-0000-4000-a0300a12b486939f1', 'e-1']) {
      expect([other, set.add(other), set.has(other), set.delete(other)]).toEqual([other, null, null, null])
    }
    expect(set.size).toBe(2)
    expect([set.has('00000000-0000-0000-0000-000000000000'), set.has('00000000-0000-0000-0000-000000000001')]).toEqual([true, false])
  })

  it('agrees with a Set of the texts over adds and deletes, through growth and tombstones, random and sequential UUIDs', () => {
    const word = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffffffff }))
    const uuid = fc.array(word, { minLength: 4, maxLength: 4 }).map(uuidOf)
    const op = fc.tuple(fc.integer({ min: 0, max: 3 }).map((k) => k === 0), uuid)
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const set = new UuidSet()
        const model = new Set<string>()
        for (const [del, id] of ops) {
          if (del) expect(set.delete(id)).toBe(model.delete(id))
          else {
            const fresh = !model.has(id)
            model.add(id)
            expect(set.add(id)).toBe(fresh)
          }
        }
        expect(set.size).toBe(model.size)
        for (const [, id] of ops) expect(set.has(id)).toBe(model.has(id))
      }),
      { numRuns: 200 },
    )
  })

  it('holds 100,000 time-ordered UUIDs once each, with deletes and re-adds', () => {
    const set = new UuidSet()
    const id = (i: number) => uuidOf([0x018c_0000 + (i >>> 12), ((i & 0xfff) << 16) | 0x7000, 0x8000_0000, i])
    let fresh = 0
    for (let i = 0; i < 100_000; i++) if (set.add(id(i))) fresh++
    let again = 0
    for (let i = 0; i < 100_000; i += 101) if (set.add(id(i))) again++
    let gone = 0
    for (let i = 0; i < 100_000; i += 3) if (set.delete(id(i))) gone++
    let held = 0
    for (let i = 0; i < 100_000; i++) if (set.has(id(i))) held++
    expect([fresh, again, set.size, held]).toEqual([100_000, 0, 100_000 - gone, 100_000 - gone])
  })
})
