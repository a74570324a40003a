import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { chTime, chTimeMs } from './tsv.js'

describe('chTime and chTimeMs', () => {
  it('are each other’s inverse for every instant of years 1900–2299, to the millisecond', () => {
    expect(chTime('2026-10-01T00:00:00.000Z')).toBe('2026-10-01 00:00:00.000')
    expect(chTimeMs('2026-10-01 00:00:00.000')).toBe(Date.UTC(2026, 9, 1))
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1900, 0, 1), max: Date.UTC(2299, 11, 31, 23, 59, 59, 999) }), (ms) => {
        expect(chTimeMs(chTime(new Date(ms).toISOString()))).toBe(ms)
      }),
    )
  })
})
