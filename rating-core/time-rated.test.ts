import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Schedule, TimeRatedCharge } from '../catalog/types.js'
import { parseDec, toNano } from './decimal.js'
import { zoneOffsetMs } from '../common/time.js'
import { rateTimedEvent, splitSession, timedEventNano, zoneOffset } from './time-rated.js'

// CONTRACT §3 schedules.
const schedules: Schedule[] = [
  { id: 'day', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '18:00' },
  { id: 'evening', weekdays: [1, 2, 3, 4, 5], from: '18:00', to: '24:00' },
  { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
]
// CONTRACT §3.3 day rate: connect 1, a 60-second first block, then per second; plus evening and weekend rates.
const voice: TimeRatedCharge = {
  id: 'voice',
  kind: 'usage',
  meter: 'calls',
  model: 'time_rated',
  rates: [
    {
      schedule: 'day',
      connect_fee: '1',
      steps: [
        { from: '0', unit_price: '1', per: '1', increment: '60' },
        { from: '60', unit_price: '1', per: '1', increment: '1' },
      ],
    },
    { schedule: 'evening', connect_fee: '0.5', steps: [{ from: '0', unit_price: '0.6', per: '60', increment: '1' }] },
    { schedule: 'weekend', steps: [{ from: '0', unit_price: '0.3', per: '60', increment: '60' }] },
  ],
}
const TZ = 'Europe/Berlin'

const cases: { name: string; charge?: TimeRatedCharge; start: string; seconds: string; expect: string }[] = [
  // Thursday 2026-10-01, Berlin is UTC+2 (CEST).
  { name: 'CONTRACT §3.3: 61 s in the day = connect 1 + 60-s block 60 + 1 s = 62', start: '2026-10-01T08:00:00Z', seconds: '61', expect: '62' },
  { name: '1 s bills the whole first 60-s block', start: '2026-10-01T08:00:00Z', seconds: '1', expect: '61' },
  { name: 'exactly 60 s', start: '2026-10-01T08:00:00Z', seconds: '60', expect: '61' },
  { name: 'fractional seconds round up to a whole increment', start: '2026-10-01T08:00:00Z', seconds: '60.2', expect: '62' },
  { name: '0 s never connected: free', start: '2026-10-01T08:00:00Z', seconds: '0', expect: '0' },
  { name: 'evening: connect 0.5 + 90 s at 0.6/min', start: '2026-10-01T17:00:00Z', seconds: '90', expect: '1.4' },
  {
    // 17:59:30 local; the day part is 30 s but its first block is 60 s, billed by the day rate;
    // billing resumes at 60 s elapsed (18:00:30 local) under the evening rate: 60 s × 0.01.
    name: 'day → evening at 18:00: connect by day rate, the straddling block by day, the rest by evening',
    start: '2026-10-01T15:59:30Z',
    seconds: '120',
    expect: '61.6',
  },
  {
    // Friday 2026-10-02 23:59 local: 60 s evening (0.5 + 0.6), then Saturday: 120 s = 2 blocks × 0.3.
    name: 'Friday evening → Saturday weekend at midnight',
    start: '2026-10-02T21:59:00Z',
    seconds: '180',
    expect: '1.7',
  },
  {
    // Saturday 23:00 → Sunday 01:00 local: one weekend part (not split at midnight), 7200 s = 120 blocks.
    name: 'Saturday → Sunday stays one weekend part',
    start: '2026-10-03T21:00:00Z',
    seconds: '7200',
    expect: '36',
  },
  { name: 'max_cost_per_event with strategy free caps the session', charge: { ...voice, max_cost_per_event: '10', max_cost_strategy: 'free' }, start: '2026-10-01T08:00:00Z', seconds: '600', expect: '10' },
  { name: 'below the cap is unchanged', charge: { ...voice, max_cost_per_event: '100', max_cost_strategy: 'free' }, start: '2026-10-01T08:00:00Z', seconds: '61', expect: '62' },
]

describe('rateTimedEvent', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      // The rating path (no lines: whole-millisecond arithmetic when the charge allows it) prices it the same.
      const charge = tc.charge ?? voice
      expect(timedEventNano(charge, schedules, Date.parse(tc.start), parseDec(tc.seconds), TZ, null)).toBe(toNano(parseDec(tc.expect)))
      expect(rateTimedEvent(tc.charge ?? voice, schedules, tc.start, tc.seconds, TZ).amount).toBe(tc.expect)
    })
  }

  it('lines add up to the amount and name the rate of each part', () => {
    const r = rateTimedEvent(voice, schedules, '2026-10-01T15:59:30Z', '120', TZ)
    expect(r.lines.map((l) => l.description.split(':')[0])).toEqual(['connect fee (day)', 'day', 'evening'])
    const nano = r.lines.reduce((s, l) => s + parseDec(l.amount).i * 10n ** BigInt(9 - parseDec(l.amount).e), 0n)
    expect(nano).toBe(61_600_000_000n)
  })

  describe('published examples', () => {
    // CGRateS RT_20CNT (cgrates/cgrates docs/readthedocs/tariffPlanManagement.rst, "6.3 Calculate Cost"):
    // ConnectFee 0.4; 0.2 per 60 s in 60 s increments from 0 s, 0.1 per 60 s in 30 s increments from 60 s;
    // rounding *up to 4 decimals. A GroupIntervalStart counts from the start of the call, as `from` does here.
    const cgratesSchedules: Schedule[] = [{ id: 'any', weekdays: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '24:00' }]
    const rt20cnt: TimeRatedCharge = {
      id: 'rt20cnt',
      kind: 'usage',
      meter: 'calls',
      model: 'time_rated',
      rates: [
        {
          schedule: 'any',
          connect_fee: '0.4',
          steps: [
            { from: '0', unit_price: '0.2', per: '60', increment: '60' },
            { from: '60', unit_price: '0.1', per: '60', increment: '30' },
          ],
        },
      ],
      rounding: { decimals: 4, mode: 'up' },
    }
    it('CGRateS: 1m25s bills Usage 90 s, Cost 0.25 + ConnectFee 0.4 = 0.65', () => {
      const r = rateTimedEvent(rt20cnt, cgratesSchedules, '2014-08-04T13:00:00Z', '85', 'UTC')
      expect(r.amount).toBe('0.65')
      expect(r.lines.map((l) => [l.quantity, l.amount])).toEqual([
        ['1', '0.4'],
        ['60', '0.2'],
        ['30', '0.05'],
      ])
    })
    it('CGRateS: a 1-second call costs the connect fee and the first 60 s block, 0.6 (general_tests TestBalanceTimings: balance 10 → 9.4)', () => {
      expect(rateTimedEvent(rt20cnt, cgratesSchedules, '2024-08-04T15:00:07Z', '1', 'UTC').amount).toBe('0.6')
    })

    // MagnusBilling wiki, "Call Price Calculation" (github.com/magnussolution/magnusbilling/wiki/EN--price_calculation):
    // purchase price 0.05 per minute, initial block 30 s, increment 6 s. MagnusBilling rounds the whole duration
    // up to the increment, here the seconds after the first block are; equal because 30 is a multiple of 6.
    const magnus: TimeRatedCharge = {
      id: 'magnus',
      kind: 'usage',
      meter: 'calls',
      model: 'time_rated',
      rates: [
        {
          schedule: 'any',
          steps: [
            { from: '0', unit_price: '0.05', per: '60', increment: '30' },
            { from: '30', unit_price: '0.05', per: '60', increment: '6' },
          ],
        },
      ],
    }
    it('MagnusBilling: 45 s → 48 s billed → (0.05 / 60) × 48 = 0.04', () => {
      expect(rateTimedEvent(magnus, cgratesSchedules, '2026-10-01T08:00:00Z', '45', 'UTC').amount).toBe('0.04')
    })
    it('MagnusBilling: a call shorter than the initial block bills the block: (0.05 / 60) × 30 = 0.025', () => {
      expect(rateTimedEvent(magnus, cgratesSchedules, '2026-10-01T08:00:00Z', '10', 'UTC').amount).toBe('0.025')
    })
  })

  describe('rounding', () => {
    const perMinute: TimeRatedCharge = { ...voice, rates: [{ schedule: 'day', steps: [{ from: '0', unit_price: '1', per: '60', increment: '1' }] }, voice.rates[1]!, voice.rates[2]!] }
    // 7 s at 1 per 60 s = 0.11666…
    it('up', () => expect(rateTimedEvent({ ...perMinute, rounding: { decimals: 2, mode: 'up' } }, schedules, '2026-10-01T08:00:00Z', '7', TZ).amount).toBe('0.12'))
    it('down', () => expect(rateTimedEvent({ ...perMinute, rounding: { decimals: 2, mode: 'down' } }, schedules, '2026-10-01T08:00:00Z', '7', TZ).amount).toBe('0.11'))
    it('half_even', () => expect(rateTimedEvent({ ...perMinute, rounding: { decimals: 2, mode: 'half_even' } }, schedules, '2026-10-01T08:00:00Z', '7', TZ).amount).toBe('0.12'))
    it('half_even on an exact half goes to even', () => {
      const c = { ...perMinute, rates: [{ schedule: 'day', steps: [{ from: '0', unit_price: '0.5', per: '1', increment: '1' }] }, voice.rates[1]!, voice.rates[2]!], rounding: { decimals: 0, mode: 'half_even' as const } }
      expect(rateTimedEvent(c, schedules, '2026-10-01T08:00:00Z', '5', TZ).amount).toBe('2')
      expect(rateTimedEvent(c, schedules, '2026-10-01T08:00:00Z', '7', TZ).amount).toBe('4')
    })
    it('no rounding keeps 9 decimals, half-even', () => expect(rateTimedEvent(perMinute, schedules, '2026-10-01T08:00:00Z', '7', TZ).amount).toBe('0.116666667'))
    it('the cap applies after rounding', () => {
      const c = { ...perMinute, rounding: { decimals: 0, mode: 'up' as const }, max_cost_per_event: '0.5', max_cost_strategy: 'free' as const }
      expect(rateTimedEvent(c, schedules, '2026-10-01T08:00:00Z', '7', TZ).amount).toBe('0.5')
    })
  })

  describe('DST in Europe/Berlin', () => {
    // Sunday schedules cut at 02:30 local, inside the hour that is skipped in spring and repeated in autumn.
    const dstSchedules: Schedule[] = [
      { id: 'early', weekdays: [7], from: '00:00', to: '02:30' },
      { id: 'late', weekdays: [7], from: '02:30', to: '24:00' },
      { id: 'rest', weekdays: [1, 2, 3, 4, 5, 6], from: '00:00', to: '24:00' },
    ]
    const perSecond = (schedule: string, price: string) => ({ schedule, steps: [{ from: '0', unit_price: price, per: '1', increment: '1' }] })
    const dst: TimeRatedCharge = { id: 'dst', kind: 'usage', meter: 'm', model: 'time_rated', rates: [perSecond('early', '1'), perSecond('late', '2'), perSecond('rest', '10')] }

    it('offsets agree with the zone database at any instant, asked in any order (spans cached per zone)', () => {
      const zones = ['Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kolkata', 'UTC', 'America/Sao_Paulo', 'Antarctica/Casey', 'America/St_Johns']
      const from = Date.parse('2010-01-01T00:00:00Z')
      const to = Date.parse('2032-01-01T00:00:00Z')
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.constantFrom(...zones), fc.integer({ min: from, max: to })), { maxLength: 30 }), (asks) => {
          for (const [tz, ms] of asks) expect([tz, ms, zoneOffset(tz, ms)]).toEqual([tz, ms, zoneOffsetMs(ms, tz)])
        }),
        { numRuns: 200 },
      )
    })

    it('a session running past the end of a cached span (366 days in UTC, its span cached from 300 days before) is priced in full', () => {
      const always: Schedule[] = [{ id: 'all', weekdays: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '24:00' }]
      const flat: TimeRatedCharge = { id: 'flat', kind: 'usage', meter: 'm', model: 'time_rated', rates: [{ schedule: 'all', steps: [{ from: '0', unit_price: '0.01', per: '1', increment: '1' }] }] }
      const start = Date.parse('2031-01-01T00:00:00Z')
      zoneOffset('UTC', start - 300 * 86_400_000)
      const seconds = 366 * 86_400
      expect(rateTimedEvent(flat, always, '2031-01-01T00:00:00Z', String(seconds), 'UTC').amount).toBe(String(seconds / 100))
      expect(timedEventNano(flat, always, start, parseDec(String(seconds)), 'UTC', null)).toBe(BigInt(seconds) * 10_000_000n)
    })

    it('an 80-day session (more than a hundred parts: day, evening, weekend) costs the same in the ms path as in the exact one, twice over', () => {
      const start = Date.parse('2026-10-01T08:00:00Z')
      const dur = parseDec(String(80 * 86_400 + 0.5))
      const exact = toNano(parseDec(rateTimedEvent(voice, schedules, '2026-10-01T08:00:00Z', String(80 * 86_400 + 0.5), TZ).amount))
      expect(splitSession(voice, schedules, start, dur, TZ).length).toBeGreaterThan(100)
      expect(timedEventNano(voice, schedules, start, dur, TZ, null)).toBe(exact)
      // Again after a short session reused the parts buffer.
      timedEventNano(voice, schedules, start, parseDec('30'), TZ, null)
      expect(timedEventNano(voice, schedules, start, dur, TZ, null)).toBe(exact)
    })

    it('sessions either side of the longest one JS integers of ms could price (4,503,599,627 s) are refused at once, as any above 366 days', () => {
      const always: Schedule[] = [{ id: 'all', weekdays: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '24:00' }]
      const flat: TimeRatedCharge = { id: 'flat', kind: 'usage', meter: 'm', model: 'time_rated', rates: [{ schedule: 'all', steps: [{ from: '0', unit_price: '0.01', per: '1', increment: '1' }] }] }
      for (const seconds of [4_503_599_627n, 4_503_599_628n, 4_503_599_627_001n]) {
        const dur = seconds > 10n ** 12n ? { i: seconds, e: 3 } : { i: seconds, e: 0 }
        expect(() => timedEventNano(flat, always, Date.parse('1970-01-01T00:00:00Z'), dur, 'UTC', null)).toThrow(/at most 31622400 seconds/)
      }
    })

    it('offsets change at the second a zone changes them, quarter hour or not (Casey 16:01Z, St Johns hh:31, Monrovia 00:44:30Z)', () => {
      // Cached per quarter hour from its start, these minutes were read in the old offset: a session at 16:05Z in
      // Antarctica/Casey on 2022-10-01 (03:05 +11) was priced by a 00:05 schedule.
      const cases: Array<[string, string, number]> = [
        ['Antarctica/Casey', '2022-10-01T16:00:59Z', 8 * 60],
        ['Antarctica/Casey', '2022-10-01T16:01:00Z', 11 * 60],
        ['Antarctica/Casey', '2022-10-01T16:05:00Z', 11 * 60],
        ['America/St_Johns', '2011-03-13T03:30:59Z', -210],
        ['America/St_Johns', '2011-03-13T03:31:00Z', -150],
        ['Africa/Monrovia', '1972-01-07T00:44:29.999Z', -44.5],
        ['Africa/Monrovia', '1972-01-07T00:44:30Z', 0],
      ]
      for (const [tz, at, minutes] of cases) {
        expect([tz, at, zoneOffset(tz, Date.parse(at)) / 60_000]).toEqual([tz, at, minutes])
        expect([tz, at, zoneOffsetMs(Date.parse(at), tz) / 60_000]).toEqual([tz, at, minutes])
      }
      const night: Schedule[] = [
        { id: 'a', weekdays: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '02:30' },
        { id: 'b', weekdays: [1, 2, 3, 4, 5, 6, 7], from: '02:30', to: '24:00' },
      ]
      const perMinute = (schedule: string, price: string) => ({ schedule, steps: [{ from: '0', unit_price: price, per: '60', increment: '1' }] })
      const calls: TimeRatedCharge = { id: 'calls', kind: 'usage', meter: 'm', model: 'time_rated', rates: [perMinute('a', '1'), perMinute('b', '100')] }
      expect(rateTimedEvent(calls, night, '2022-10-01T16:05:00Z', '60', 'Antarctica/Casey').amount).toBe('100')
      // A minute across the change: 16:00:30–16:01:00 is 00:00:30 +08 (a), then 03:01 +11 (b).
      expect(rateTimedEvent(calls, night, '2022-10-01T16:00:30Z', '60', 'Antarctica/Casey').amount).toBe('50.5')
    })

    it('offsets: CET +1 before 2026-03-29T01:00Z, CEST +2 after; back to +1 at 2026-10-25T01:00Z', () => {
      expect(zoneOffset(TZ, Date.parse('2026-03-29T00:59:59Z'))).toBe(3_600_000)
      expect(zoneOffset(TZ, Date.parse('2026-03-29T01:00:00Z'))).toBe(7_200_000)
      expect(zoneOffset(TZ, Date.parse('2026-10-25T00:59:59Z'))).toBe(7_200_000)
      expect(zoneOffset(TZ, Date.parse('2026-10-25T01:00:00Z'))).toBe(3_600_000)
    })

    it('spring forward 2026-03-29: 01:59 CET + 120 s = 60 s early (until 02:00 = 03:00 CEST) + 60 s late', () => {
      // 00:59Z = 01:59 CET; at 01:00Z the clock jumps to 03:00 CEST, past the 02:30 cut.
      expect(rateTimedEvent(dst, dstSchedules, '2026-03-29T00:59:00Z', '120', TZ).amount).toBe('180')
    })

    it('spring forward: a session over the gap bills real seconds, not wall-clock minutes', () => {
      // 00:00 CET (23:00Z Sat) to 04:00 CEST = 3 real hours: 02:00 CET..02:30 never exists.
      // early: 00:00–02:00 CET = 7200 s × 1; late: 03:00–04:00 CEST = 3600 s × 2.
      expect(rateTimedEvent(dst, dstSchedules, '2026-03-28T23:00:00Z', '10800', TZ).amount).toBe('14400')
    })

    it('fall back 2026-10-25: the repeated 02:00–03:00 hour is priced by its wall-clock time each time', () => {
      // 00:29Z = 02:29 CEST. 60 s early (to 02:30 CEST), 1800 s late (to 03:00 CEST = 01:00Z),
      // then the clock reads 02:00 CET again: 1740 s early (to 02:29 CET).
      const parts = splitSession(dst, dstSchedules, Date.parse('2026-10-25T00:29:00Z'), parseDec('3600'), TZ)
      expect(parts.map((p) => [p.rate.schedule, p.from.i.toString(), p.to.i.toString(), p.to.e])).toEqual([
        ['early', '0', '60000', 3],
        ['late', '60000', '1860000', 3],
        ['early', '1860000', '3600', 0],
      ])
      expect(rateTimedEvent(dst, dstSchedules, '2026-10-25T00:29:00Z', '3600', TZ).amount).toBe('5400')
    })

    it('fall back: a Saturday-night session crossing the repeated hour lasts its real seconds', () => {
      // Sat 23:00 CEST (21:00Z) for 5 real hours: 3600 s rest, then Sunday 00:00–02:30 CEST
      // (9000 s early), 02:30–03:00 CEST (1800 s late), 02:00–03:00 CET: 02:00–02:30 early
      // (1800 s), 02:30–03:00 late (1800 s) → rest 3600×10 + early 10800×1 + late 3600×2.
      expect(rateTimedEvent(dst, dstSchedules, '2026-10-24T21:00:00Z', '18000', TZ).amount).toBe(String(36000 + 10800 + 7200))
    })
  })

  it('UTC and other zones: the same instant falls in different schedules', () => {
    // 2026-10-01T17:30Z is 17:30 in UTC (day) and 19:30 in Berlin (evening).
    expect(rateTimedEvent(voice, schedules, '2026-10-01T17:30:00Z', '60', 'UTC').amount).toBe('61')
    expect(rateTimedEvent(voice, schedules, '2026-10-01T17:30:00Z', '60', TZ).amount).toBe('1.1')
  })

  it('a moment no rate covers is BAD_INPUT with the local time', () => {
    const dayOnly: TimeRatedCharge = { ...voice, rates: [voice.rates[0]!] }
    expect(() => rateTimedEvent(dayOnly, schedules, '2026-10-01T17:00:00Z', '60', TZ)).toThrow(/no rate's schedule covers weekday 4 19:00 in Europe\/Berlin/)
  })

  it('an unknown time zone is BAD_INPUT', () => {
    expect(() => rateTimedEvent(voice, schedules, '2026-10-01T08:00:00Z', '60', 'Mars/Olympus')).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }))
  })

  it('negative seconds are BAD_INPUT', () => {
    expect(() => rateTimedEvent(voice, schedules, '2026-10-01T08:00:00Z', '-1', TZ)).toThrow(/cannot last/)
  })

  it('a session longer than 366 days is BAD_INPUT naming the limit, on both paths; 366 days is priced', () => {
    const start = Date.parse('2026-10-01T08:00:00Z')
    // 10^11 s (and the same with a sub-millisecond digit, the exact path) were split window by window for minutes.
    for (const s of ['100000000000', '31622401', '31622400.0001']) {
      expect(() => timedEventNano(voice, schedules, start, parseDec(s), TZ, null)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }))
      expect(() => rateTimedEvent(voice, schedules, '2026-10-01T08:00:00Z', s, TZ)).toThrow(/longer than a time_rated charge prices \(at most 31622400 seconds, 366 days\)/)
    }
    const year = rateTimedEvent(voice, schedules, '2026-10-01T08:00:00Z', '31622400', TZ)
    expect(toNano(parseDec(year.amount))).toBe(timedEventNano(voice, schedules, start, parseDec('31622400'), TZ, null))
    expect(Number(year.amount)).toBeGreaterThan(0)
  })
})

describe('free seconds (free_units)', () => {
  // Evening: a free first step in 2 s blocks, then 0.0001 per s from 5 s. A 5.1 s session's third free block ends at
  // 6 s, past its end: it costs 0. Starting the blocks at 3 free seconds instead billed 5–5.1 s at the second step.
  const stepped: TimeRatedCharge = {
    id: 'stepped',
    kind: 'usage',
    meter: 'calls',
    model: 'time_rated',
    rates: [
      { schedule: 'day', steps: [{ from: '0', unit_price: '0', per: '1', increment: '1' }] },
      { schedule: 'evening', steps: [{ from: '0', unit_price: '0', per: '1', increment: '2' }, { from: '5', unit_price: '0.0001', per: '1', increment: '0.001' }] },
      { schedule: 'weekend', steps: [{ from: '0', unit_price: '0', per: '1', increment: '1' }] },
    ],
  }
  it('never make a session dearer: they cover its first billed seconds, on the blocks it has without them', () => {
    // 2026-01-01T00:00Z is Wednesday 19:00 in New York: evening.
    for (const free of ['0', '3']) {
      expect(rateTimedEvent(stepped, schedules, '2026-01-01T00:00:00Z', '5.1', 'America/New_York', parseDec(free)).amount).toBe('0')
      expect(timedEventNano(stepped, schedules, Date.parse('2026-01-01T00:00:00Z'), parseDec('5.1'), 'America/New_York', null, parseDec(free))).toBe(0n)
    }
    // 61 s of the day rate (connect 1, a 60 s block, then 1 s) with 30 free: 1 + 30 + 1 = 32.
    expect(rateTimedEvent(voice, schedules, '2026-10-01T08:00:00Z', '61', TZ, parseDec('30')).amount).toBe('32')
    expect(timedEventNano(voice, schedules, Date.parse('2026-10-01T08:00:00Z'), parseDec('61'), TZ, null, parseDec('30'))).toBe(32_000_000_000n)
    // Covered whole: nothing, not even the connect fee.
    expect(rateTimedEvent(voice, schedules, '2026-10-01T08:00:00Z', '61', TZ, parseDec('61')).amount).toBe('0')
  })
})

describe('the rating path (whole milliseconds) against the priced lines (exact decimals)', () => {
  const dec = (maxInt: number, dp: number) =>
    fc.tuple(fc.integer({ min: 0, max: maxInt }), fc.integer({ min: 0, max: 10 ** dp - 1 })).map(([i, f]) => (dp === 0 ? String(i) : `${i}.${String(f).padStart(dp, '0')}`))
  const positive = (maxInt: number, dp: number) => dec(maxInt, dp).filter((x) => Number(x) > 0)
  const stepsArb = fc
    .array(fc.record({ from: dec(600, 0), unit_price: dec(3, 4), per: positive(120, 0), increment: fc.oneof(positive(90, 0), positive(2, 3), positive(1, 4)) }), {
      minLength: 1,
      maxLength: 3,
    })
    .map((steps) => {
      const sorted = [...new Map(steps.map((st) => [Number(st.from), st])).values()].sort((a, b) => Number(a.from) - Number(b.from))
      sorted[0] = { ...sorted[0]!, from: '0' }
      return sorted
    })
  const chargeArb = fc.record({
    day: stepsArb,
    evening: stepsArb,
    weekend: stepsArb,
    connect: fc.option(dec(2, 3), { nil: undefined }),
    rounding: fc.option(fc.record({ decimals: fc.integer({ min: 0, max: 9 }), mode: fc.constantFrom('up' as const, 'down' as const, 'half_even' as const) }), { nil: undefined }),
    cap: fc.option(dec(50, 2), { nil: undefined }),
  })
  it('prices every session the same: zones with DST and half-hour offsets, durations with 0–4 decimals, sub-millisecond steps', () => {
    fc.assert(
      fc.property(
        chargeArb,
        fc.integer({ min: Date.parse('2026-01-01T00:00:00Z') / 1000, max: Date.parse('2027-01-01T00:00:00Z') / 1000 }),
        fc.oneof(dec(200, 0), dec(4000, 1), dec(90_000, 0), dec(100, 3), dec(100, 4)),
        fc.constantFrom('Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'UTC'),
        // The free allowance's share of the session (free_units): none, whole milliseconds, or finer.
        fc.oneof(fc.constant('0'), dec(120, 0), dec(60, 3), dec(10, 4)),
        (c, startS, seconds, tz, freeText) => {
          const charge: TimeRatedCharge = {
            id: 'p',
            kind: 'usage',
            meter: 'calls',
            model: 'time_rated',
            rates: [
              { schedule: 'day', ...(c.connect ? { connect_fee: c.connect } : {}), steps: c.day },
              { schedule: 'evening', steps: c.evening },
              { schedule: 'weekend', steps: c.weekend },
            ],
            ...(c.rounding ? { rounding: c.rounding } : {}),
            ...(c.cap ? { max_cost_per_event: c.cap, max_cost_strategy: 'free' as const } : {}),
          }
          const start = new Date(startS * 1000).toISOString()
          const priced = rateTimedEvent(charge, schedules, start, seconds, tz)
          expect(timedEventNano(charge, schedules, startS * 1000, parseDec(seconds), tz, null)).toBe(toNano(parseDec(priced.amount)))
          const free = parseDec(freeText)
          const withFree = rateTimedEvent(charge, schedules, start, seconds, tz, free)
          expect(timedEventNano(charge, schedules, startS * 1000, parseDec(seconds), tz, null, free)).toBe(toNano(parseDec(withFree.amount)))
          // Free seconds never make a session dearer (starting the blocks at the free seconds did).
          expect(toNano(parseDec(withFree.amount)) <= toNano(parseDec(priced.amount))).toBe(true)
        },
      ),
      { numRuns: 500 },
    )
  })
})
