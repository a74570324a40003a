import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DedupeIndex } from './dedupe-index.js'

describe('DedupeIndex', () => {
  it('accepts a key once per source; the same event id in another source is another key', () => {
    const ix = new DedupeIndex()
    expect(ix.add('csv:a', 'e-1')).toBe(true)
    expect(ix.add('csv:a', 'e-1')).toBe(false)
    expect(ix.add('csv:b', 'e-1')).toBe(true)
    expect(ix.add('csv:a', 'e-2')).toBe(true)
    expect(ix.size).toBe(3)
    expect([ix.has('csv:a', 'e-1'), ix.has('csv:b', 'e-2'), ix.has('csv:c', 'e-1')]).toEqual([true, false, false])
  })

  it('a deleted key (an accepted event that became a reject) is accepted again', () => {
    const ix = new DedupeIndex()
    ix.add('s', 'x')
    expect(ix.delete('s', 'x')).toBe(true)
    expect(ix.delete('s', 'x')).toBe(false)
    expect(ix.size).toBe(0)
    expect(ix.add('s', 'x')).toBe(true)
  })

  it('numbered ids (a prefix and up to 9 digits) and every other id are keys of their own: leading zeros, 10 digits, bare numbers', () => {
    const ix = new DedupeIndex()
    const ids = ['e-1', 'e-01', 'e-001', 'e-10', 'e1', '1', '01', '0', '00', 'e-0', 'e-123456789', 'e-1234567890', 'e-0123456789', 'f-1', '-1', 'e-1x']
    for (const id of ids) expect(ix.add('s', id)).toBe(true)
    for (const id of ids) expect([id, ix.add('s', id), ix.has('s', id)]).toEqual([id, false, true])
    expect(ix.size).toBe(ids.length)
    expect(ix.has('s', 'e-2')).toBe(false)
    expect(ix.has('t', 'e-1')).toBe(false)
    expect(ix.delete('s', 'e-10')).toBe(true)
    expect([ix.has('s', 'e-1'), ix.has('s', 'e-10'), ix.has('s', 'e-01')]).toEqual([true, false, true])
    expect(ix.delete('s', 'g-1')).toBe(false)
  })

  it('ids whose digits end a long token (a UUID) and ids under prefixes past the limit are held as strings, found again', () => {
    const ix = new DedupeIndex(1)
    const uuid = 'a12b4869-0000-4000-a030-a12b486939'
    expect([ix.add('s', 'e-1'), ix.add('s', 'f-1'), ix.add('s', uuid)]).toEqual([true, true, true])
    expect([ix.add('s', 'e-1'), ix.add('s', 'f-1'), ix.add('s', uuid)]).toEqual([false, false, false])
    expect([ix.has('s', 'f-1'), ix.has('s', 'f-2'), ix.delete('s', 'f-1'), ix.has('s', 'f-1'), ix.has('s', 'e-1')]).toEqual([true, false, true, false, true])
  })

  it('numbers of one prefix agree with a Set of ids through a page turning from sorted array to bitmap (2,048 numbers) and across pages', () => {
    // One delete in ten, most numbers in page 0 (enough distinct ones to turn it into a bitmap), a few at a page edge and anywhere.
    const number = fc.oneof(
      { arbitrary: fc.integer({ min: 0, max: 3000 }), weight: 8 },
      { arbitrary: fc.integer({ min: 65_530, max: 65_545 }), weight: 1 },
      { arbitrary: fc.integer({ min: 0, max: 999_999_999 }), weight: 1 },
    )
    const op = fc.tuple(fc.integer({ min: 0, max: 9 }).map((k) => k === 0), number)
    fc.assert(
      fc.property(fc.array(op, { minLength: 4000, maxLength: 6000 }), (ops) => {
        const ix = new DedupeIndex()
        const model = new Set<string>()
        for (const [del, n] of ops) {
          const id = `e-${n}`
          if (del) expect(ix.delete('s', id)).toBe(model.delete(id))
          else {
            const fresh = !model.has(id)
            model.add(id)
            expect(ix.add('s', id)).toBe(fresh)
          }
        }
        expect(ix.size).toBe(model.size)
        let disagree = 0
        for (let n = 0; n <= 3000; n++) if (ix.has('s', `e-${n}`) !== model.has(`e-${n}`)) disagree++
        expect(disagree).toBe(0)
      }),
      { numRuns: 15 },
    )
  })

  it('a dense run of row numbers: every one held once, found again, deletable', () => {
    const ix = new DedupeIndex()
    let fresh = 0
    for (let n = 0; n < 140_000; n++) if (ix.add('csv:x', `e-${n}`)) fresh++
    let again = 0
    for (let n = 0; n < 140_000; n += 997) if (ix.add('csv:x', `e-${n}`)) again++
    expect([fresh, again]).toEqual([140_000, 0])
    expect([ix.size, ix.has('csv:x', 'e-139999'), ix.has('csv:x', 'e-140000')]).toEqual([140_000, true, false])
    expect([ix.delete('csv:x', 'e-70000'), ix.has('csv:x', 'e-70000'), ix.delete('csv:x', 'e-70000'), ix.add('csv:x', 'e-70000')]).toEqual([true, false, false, true])
  })

  it('agrees with one Set of joined keys on any sequence of adds and deletes, sources interleaved', () => {
    // Numbered ids with a few prefixes (0 and 9 to hit leading zeros and the 9/10-digit edge), and any strings.
    const numbered = fc
      .tuple(fc.constantFrom('', 'e-', 'fw-0001-', 'e-1'), fc.array(fc.constantFrom('0', '1', '9'), { minLength: 1, maxLength: 11 }))
      .map(([p, d]) => p + d.join(''))
    // A few UUIDs, so they repeat: lowercase (held as 128 bits) and the same in uppercase (a string, another id).
    const lower = ['a12b4869-0000-4000-a030-a12b486939f1', '00000000-0000-0000-0000-000000000000', '018c0000-0001-7000-8000-000000000001', 'ffffffff-ffff-4fff-bfff-ffffffffffff']
    const uuid = fc.constantFrom(...lower, ...lower.map((u) => u.toUpperCase()))
    const key = fc.tuple(fc.constantFrom('csv:a', 'mqtt:p', 'syslog:e', ''), fc.oneof(numbered, uuid, fc.string({ maxLength: 40 })))
    const op = fc.tuple(fc.boolean(), key)
    // Two prefixes per source at most, so ids under a third prefix are held as strings.
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.constantFrom(2, 4096), (ops, maxPrefixes) => {
        const ix = new DedupeIndex(maxPrefixes)
        const model = new Set<string>()
        for (const [del, [source, id]] of ops) {
          const joined = JSON.stringify([source, id])
          if (del) expect(ix.delete(source, id)).toBe(model.delete(joined))
          else {
            const fresh = !model.has(joined)
            model.add(joined)
            expect(ix.add(source, id)).toBe(fresh)
          }
          expect(ix.size).toBe(model.size)
        }
      }),
      { numRuns: 500 },
    )
  })
})
