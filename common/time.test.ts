import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { utcMillis } from '../rating-core/validate.js'
import { daysInMonth, isoUtc, parseIsoTime } from './time.js'

describe('parseIsoTime', () => {
  it('takes years 0000–0099 as written (Date.UTC alone reads them as 1900–1999)', () => {
    // Date.parse reads the ISO form's year as written: an independent answer.
    expect(parseIsoTime('0026-10-06T00:00:00Z')).toBe(Date.parse('0026-10-06T00:00:00Z'))
    expect(isoUtc(parseIsoTime('0026-10-06T00:00:00Z')!)).toBe('0026-10-06T00:00:00.000Z')
    expect(parseIsoTime('0000-01-01T00:00:00Z')).toBe(-62_167_219_200_000)
    expect(parseIsoTime('0099-12-31T23:59:59.999+01:00')).toBe(parseIsoTime('0099-12-31T22:59:59.999Z'))
    expect(parseIsoTime('0000-02-29T00:00:00Z')).toBeDefined() // year 0 is a leap year (divisible by 400), 1900 is not
    expect(daysInMonth(0, 2)).toBe(29)
    expect(daysInMonth(1900, 2)).toBe(28)
  })

  it('the fast path of event times has no answer where parseIsoTime has none: a year that is not four digits', () => {
    for (const s of ['2x26-10-06T00:00:00Z', '-026-10-06T00:00:00Z', '+026-10-06T00:00:00Z', ' 026-10-06T00:00:00Z', '20260-10-06T00:00:00Z']) {
      expect([s, utcMillis(s), parseIsoTime(s)]).toEqual([s, undefined, undefined])
    }
  })

  it("agrees with the fast path of event times (utcMillis) for every instant of years 0000–9999", () => {
    fc.assert(
      fc.property(fc.integer({ min: -62_167_219_200_000, max: 253_402_300_799_999 }), fc.boolean(), (ms, withMs) => {
        const d = new Date(ms)
        const iso = `${String(d.getUTCFullYear()).padStart(4, '0')}-${String(d.getUTCMonth() + 1).padStart(2, '0')}-${String(d.getUTCDate()).padStart(2, '0')}T${d.toISOString().slice(-13, withMs ? -1 : -5)}Z`
        const expected = withMs ? ms : ms - (((ms % 1000) + 1000) % 1000)
        expect(parseIsoTime(iso)).toBe(expected)
        expect(utcMillis(iso)).toBe(expected)
      }),
      { numRuns: 5000 },
    )
  })
})
