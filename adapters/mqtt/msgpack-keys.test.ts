import fc from 'fast-check'
import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { scanMsgpackKeys } from './msgpack-keys.js'

/** Nesting of maps and arrays as the scan counts it (an empty one counts as a level). */
function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf))
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) return 1 + Math.max(0, ...Object.values(v).map(depthOf))
  return 0
}

describe('scanMsgpackKeys', () => {
  it('property: whatever msgpackr packs (maps, arrays, strings of every length, numbers, binary, big integers) has no key twice, at its depth', () => {
    const leaf = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.integer(),
      fc.double({ noNaN: true }),
      fc.boolean(),
      fc.constant(null),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
      fc.uint8Array({ maxLength: 300 }),
    )
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 20 }), fc.dictionary(fc.string({ maxLength: 20 }), tie('v'), { maxKeys: 20 })),
    })).v
    fc.assert(
      fc.property(value, (v) => {
        const scan = scanMsgpackKeys(pack(v))
        expect(scan.twice).toEqual([])
        expect(scan.depth).toBe(depthOf(v))
      }),
      { numRuns: 500 },
    )
  })

  it('names a key given twice with its path, in maps inside arrays inside maps', () => {
    const parts = [Buffer.from([0x81]), pack('data'), Buffer.from([0x92]), pack({ a: 1 }), Buffer.from([0x82]), pack('a'), pack(1), pack('a'), pack(2)]
    expect(scanMsgpackKeys(Buffer.concat(parts))).toEqual({ twice: [{ path: ['data', 1, 'a'], key: 'a' }], depth: 3 })
  })

  it('a number key and its text are one key, as in the object the decoder builds', () => {
    const parts = [Buffer.from([0x82]), pack(1), pack('x'), pack('1'), pack('y')]
    expect(scanMsgpackKeys(Buffer.concat(parts)).twice).toEqual([{ path: ['1'], key: '1' }])
  })

  it('stops past maxDepth', () => {
    const deep = pack(JSON.parse('['.repeat(100) + ']'.repeat(100)))
    expect(scanMsgpackKeys(deep, 64).depth).toBe(65)
  })
})
