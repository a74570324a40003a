import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { chTime, chTimeMs, fromTsv, tsv } from './tsv.js'

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

describe('fromTsv', () => {
  it("reads ClickHouse's escapes, and a backslash before any other character as that character", () => {
    expect(fromTsv('plain')).toBe('plain')
    expect(fromTsv('a\\tb\\nc\\\\d')).toBe('a\tb\nc\\d')
    expect(fromTsv("\\b\\f\\r\\0\\a\\v\\'\\x41")).toBe("\b\f\r\0\x07\v'A")
    expect(fromTsv('ends in \\')).toBe('ends in \\')
  })

  it('is the inverse of tsv() for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        expect(fromTsv(tsv(s))).toBe(s)
      }),
    )
  })
})
