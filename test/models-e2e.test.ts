import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { AccountsDocument, Catalog, Charge } from '../catalog/types.js'
import { json, killStrayChildren, query, rateflow, tempDir, writeJson } from './helpers/cli.js'

/**
 * Every usage model end to end through the CSV path (CONTRACT §3, §5, §7): `ingest csv --wait` starts a real
 * nats-server (JetStream) and embedded ClickHouse (chDB); `rateflow query` reads rated_usage back.
 *
 * For every (subscription, charge, period, group, catalog version), Σ of the rated events' amounts must be the
 * charge model applied to that period's aggregated quantity (invariant 4). Every expected total below is worked
 * out by hand in a comment, from the events in this file, never by the code under test.
 *
 * The catalog changes mid-period: version "models-b" (effective 2026-10-16T00:00:00Z) raises the price of
 * `calls`. Each event is priced by the version in force at its event_time, and a version's events form their
 * own running total within the period, so the outcome cannot depend on the order events arrive in.
 *
 * The events go in two files, neither in event_time order. A second subscription, of an account in the same
 * zone, gets the same events in the opposite order (files swapped, rows reversed), in the same two ingests:
 * its totals must be the same.
 */

const SUB = 's-1'
const REV = 's-2' // the same events, in the opposite order
// Billing periods of an Europe/Berlin account with bill_cycle_day 1: local midnight of the 1st.
const OCT = '2026-09-30 22:00:00.000' // 2026-10-01T00:00+02:00 (CEST)
const NOV = '2026-10-31 23:00:00.000' // 2026-11-01T00:00+01:00 (CET, after 25 October)

const schedules: NonNullable<Catalog['schedules']> = [
  // CONTRACT §3 schedules.
  { id: 'day', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '18:00' },
  { id: 'evening', weekdays: [1, 2, 3, 4, 5], from: '18:00', to: '24:00' },
  { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
]

function charges(callsPrice: string): Charge[] {
  return [
    { id: 'platform', kind: 'recurring', amount: '50', billing: 'in_advance', proration: 'daily' },
    // per_unit with free units; the price the second version changes.
    { id: 'calls', kind: 'usage', meter: 'api', model: 'per_unit', unit_price: callsPrice, free_units: '1000' },
    // graduated on a `max` meter: flat fee of the first tier, a tier per price.
    {
      id: 'storage',
      kind: 'usage',
      meter: 'storage_peak',
      model: 'graduated',
      tiers: [
        { up_to: '100', unit_price: '0.10', flat_fee: '5' },
        { up_to: '1000', unit_price: '0.05' },
        { up_to: null, unit_price: '0.02' },
      ],
    },
    // volume per region (group_by), bytes scaled to GB, with a per-group minimum.
    {
      id: 'egress',
      kind: 'usage',
      meter: 'egress_gb',
      model: 'volume',
      tiers: [
        { up_to: '10', unit_price: '0.09' },
        { up_to: '100', unit_price: '0.07', flat_fee: '1' },
        { up_to: null, unit_price: '0.05' },
      ],
      minimum: '1',
    },
    // package, Lago's example: $5 per 100, the first 100 free.
    { id: 'sms', kind: 'usage', meter: 'sms', model: 'package', package_size: '100', package_price: '5', free_units: '100' },
    // Two charges on one meter: every transaction is rated by both.
    {
      id: 'card_fee',
      kind: 'usage',
      meter: 'txn',
      model: 'percentage',
      rate: '2.9',
      fixed_fee_per_event: '0.30',
      per_event_min: '0.50',
      per_event_max: '10',
    },
    {
      id: 'platform_fee',
      kind: 'usage',
      meter: 'txn',
      model: 'graduated_percentage',
      tiers: [
        { up_to: '1000', rate: '1', flat_fee: '200' },
        { up_to: '10000', rate: '2', flat_fee: '300' },
        { up_to: null, rate: '3', flat_fee: '400' },
      ],
    },
    // percentage with a free allowance of value and a charge maximum.
    { id: 'payout_fee', kind: 'usage', meter: 'payout', model: 'percentage', rate: '1', fixed_fee_per_event: '0.25', free_units: '100', maximum: '8' },
    // count and unique_count meters on the same metric.
    { id: 'logins', kind: 'usage', meter: 'login_count', model: 'per_unit', unit_price: '0.01', maximum: '0.05' },
    {
      id: 'mau',
      kind: 'usage',
      meter: 'users',
      model: 'volume',
      tiers: [
        { up_to: '2', unit_price: '3' },
        { up_to: null, unit_price: '2.5' },
      ],
    },
    // latest, with a minimum.
    { id: 'seats', kind: 'usage', meter: 'seats', model: 'per_unit', unit_price: '10', minimum: '20' },
    // time_weighted_avg: Mbps averaged over the billing period.
    { id: 'bandwidth', kind: 'usage', meter: 'mbps', model: 'per_unit', unit_price: '0.5' },
    // min.
    { id: 'lowest', kind: 'usage', meter: 'temp_min', model: 'per_unit', unit_price: '2' },
    // time_rated (CONTRACT §3.3): day rate with a connect fee and two steps, evening and weekend rates.
    {
      id: 'voice',
      kind: 'usage',
      meter: 'call_seconds',
      model: 'time_rated',
      rates: [
        {
          schedule: 'day',
          connect_fee: '0.4',
          steps: [
            { from: '0', unit_price: '0.2', per: '60', increment: '60' },
            { from: '60', unit_price: '0.1', per: '60', increment: '30' },
          ],
        },
        { schedule: 'evening', connect_fee: '0.2', steps: [{ from: '0', unit_price: '0.05', per: '60', increment: '1' }] },
        { schedule: 'weekend', steps: [{ from: '0', unit_price: '0.02', per: '60', increment: '60' }] },
      ],
      max_cost_per_event: '2',
      max_cost_strategy: 'free',
      rounding: { decimals: 4, mode: 'up' },
    },
  ]
}

function catalog(version: string, effectiveFrom: string, callsPrice: string): Catalog {
  return {
    version,
    effective_from: effectiveFrom,
    currency: 'EUR',
    meters: [
      { id: 'api', metric: 'api_calls', aggregation: 'sum' },
      { id: 'storage_peak', metric: 'storage_gb', aggregation: 'max' },
      { id: 'egress_gb', metric: 'bytes_out', aggregation: 'sum', scale: '0.000000001', group_by: ['region'] },
      { id: 'sms', metric: 'sms', aggregation: 'sum' },
      { id: 'txn', metric: 'txn_amount', aggregation: 'sum' },
      { id: 'payout', metric: 'payout_amount', aggregation: 'sum' },
      { id: 'login_count', metric: 'login', aggregation: 'count' },
      { id: 'users', metric: 'login', aggregation: 'unique_count', dimension: 'user' },
      { id: 'seats', metric: 'seats', aggregation: 'latest' },
      { id: 'mbps', metric: 'mbps', aggregation: 'time_weighted_avg' },
      { id: 'temp_min', metric: 'temp', aggregation: 'min' },
      { id: 'call_seconds', metric: 'call_seconds', aggregation: 'sum' },
    ],
    schedules,
    plans: [{ id: 'metered', billing_period: 'month', charges: charges(callsPrice) }],
  }
}

const accounts: AccountsDocument = {
  customers: [
    {
      id: 'c-1',
      name: 'Models GmbH',
      accounts: [
        {
          id: 'a-1',
          currency: 'EUR',
          timezone: 'Europe/Berlin',
          bill_cycle_day: 1,
          subscriptions: [
            { id: SUB, plan: 'metered', start: '2026-09-01T00:00:00Z', status: 'active', devices: [{ device_id: 'gw-1', from: '2026-09-01T00:00:00Z', to: null }] },
          ],
        },
        {
          id: 'a-2',
          currency: 'EUR',
          timezone: 'Europe/Berlin',
          bill_cycle_day: 1,
          subscriptions: [
            { id: REV, plan: 'metered', start: '2026-09-01T00:00:00Z', status: 'active', devices: [{ device_id: 'gw-2', from: '2026-09-01T00:00:00Z', to: null }] },
          ],
        },
      ],
    },
  ],
}

// event_id, event_time, owner (s = subscription_id, d = the device, a = the account), metric, quantity, region, user.
type Ev = [string, string, 's' | 'd' | 'a', string, string, string?, string?]
const events: Ev[] = [
  // calls — version A before 2026-10-16T00:00:00Z, B from then on.
  ['c1', '2026-10-03T10:00:00Z', 's', 'api_calls', '600'],
  ['c2', '2026-10-09T10:00:00Z', 'd', 'api_calls', '700'],
  ['c3', '2026-10-15T23:59:59.999Z', 'a', 'api_calls', '300'], // last millisecond of version A
  ['c4', '2026-10-16T00:00:00Z', 's', 'api_calls', '800'], // first instant of version B
  ['c5', '2026-10-28T10:00:00Z', 'd', 'api_calls', '500'],
  ['c6', '2026-10-31T22:30:00Z', 's', 'api_calls', '200'], // 23:30 Berlin on 31 October: still October
  ['c7', '2026-10-31T23:30:00Z', 's', 'api_calls', '500'], // 00:30 Berlin on 1 November: November
  ['c8', '2026-11-05T10:00:00Z', 'a', 'api_calls', '2500'],
  // storage (max)
  ['st1', '2026-10-02T08:00:00Z', 's', 'storage_gb', '80'],
  ['st2', '2026-10-05T08:00:00Z', 'd', 'storage_gb', '450'],
  ['st3', '2026-10-14T08:00:00Z', 's', 'storage_gb', '300'],
  ['st4', '2026-11-10T08:00:00Z', 's', 'storage_gb', '1200'],
  // egress (bytes, grouped by region)
  ['e1', '2026-10-02T09:00:00Z', 'd', 'bytes_out', '4000000000', 'eu'],
  ['e2', '2026-10-06T09:00:00Z', 'd', 'bytes_out', '8000000000', 'eu'],
  ['e3', '2026-10-07T09:00:00Z', 'd', 'bytes_out', '2500000000', 'us'],
  ['e4', '2026-10-08T09:00:00Z', 's', 'bytes_out', '150000000000', 'apac'],
  // sms (package)
  ['m1', '2026-10-04T12:00:00Z', 's', 'sms', '120'],
  ['m2', '2026-10-11T12:00:00Z', 'a', 'sms', '81'],
  // transactions: card_fee and platform_fee
  ['t1', '2026-10-02T14:00:00Z', 's', 'txn_amount', '100'],
  ['t2', '2026-10-03T14:00:00Z', 's', 'txn_amount', '5'],
  ['t3', '2026-10-04T14:00:00Z', 's', 'txn_amount', '1000'],
  ['t4', '2026-10-05T14:00:00Z', 's', 'txn_amount', '3945'],
  // payouts (percentage with free value)
  ['p1', '2026-10-06T14:00:00Z', 's', 'payout_amount', '300'],
  ['p2', '2026-10-07T14:00:00Z', 's', 'payout_amount', '250'],
  ['p3', '2026-10-08T14:00:00Z', 's', 'payout_amount', '400'],
  // logins: count and unique users
  ['l1', '2026-10-01T07:00:00Z', 's', 'login', '1', '', 'alice'],
  ['l2', '2026-10-01T08:00:00Z', 's', 'login', '1', '', 'bob'],
  ['l3', '2026-10-02T07:00:00Z', 's', 'login', '1', '', 'alice'],
  ['l4', '2026-10-03T07:00:00Z', 's', 'login', '1', '', 'carol'],
  ['l5', '2026-10-04T07:00:00Z', 's', 'login', '1', '', 'bob'],
  ['l6', '2026-10-05T07:00:00Z', 's', 'login', '1', '', 'alice'],
  ['l7', '2026-10-06T07:00:00Z', 's', 'login', '1', '', 'dave'],
  // seats (latest by event_time, not by arrival)
  ['se1', '2026-10-01T12:00:00Z', 's', 'seats', '5'],
  ['se2', '2026-10-08T12:00:00Z', 's', 'seats', '1'],
  ['se3', '2026-10-04T12:00:00Z', 's', 'seats', '9'],
  // bandwidth readings (time_weighted_avg over the October period)
  ['b1', '2026-09-30T22:00:00Z', 's', 'mbps', '100'],
  ['b2', '2026-10-07T03:00:00Z', 's', 'mbps', '200'],
  // temperature (min)
  ['tm1', '2026-10-02T06:00:00Z', 's', 'temp', '5'],
  ['tm2', '2026-10-03T06:00:00Z', 's', 'temp', '3'],
  ['tm3', '2026-10-04T06:00:00Z', 's', 'temp', '4'],
  // voice sessions, seconds from event_time; schedules in Europe/Berlin
  ['v1', '2026-10-01T08:00:00Z', 's', 'call_seconds', '85'], // Thu 10:00 CEST, day
  ['v2', '2026-10-05T15:59:00Z', 's', 'call_seconds', '150'], // Mon 17:59 CEST: day → evening at 18:00
  ['v3', '2026-10-10T10:00:00Z', 's', 'call_seconds', '125'], // Sat, weekend
  ['v4', '2026-10-21T09:00:00Z', 's', 'call_seconds', '3600'], // Wed, day, version B, capped
  ['v5', '2026-11-06T20:30:00Z', 's', 'call_seconds', '61'], // Fri 21:30 CET, evening, November
]

/** Σ amount per (charge, period_start, group_key, catalog_version), each worked out by hand. */
const EXPECTED: Record<string, string> = {
  // calls, version A (0.002, 1000 free): Q = 600 + 700 + 300 = 1600 → (1600 − 1000) × 0.002 = 1.2
  [`calls|${OCT}||models-a`]: '1.2',
  // calls, version B in October (0.003, 1000 free): Q = 800 + 500 + 200 = 1500 → 500 × 0.003 = 1.5
  [`calls|${OCT}||models-b`]: '1.5',
  // calls, November: Q = 500 + 2500 = 3000 → 2000 × 0.003 = 6
  [`calls|${NOV}||models-b`]: '6',
  // storage, October: Q = max(80, 450, 300) = 450 → 100 × 0.10 + 5 (tier 1 flat) + 350 × 0.05 = 32.5
  [`storage|${OCT}||models-a`]: '32.5',
  // storage, November: Q = 1200 → 10 + 5 + 900 × 0.05 + 200 × 0.02 = 64
  [`storage|${NOV}||models-b`]: '64',
  // egress eu: 4 + 8 = 12 GB → tier 2 (10, 100]: 12 × 0.07 + 1 = 1.84
  [`egress|${OCT}|["eu"]|models-a`]: '1.84',
  // egress us: 2.5 GB × 0.09 = 0.225 → minimum 1
  [`egress|${OCT}|["us"]|models-a`]: '1',
  // egress apac: 150 GB → tier 3: 150 × 0.05 = 7.5
  [`egress|${OCT}|["apac"]|models-a`]: '7.5',
  // sms: 120 + 81 = 201, 100 free → ceil(101 / 100) = 2 packages × 5 = 10
  [`sms|${OCT}||models-a`]: '10',
  // card_fee per event 2.9 % + 0.30 in [0.50, 10]: 100 → 3.2; 5 → 0.445 → 0.5; 1000 → 29.3 → 10;
  // 3945 → 114.705 → 10. Σ = 23.7
  [`card_fee|${OCT}||models-a`]: '23.7',
  // platform_fee on Σ = 5050: 1000 × 1 % + 200 + 4050 × 2 % + 300 = 210 + 381 = 591
  [`platform_fee|${OCT}||models-a`]: '591',
  // payout_fee: every payout exceeds the 100 free, so whichever comes first pays on its value − 100:
  // (300 + 250 + 400 − 100) × 1 % + 3 × 0.25 = 8.5 + 0.75 = 9.25 → maximum 8
  [`payout_fee|${OCT}||models-a`]: '8',
  // logins: 7 events × 0.01 = 0.07 → maximum 0.05
  [`logins|${OCT}||models-a`]: '0.05',
  // mau: {alice, bob, carol, dave} = 4 → volume tier 2: 4 × 2.5 = 10
  [`mau|${OCT}||models-a`]: '10',
  // seats: latest by event_time is se2 (8 Oct) = 1 → 1 × 10 = 10 → minimum 20
  [`seats|${OCT}||models-a`]: '20',
  // bandwidth: the period is 745 h (31 days + the hour of 25 October). 100 Mbps for 149 h (to 7 Oct 03:00Z), then
  // 200 Mbps until models-b takes over on 16 Oct 00:00Z (213 h); models-a's readings hold no further, and models-b
  // has none: (100 × 149 + 200 × 213) / 745 = 57500 / 745 = 77.181208053… → × 0.5 = 38.590604027
  [`bandwidth|${OCT}||models-a`]: '38.590604027',
  // lowest: min(5, 3, 4) = 3 → × 2 = 6
  [`lowest|${OCT}||models-a`]: '6',
  // voice, version A: v1 85 s day = 0.4 + 60 s × 0.2/60 + 30 s × 0.1/60 = 0.65;
  // v2: 60 s day (0.4 connect + 0.2) then 90 s evening × 0.05/60 = 0.075 → 0.675;
  // v3: weekend, 125 s in 60 s increments = 180 s × 0.02/60 = 0.06. Σ = 1.385
  [`voice|${OCT}||models-a`]: '1.385',
  // voice, version B: v4 3600 s day = 0.6 + 3540 s × 0.1/60 = 6.5 → max_cost_per_event 2
  [`voice|${OCT}||models-b`]: '2',
  // voice, November: v5 61 s evening = 0.2 + 61 × 0.05/60 = 0.250833… → up to 4 decimals 0.2509
  [`voice|${NOV}||models-b`]: '0.2509',
}

const HEADER = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity,dim.region,dim.user'
/** A CSV row of `ev` for subscription s-1 (its device gw-1, account a-1) or, with ids prefixed "r-", for s-2. */
function csvLine([id, time, owner, metric, qty, region = '', user = '']: Ev, reverse = false): string {
  const n = reverse ? '2' : '1'
  const device = owner === 'd' ? `gw-${n}` : ''
  const account = owner === 'a' ? `a-${n}` : ''
  const sub = owner === 's' ? `s-${n}` : ''
  return [reverse ? `r-${id}` : id, time, device, account, sub, metric, qty, region, user].join(',')
}

// Two files, neither in event_time order: a fixed shuffle, every other event to each file. s-2 gets the
// second half first, each half backwards.
const shuffled = [...events].sort((x, y) => hash(x[0]) - hash(y[0]))
const halfA = shuffled.filter((_, i) => i % 2 === 0)
const halfB = shuffled.filter((_, i) => i % 2 === 1)
const file1 = [...halfA.map((e) => csvLine(e)), ...[...halfB].reverse().map((e) => csvLine(e, true))]
const file2 = [...halfB.map((e) => csvLine(e)), ...[...halfA].reverse().map((e) => csvLine(e, true)), csvLine(halfA[0]!)]
function hash(s: string): number {
  let h = 2166136261
  for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0
  return h
}

type Counts = { read: number; rated: number; duplicates: number; rejected: number; suspended: number }
type Total = { k: string; amount: string; n: string }
type Row = { event_id: string; charge_id: string; catalog_version: string; period_start: string; amount: string }

const totals = (sub: string) => `SELECT concat(charge_id, '|', toString(period_start), '|', group_key, '|', catalog_version) AS k,
  toString(sum(amount)) AS amount, toString(count()) AS n
  FROM rated_usage WHERE subscription_id = '${sub}' GROUP BY k ORDER BY k`
const ROWS = `SELECT event_id, charge_id, catalog_version, toString(period_start) AS period_start, toString(amount) AS amount
  FROM rated_usage WHERE subscription_id = '${SUB}' ORDER BY event_id, charge_id`

const tmps = tempDir('rateflow-models-')
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmps.cleanup())

describe('every usage model through CSV → JetStream → rating → ClickHouse', () => {
  const data = join(tmps.dir, 'data')
  const d = ['--data', data]
  let counts: Counts[]
  let rows: Row[]
  let forward: Total[]

  it('rates every event of two out-of-order files; Σ amounts per charge, period, group and version = the model at the period total', async () => {
    await json(['catalog', 'apply', writeJson(join(tmps.dir, 'catalog-a.json'), catalog('models-a', '2026-01-01T00:00:00Z', '0.002')), ...d])
    await json(['catalog', 'apply', writeJson(join(tmps.dir, 'catalog-b.json'), catalog('models-b', '2026-10-16T00:00:00Z', '0.003')), ...d])
    await json(['accounts', 'apply', writeJson(join(tmps.dir, 'accounts.json'), accounts), ...d])
    counts = []
    for (const [i, lines] of [file1, file2].entries()) {
      const f = join(tmps.dir, `usage-${i + 1}.csv`)
      writeFileSync(f, [HEADER, ...lines].join('\n') + '\n')
      counts.push(await json<Counts>(['ingest', 'csv', f, '--source', 'csv:models', '--wait', ...d]))
    }
    // The last row of the second file repeats an event of the first: a duplicate, never billed twice.
    expect(counts).toEqual([
      { read: events.length, rated: events.length, duplicates: 0, rejected: 0, suspended: 0 },
      { read: events.length + 1, rated: events.length, duplicates: 1, rejected: 0, suspended: 0 },
    ])
    forward = await query<Total>(data, totals(SUB))
    expect(Object.fromEntries(forward.map((t) => [t.k, t.amount]))).toEqual(EXPECTED)
    rows = await query<Row>(data, ROWS)
  }, 120_000)

  it('the same events in the opposite order give the same totals', async () => {
    expect(await query<Total>(data, totals(REV))).toEqual(forward)
  })

  it('writes one rated row per event and charge: a transaction feeds card_fee and platform_fee, a login logins and mau', () => {
    // 45 events; the 4 transactions and 7 logins each feed two charges: 45 + 4 + 7 = 56 rows.
    expect(events.length).toBe(45)
    expect(rows.length).toBe(56)
    const charges = (id: string) => rows.filter((r) => r.event_id === id).map((r) => r.charge_id)
    expect(charges('t3')).toEqual(['card_fee', 'platform_fee'])
    expect(charges('l4')).toEqual(['logins', 'mau'])
    const n = Object.fromEntries(forward.map((t) => [t.k, Number(t.n)]))
    expect(n[`calls|${OCT}||models-a`]).toBe(3)
    expect(n[`calls|${OCT}||models-b`]).toBe(3)
    expect(n[`calls|${NOV}||models-b`]).toBe(2)
    expect(n[`egress|${OCT}|["eu"]|models-a`]).toBe(2)
  })

  it('stamps each row with the catalog version in force at its event_time and its billing period in the account zone', () => {
    const row = (id: string) => rows.find((r) => r.event_id === id)!
    expect(row('c3')).toMatchObject({ catalog_version: 'models-a', period_start: OCT }) // 2026-10-15T23:59:59.999Z
    expect(row('c4')).toMatchObject({ catalog_version: 'models-b', period_start: OCT }) // 2026-10-16T00:00:00Z
    expect(row('c6')).toMatchObject({ catalog_version: 'models-b', period_start: OCT }) // 31 Oct 23:30 Berlin
    expect(row('c7')).toMatchObject({ catalog_version: 'models-b', period_start: NOV }) // 1 Nov 00:30 Berlin
    expect(row('v4')).toMatchObject({ catalog_version: 'models-b', period_start: OCT })
    expect(row('b1')).toMatchObject({ catalog_version: 'models-a', period_start: OCT }) // the period's first instant
  })

  it('prices a time_rated session on its own, by the version and the schedule in the account zone when it starts', () => {
    const amount = (id: string) => rows.find((r) => r.event_id === id)!.amount
    expect(amount('v1')).toBe('0.65')
    expect(amount('v2')).toBe('0.675') // in UTC, 15:59 would be day throughout: 0.4 + 0.2 + 3 × 30 s × 0.1/60 = 0.75
    expect(amount('v3')).toBe('0.06')
    expect(amount('v4')).toBe('2')
    expect(amount('v5')).toBe('0.2509')
  })

  it('catalog apply of a version that takes effect before usage already rated says how much stays on earlier versions', async () => {
    const [expected] = await query<{ n: string; last: string }>(
      data,
      "SELECT count() AS n, toString(max(event_time)) AS last FROM rated_usage WHERE event_time >= toDateTime64('2026-10-20 00:00:00', 3, 'UTC')",
    )
    expect(Number(expected!.n)).toBeGreaterThan(0)
    const r = await rateflow(['catalog', 'apply', writeJson(join(tmps.dir, 'catalog-c.json'), catalog('models-c', '2026-10-20T00:00:00Z', '0.004')), ...d])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ version: 'models-c', effective_from: '2026-10-20T00:00:00Z', status: 'stored', rated_on_earlier_versions: Number(expected!.n) })
    expect(r.stderr).toContain(
      `warning: ${expected!.n} rated rows have an event_time at or after 2026-10-20T00:00:00Z (the latest ${new Date(`${expected!.last.replace(' ', 'T')}Z`).toISOString()}) and stay priced by the version that rated them`,
    )
    // Nothing was re-priced.
    const [after] = await query<{ n: string }>(data, "SELECT count() AS n FROM rated_usage WHERE catalog_version = 'models-c'")
    expect(Number(after!.n)).toBe(0)
  })
})
