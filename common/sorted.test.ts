import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { lowerBound } from './sorted.js'

describe('lowerBound', () => {
  it('finds the first index not below the value in the first `end` elements, for numbers and strings', () => {
    expect(lowerBound([1, 3, 3, 7], 4, 3)).toBe(1)
    expect(lowerBound([1, 3, 3, 7], 4, 8)).toBe(4)
    expect(lowerBound([1, 3, 3, 7], 2, 7)).toBe(2)
    expect(lowerBound(new Uint16Array([2, 4, 9, 0]), 3, 5)).toBe(2)
    expect(lowerBound(['eu', 'us'], 2, 'eu-west')).toBe(1)
    expect(lowerBound([], 0, 1)).toBe(0)
  })

  it('agrees with a linear scan on any sorted array', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 })), fc.integer({ min: -1, max: 51 }), (xs, v) => {
        const a = [...xs].sort((x, y) => x - y)
        const linear = a.findIndex((x) => x >= v)
        expect(lowerBound(a, a.length, v)).toBe(linear === -1 ? a.length : linear)
      }),
    )
  })
})
