import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { cliTestDir, oneSubscription } from './helpers/accounts.js'
import { json, query, rateflow, storeCommand, withAppliedData, writeJson } from './helpers/cli.js'

/**
 * A time_rated charge with the period terms CONTRACT §3.1 allows on any usage charge: free_units (seconds), minimum
 * and maximum. `catalog apply` takes it (they were refused), and the pipeline prices a file of sessions sent out of
 * time order as it would in time order: within a batch, events of a charge whose total depends on their order are
 * folded by event time. Real CLI, nats-server and embedded ClickHouse.
 */
const { dir, d } = cliTestDir('rateflow-timed-terms-')

const catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'secs', metric: 'session_seconds', aggregation: 'sum' }],
  schedules: [
    { id: 'day', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '18:00' },
    { id: 'evening', weekdays: [1, 2, 3, 4, 5], from: '18:00', to: '24:00' },
    { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
  ],
  plans: [
    {
      id: 'voice',
      billing_period: 'month',
      charges: [
        {
          id: 'calls',
          kind: 'usage',
          meter: 'secs',
          model: 'time_rated',
          rates: [
            { schedule: 'day', connect_fee: '1', steps: [{ from: '0', unit_price: '1', per: '1', increment: '60' }, { from: '60', unit_price: '1', per: '1', increment: '1' }] },
            { schedule: 'evening', steps: [{ from: '0', unit_price: '0.5', per: '60', increment: '60' }] },
            { schedule: 'weekend', steps: [{ from: '0', unit_price: '0', per: '1', increment: '1' }] },
          ],
          free_units: '90',
          minimum: '5',
          maximum: '90',
        },
      ],
    },
  ],
}
const accounts = oneSubscription('voice', [{ device_id: 'pbx-1', from: '2026-10-01T00:00:00Z', to: null }], { account: { timezone: 'Europe/Berlin' } })

it('applies free seconds in event-time order and clamps the period to [minimum, maximum]; Σ amounts = the clamped total', async () => {
  expect(await json(['catalog', 'apply', writeJson(join(dir, 'catalog.json'), catalog), ...d])).toMatchObject({ version: 'v1' })
  await json(['accounts', 'apply', writeJson(join(dir, 'accounts.json'), accounts), ...d])
  const csv = join(dir, 'calls.csv')
  // Thursday 1 October, Berlin (UTC+2); the rows in reverse time order.
  writeFileSync(
    csv,
    [
      'event_id,event_time,device_id,account_id,subscription_id,metric,quantity',
      'd,2026-10-01T18:00:00Z,pbx-1,,,session_seconds,90', // 20:00 evening: 2 × 60 s × 0.5/60 = 1, above the cap: 0
      'c,2026-10-01T10:00:00Z,pbx-1,,,session_seconds,61', // no allowance left: 1 + 60 + 1 = 62; Σ 94 capped at 90: 58
      'b,2026-10-01T09:00:00Z,pbx-1,,,session_seconds,61', // the last 30 free s cover half its 60 s block: 1 + 30 + 1 = 32: 27
      'a,2026-10-01T08:00:00Z,pbx-1,,,session_seconds,60', // inside the free 90 s: 0; the total rises to the minimum: 5
    ].join('\n') + '\n',
  )
  expect(await json(['ingest', 'csv', csv, '--source', 'csv:calls', '--wait', ...d])).toEqual({ read: 4, rated: 4, duplicates: 0, rejected: 0, suspended: 0 })
  const rated = await query<{ event_id: string; amount: string }>(dir, 'SELECT event_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id')
  expect(rated).toEqual([
    { event_id: 'a', amount: '5' },
    { event_id: 'b', amount: '27' },
    { event_id: 'c', amount: '58' },
    { event_id: 'd', amount: '0' },
  ])
})

it('prices the same after a kill -9 between two files: the start folds the stored sessions into the totals again', async () => {
  await withAppliedData('rateflow-timed-terms-restart-', catalog, accounts, async (dir, d) => {
    const header = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n'
    const first = join(dir, 'first.csv')
    writeFileSync(first, header + 'a,2026-10-01T08:00:00Z,pbx-1,,,session_seconds,60\nb,2026-10-01T09:00:00Z,pbx-1,,,session_seconds,61\n')
    // Killed right after its commit: no checkpoint of the totals (one is written at a stop), so the next start folds a and b.
    const killed = await rateflow(['ingest', 'csv', first, '--source', 'csv:calls', '--wait', ...d], { RATEFLOW_CRASH_AT: 'after-commit:1' })
    expect(killed.signal).toBe('SIGKILL')
    const second = join(dir, 'second.csv')
    writeFileSync(second, header + 'c,2026-10-01T10:00:00Z,pbx-1,,,session_seconds,61\nd,2026-10-01T18:00:00Z,pbx-1,,,session_seconds,90\n')
    expect(await json(['ingest', 'csv', second, '--source', 'csv:calls', '--wait', ...d])).toMatchObject({ read: 2, rated: 2 })
    const rated = await query<{ event_id: string; amount: string }>(dir, 'SELECT event_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id')
    // As in one run: the allowance a and b used, and the cap their total reached, are rebuilt.
    expect(rated).toEqual([
      { event_id: 'a', amount: '5' },
      { event_id: 'b', amount: '27' },
      { event_id: 'c', amount: '58' },
      { event_id: 'd', amount: '0' },
    ])
  })
})

it('folds stored sessions in the order they were rated after a restart with the clock set back', async () => {
  const header = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n'
  const files = [
    // Thursday 1 October, Berlin. a and b take the 90 free seconds, c (evening) pays in full: 33 before e, so e's 62
    // reaches the maximum, 90, and adds 57. Folded c first (stamped below a and b), c takes the free seconds, a and b pay
    // in full, the total is at the maximum before e, and e adds 0.
    'a,2026-10-01T08:00:00Z,pbx-1,,,session_seconds,60\nb,2026-10-01T09:00:00Z,pbx-1,,,session_seconds,61\n',
    'c,2026-10-01T18:00:00Z,pbx-1,,,session_seconds,120\n',
    'e,2026-10-01T11:00:00Z,pbx-1,,,session_seconds,61\n',
  ]
  const run = async (clockAheadFirst: boolean) => {
    return withAppliedData('rateflow-timed-terms-clock-', catalog, accounts, async (dir, d) => {
      for (const [i, body] of files.entries()) {
        const f = join(dir, `f${i}.csv`)
        writeFileSync(f, header + body)
        // Killed after each commit but the last: every start folds the stored sessions again (no checkpoint).
        const r = await rateflow(['ingest', 'csv', f, '--source', 'csv:calls', '--wait', ...d], i < files.length - 1 ? { RATEFLOW_CRASH_AT: 'after-commit:1' } : {})
        expect(r.signal ?? r.code).toBe(i < files.length - 1 ? 'SIGKILL' : 0)
        if (i === 0 && clockAheadFirst) {
          // The first file rated by a clock a day ahead, set back since: its rows' rated_at and its flush's commit time.
          await storeCommand(dir, 'ALTER TABLE rated_usage UPDATE rated_at = rated_at + INTERVAL 1 DAY WHERE 1 SETTINGS mutations_sync = 2')
          await storeCommand(dir, 'INSERT INTO flushes SELECT flush_id, committed_at + INTERVAL 1 DAY, batches, rated, duplicates, rejected, suspended, released FROM flushes')
          await storeCommand(dir, 'DELETE FROM flushes WHERE committed_at < now64() + INTERVAL 1 HOUR SETTINGS mutations_sync = 2')
        }
      }
      return await query<{ event_id: string; amount: string }>(dir, 'SELECT event_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id')
    })
  }
  const expected = [
    { event_id: 'a', amount: '5' },
    { event_id: 'b', amount: '27' },
    { event_id: 'c', amount: '1' },
    { event_id: 'e', amount: '57' },
  ]
  expect(await run(false)).toEqual(expected)
  expect(await run(true)).toEqual(expected)
}, 120_000)
