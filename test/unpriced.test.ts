import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, expect, it } from 'vitest'
import { oneSubscription } from './helpers/accounts.js'
import { json, killStrayChildren, query, rateflow, tempDir, withAppliedData, writeJson } from './helpers/cli.js'

/**
 * The last reject reason of the data path: a record that validates and has an owner, but that its charge
 * cannot price (here a time_rated session starting at a moment no rate's schedule covers, which `catalog apply` warns
 * of; or a session too long to price). It goes to
 * rejected_usage with the raw row, its file and line and the model's reason; no running total moves for it,
 * and the rest of the file is rated. Real CLI, nats-server and embedded ClickHouse.
 */
const tmp = tempDir('rateflow-unpriced-')
const d = ['--data', tmp.dir]
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmp.cleanup())

const catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'session_s', metric: 'session_seconds', aggregation: 'sum' }],
  // Weekdays 08:00–18:00 only: nights and weekends have no rate.
  schedules: [{ id: 'office', weekdays: [1, 2, 3, 4, 5], from: '08:00', to: '18:00' }],
  plans: [
    {
      id: 'remote-access',
      billing_period: 'month',
      charges: [
        {
          id: 'support',
          kind: 'usage',
          meter: 'session_s',
          model: 'time_rated',
          rates: [{ schedule: 'office', connect_fee: '0.5', steps: [{ from: '0', unit_price: '0.01', per: '60', increment: '60' }] }],
          rounding: { decimals: 2, mode: 'up' },
        },
      ],
    },
  ],
}
const accounts = oneSubscription('remote-access', [{ device_id: 'gw-1', from: '2026-10-01T00:00:00Z', to: null }])

/**
 * Applies `catalog` to `dir`: it is stored, and `catalog apply` warns of the times no rate covers (sessions starting
 * then are rejects; CONTRACT §3.3's own example prices the day schedule alone, so a gap is no error).
 */
async function storeGappedCatalog(dir: string): Promise<void> {
  const applied = await rateflow(['catalog', 'apply', writeJson(join(dir, 'gapped-catalog.json'), catalog), '--data', dir])
  expect([applied.code, JSON.parse(applied.stdout).status, applied.stderr]).toEqual([
    0,
    'stored',
    expect.stringContaining('rateflow: warning: $.plans[0].charges[0].rates: no rate covers weekday 1 00:00–08:00, weekday 1 18:00–24:00,'),
  ])
}

it('a session no schedule covers is rejected as "cannot be priced", with raw row and line; the others are rated', async () => {
  await storeGappedCatalog(tmp.dir)
  await json(['accounts', 'apply', writeJson(join(tmp.dir, 'accounts.json'), accounts), ...d])
  const csv = join(tmp.dir, 'sessions.csv')
  writeFileSync(
    csv,
    [
      'event_id,event_time,device_id,account_id,subscription_id,metric,quantity',
      'e1,2026-11-04T10:00:00Z,gw-1,,,session_seconds,300', // Wednesday 10:00: 0.5 + 5 min × 0.01 = 0.55
      'e2,2026-11-08T10:00:00Z,gw-1,,,session_seconds,120', // Sunday: no schedule covers it
      'e3,2026-11-05T17:59:00Z,gw-1,,,session_seconds,60', // Thursday 17:59–18:00: 0.5 + 1 min × 0.01 = 0.51
      // A valid quantity, but ~3,000 years as a session: split window by window it held the batch for good.
      'e4,2026-11-04T11:00:00Z,gw-1,,,session_seconds,100000000000',
    ].join('\n') + '\n',
  )
  const counts = await json(['ingest', 'csv', csv, '--source', 'csv:s', '--wait', ...d])
  expect(counts).toEqual({ read: 4, rated: 2, duplicates: 0, rejected: 2, suspended: 0 })

  const rejected = await query<{ raw: string; reason: string }>(tmp.dir, 'SELECT raw, reason FROM rejected_usage ORDER BY raw')
  expect(rejected).toHaveLength(2)
  expect(rejected[0]!.raw).toBe('e2,2026-11-08T10:00:00Z,gw-1,,,session_seconds,120')
  expect(rejected[0]!.reason).toMatch(/sessions\.csv:3/)
  expect(rejected[0]!.reason).toMatch(/cannot be priced: charge support: no rate's schedule covers weekday 7 10:00 in UTC/)
  expect(rejected[1]!.raw).toBe('e4,2026-11-04T11:00:00Z,gw-1,,,session_seconds,100000000000')
  expect(rejected[1]!.reason).toMatch(/sessions\.csv:5: cannot be priced: charge support: a session of 100000000000 seconds is longer than a time_rated charge prices \(at most 31622400 seconds, 366 days\)/)

  const rated = await query<{ event_id: string; amount: string }>(
    tmp.dir,
    'SELECT event_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id',
  )
  expect(rated).toEqual([
    { event_id: 'e1', amount: '0.55' },
    { event_id: 'e3', amount: '0.51' },
  ])
  // The rejected event is not in usage_events: a corrected resend with the same event_id is not a duplicate.
  const events = await query<{ event_id: string }>(tmp.dir, 'SELECT event_id FROM usage_events ORDER BY event_id')
  expect(events.map((e) => e.event_id)).toEqual(['e1', 'e3'])
})

it('an amount too large for the store is that event\'s reject; the events around it are rated and nothing jams', async () => {
  const cat = {
    version: 'v1',
    effective_from: '2026-01-01T00:00:00Z',
    currency: 'USD',
    meters: [{ id: 'calls', metric: 'api_calls', aggregation: 'sum' }],
    plans: [{ id: 'remote-access', billing_period: 'month', charges: [{ id: 'api', kind: 'usage', meter: 'calls', model: 'per_unit', unit_price: '1000' }] }],
  }
  await withAppliedData('rateflow-big-amount-', cat, accounts, async (dir, d) => {
    const csv = join(dir, 'calls.csv')
    writeFileSync(
      csv,
      [
        'event_id,event_time,device_id,account_id,subscription_id,metric,quantity',
        'g1,2026-10-02T10:00:00Z,gw-1,,,api_calls,1',
        'g2,2026-10-02T11:00:00Z,gw-1,,,api_calls,99999999999999999999999999999', // a valid quantity; × 1000 is 32 digits
        'g3,2026-10-02T12:00:00Z,gw-1,,,api_calls,2',
      ].join('\n') + '\n',
    )
    expect(await json(['ingest', 'csv', csv, '--source', 'csv:big', '--wait', ...d])).toEqual({ read: 3, rated: 2, duplicates: 0, rejected: 1, suspended: 0 })
    const [reject] = await query<{ raw: string; reason: string }>(dir, 'SELECT raw, reason FROM rejected_usage')
    expect(reject!.raw).toBe('g2,2026-10-02T11:00:00Z,gw-1,,,api_calls,99999999999999999999999999999')
    expect(reject!.reason).toMatch(/calls\.csv:3: cannot be priced: charge api: amount 99999999999999999999999999999000 has more than 29 integer digits/)
    const rated = await query<{ event_id: string; amount: string }>(dir, 'SELECT event_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id')
    expect(rated).toEqual([
      { event_id: 'g1', amount: '1000' },
      { event_id: 'g3', amount: '2000' },
    ])
    // The next file goes through: no batch is left to fail every later flush.
    writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\ng4,2026-10-03T10:00:00Z,gw-1,,,api_calls,1\n')
    expect(await json(['ingest', 'csv', csv, '--source', 'csv:big2', '--wait', ...d])).toMatchObject({ read: 1, rated: 1 })
  })
})

it('a held event its new owner cannot price stays held with that reason, not the one that held it before', async () => {
  const t = tempDir('rateflow-unpriced-late-')
  const dir = t.dir
  const d = ['--data', dir]
  try {
    await storeGappedCatalog(dir)
    await json(['accounts', 'apply', writeJson(join(dir, 'unbound.json'), oneSubscription('remote-access', [])), ...d])
    const csv = join(dir, 'sessions.csv')
    writeFileSync(
      csv,
      [
        'event_id,event_time,device_id,account_id,subscription_id,metric,quantity',
        'h1,2026-11-04T10:00:00Z,gw-1,,,session_seconds,300', // Wednesday 10:00: priced once bound, 0.55
        'h2,2026-11-08T10:00:00Z,gw-1,,,session_seconds,120', // Sunday: no schedule covers it
      ].join('\n') + '\n',
    )
    expect(await json(['ingest', 'csv', csv, '--source', 'csv:late', '--wait', ...d])).toMatchObject({ read: 2, suspended: 2 })
    expect(await json(['accounts', 'apply', writeJson(join(dir, 'bound.json'), accounts), ...d])).toMatchObject({ released: 1 })
    const held = await query<{ event_id: string; status: string; reason: string }>(
      dir,
      'SELECT event_id, toString(status) AS status, reason FROM suspended_usage FINAL ORDER BY event_id',
    )
    expect(held.map((h) => [h.event_id, h.status])).toEqual([
      ['h1', 'released'],
      ['h2', 'held'],
    ])
    // It said `device "gw-1" has no binding …`, which the binding made false.
    expect(held[1]!.reason).toMatch(/^cannot be priced: charge support: no rate's schedule covers weekday 7 10:00 in UTC/)
    const rated = await query<{ event_id: string; amount: string }>(dir, 'SELECT event_id, toString(amount) AS amount FROM rated_usage')
    expect(rated).toEqual([{ event_id: 'h1', amount: '0.55' }])
  } finally {
    t.cleanup()
  }
})
