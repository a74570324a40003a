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

  it('agrees with one Set of joined keys on any sequence of adds and deletes, sources interleaved', () => {
    const key = fc.tuple(fc.constantFrom('csv:a', 'mqtt:p', 'syslog:e', ''), fc.string({ maxLength: 40 }))
    const op = fc.tuple(fc.boolean(), key)
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const ix = new DedupeIndex()
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
    )
  })
})
