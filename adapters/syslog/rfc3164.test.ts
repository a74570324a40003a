import { describe, expect, it } from 'vitest'
import { parseRfc3164, resolve3164Time } from './rfc3164.js'

const now = new Date('2026-11-22T10:00:00Z')

describe('parseRfc3164', () => {
  it('parses timestamp, hostname, tag with pid, and message', () => {
    expect(parseRfc3164('<13>Oct  1 12:00:01 fw1 sshd[42]: metric=m quantity=1', now, '+00:00')).toEqual({
      ok: true, message: { pri: 13, timestamp: '2026-10-01T12:00:01Z', hostname: 'fw1', tag: 'sshd', msg: 'metric=m quantity=1' },
    })
  })
  it('accepts a header without timestamp (FortiGate) or without hostname', () => {
    expect(parseRfc3164('<189>date=2026-10-01 time=12:00:01', now, 'Z')).toEqual({ ok: true, message: { pri: 189, msg: 'date=2026-10-01 time=12:00:01' } })
    expect(parseRfc3164('<13>Oct 11 12:00:01 metric=m quantity=1', now, 'Z')).toMatchObject({ ok: true, message: { msg: 'metric=m quantity=1', timestamp: '2026-10-11T12:00:01Z' } })
  })
  it('rejects impossible dates and times', () => {
    expect(parseRfc3164('<13>Feb 30 12:00:01 h t: x', now, 'Z')).toEqual({ ok: false, error: 'bad RFC 3164 date Feb 30' })
    expect(parseRfc3164('<13>Feb 10 25:00:01 h t: x', now, 'Z')).toEqual({ ok: false, error: 'bad RFC 3164 time 25:00:01' })
  })
})

describe('resolve3164Time (year rule)', () => {
  it('uses the current UTC year, or the previous one when that is more than a day ahead', () => {
    const jan1 = new Date('2027-01-01T00:30:00Z')
    expect(resolve3164Time(11, 31, 23, 59, 0, 'Z', jan1)).toBe('2026-12-31T23:59:00Z')
    expect(resolve3164Time(0, 2, 0, 0, 0, 'Z', jan1)).toBe('2027-01-02T00:00:00Z') // 23.5 h ahead: clock skew, same year
    expect(resolve3164Time(0, 2, 0, 31, 0, 'Z', jan1)).toBe('2026-01-02T00:31:00Z') // more than a day ahead
  })
  it('takes the next year when January 1st has begun in the zone (east of UTC) or on a fast clock before the UTC year ends', () => {
    // These were dated a year early, in a period long invoiced.
    expect(resolve3164Time(0, 1, 0, 30, 0, '+02:00', new Date('2026-12-31T22:31:00Z'))).toBe('2027-01-01T00:30:00+02:00')
    expect(resolve3164Time(0, 1, 0, 0, 2, 'Z', new Date('2026-12-31T23:59:59Z'))).toBe('2027-01-01T00:00:02Z')
    expect(resolve3164Time(0, 1, 8, 0, 0, '+09:00', new Date('2026-12-31T23:00:00Z'))).toBe('2027-01-01T08:00:00+09:00')
    // West of UTC, December 31st local is still this year when UTC has reached January.
    expect(resolve3164Time(11, 31, 20, 0, 0, '-05:00', new Date('2027-01-01T01:00:00Z'))).toBe('2026-12-31T20:00:00-05:00')
    // A mid-year date on December 31st is this year's, not next year's (that would be months ahead).
    expect(resolve3164Time(5, 15, 12, 0, 0, 'Z', new Date('2026-12-31T23:00:00Z'))).toBe('2026-06-15T12:00:00Z')
  })
  it('applies the configured offset and keeps Feb 29 only in leap years', () => {
    expect(resolve3164Time(9, 1, 12, 0, 1, '+02:00', now)).toBe('2026-10-01T12:00:01+02:00')
    expect(resolve3164Time(1, 29, 0, 0, 0, 'Z', new Date('2028-03-01T00:00:00Z'))).toBe('2028-02-29T00:00:00Z')
    expect(resolve3164Time(1, 29, 0, 0, 0, 'Z', now)).toBeUndefined()
  })
})
