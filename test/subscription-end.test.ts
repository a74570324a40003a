import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { cliTestDir, oneSubscription } from './helpers/accounts.js'
import { json, query, rateflow, writeJson } from './helpers/cli.js'

/**
 * A time_weighted_avg reading (seats) holds until the subscription ends, not to the period end: a subscription
 * cancelled mid-month is not billed its seats after its `end` (exclusive). Both ways a rater folds a reading are
 * covered: as it rates it, and as a start folds stored rows again after a kill -9 (no checkpoint written at stop),
 * whose totals then price the next reading. Real CLI, nats-server and embedded ClickHouse.
 */
const { dir, d } = cliTestDir('rateflow-sub-end-')

const catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'seats', metric: 'seats', aggregation: 'time_weighted_avg' }],
  plans: [
    {
      id: 'seats-plan',
      billing_period: 'month',
      // Graduated, so a total folded from the wrong readings prices the next increment differently.
      charges: [{ id: 'seats', kind: 'usage', meter: 'seats', model: 'graduated', tiers: [{ up_to: '6', unit_price: '10' }, { up_to: null, unit_price: '1' }] }],
    },
  ],
}
// The subscription ends (exclusively) on 16 October.
const accounts = oneSubscription('seats-plan', [{ device_id: 'hub-1', from: '2026-10-01T00:00:00Z', to: null }], { subscription: { end: '2026-10-16T00:00:00Z' } })

function csv(name: string, row: string): string {
  const path = join(dir, name)
  writeFileSync(path, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n' + row + '\n')
  return path
}

it('bills seats up to the subscription end, as rated and as folded again by a start after a kill -9', async () => {
  await json(['catalog', 'apply', writeJson(join(dir, 'catalog.json'), catalog), ...d])
  await json(['accounts', 'apply', writeJson(join(dir, 'accounts.json'), accounts), ...d])

  // 10 seats from 1 October, the subscription ending on the 16th: 15 of October's 31 days.
  // Q = 150/31 = 4.838709677…, T = Q × 10 = 48.387096774. Held to the period end it was Q = 10, T = 64.
  // Killed right after the commit: no checkpoint at stop, so the next start folds the stored row again.
  const killed = await rateflow(['ingest', 'csv', csv('x1.csv', 'x1,2026-10-01T00:00:00Z,hub-1,,,seats,10'), '--source', 'csv:seats', '--wait', ...d], {
    RATEFLOW_CRASH_AT: 'after-commit:1',
  })
  expect(killed.signal).toBe('SIGKILL')
  const amounts = () => query<{ event_id: string; amount: string }>(dir, 'SELECT event_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id')
  expect(await amounts()).toEqual([{ event_id: 'x1', amount: '48.387096774' }])

  // 20 seats from the 11th: the integral is 10 × 10 days + 20 × 5 days = 200 seat-days, Q = 200/31 = 6.451612903…,
  // T = 6 × 10 + 0.451612903… × 1 = 60.451612903, so this reading adds 12.064516129. A start that folded x1 to the
  // period end (T = 64) priced it at 1.612903226.
  const counts = await json(['ingest', 'csv', csv('x2.csv', 'x2,2026-10-11T00:00:00Z,hub-1,,,seats,20'), '--source', 'csv:seats', '--wait', ...d])
  expect(counts).toEqual({ read: 1, rated: 1, duplicates: 0, rejected: 0, suspended: 0 })
  expect(await amounts()).toEqual([
    { event_id: 'x1', amount: '48.387096774' },
    { event_id: 'x2', amount: '12.064516129' },
  ])
})
