import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { AccountsDocument, Catalog } from '../catalog/types.js'
import { cliDataDir, json, query, rateflow, tempDir, writeJson } from './helpers/cli.js'

/**
 * A subscription moved to another plan mid-period (`accounts apply` with a new `plan`), on the real services: the new
 * plan's charge starts a running total of its own, as a catalog version does (README, "A catalog version that takes
 * effect mid-period"), even when it has the same charge id and meter as the old plan's. Each step is its own
 * `ingest csv --wait` process, so every step after the first starts from the totals the previous one checkpointed.
 * Expected amounts are worked out by hand below.
 */
const { data, d } = cliDataDir()

const catalog: Catalog = {
  version: 'k1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'm', metric: 'api_calls', aggregation: 'sum' }],
  plans: [
    { id: 'basic', billing_period: 'month', charges: [{ id: 'calls', kind: 'usage', meter: 'm', model: 'per_unit', unit_price: '1' }] },
    {
      id: 'pro',
      billing_period: 'month',
      charges: [{ id: 'calls', kind: 'usage', meter: 'm', model: 'graduated', tiers: [{ up_to: '100', unit_price: '0' }, { up_to: null, unit_price: '0.5' }] }],
    },
    { id: 'pro2', billing_period: 'month', charges: [{ id: 'calls', kind: 'usage', meter: 'm', model: 'per_unit', unit_price: '0.1', free_units: '50' }] },
  ],
}

const accounts = (plan: string): AccountsDocument => ({
  customers: [
    {
      id: 'c',
      name: 'C',
      accounts: [
        {
          id: 'a',
          currency: 'USD',
          timezone: 'UTC',
          bill_cycle_day: 1,
          subscriptions: [{ id: 's', plan, start: '2026-01-01T00:00:00Z', status: 'active' }],
        },
      ],
    },
  ],
})

async function step(n: number, plan: string, day: string, quantity: string) {
  await json(['accounts', 'apply', writeJson(join(data, `accounts-${n}.json`), accounts(plan)), ...d])
  const f = join(data, `u${n}.csv`)
  writeFileSync(f, `event_id,event_time,device_id,account_id,subscription_id,metric,quantity\nn${n},2026-03-${day}T00:00:00Z,,,s,api_calls,${quantity}\n`)
  return json<Record<string, number>>(['ingest', 'csv', f, '--source', `csv:pc${n}`, '--wait', ...d])
}

describe('a plan change mid-period', () => {
  it("gives the new plan's charge its own running total, and a return to a plan continues that plan's total", async () => {
    await json(['catalog', 'apply', writeJson(join(data, 'catalog.json'), catalog), ...d])
    // basic: 60 calls × 1 = 60.
    expect(await step(1, 'basic', '05', '60')).toMatchObject({ rated: 1, rejected: 0 })
    // pro2: 10 calls, inside its own 50 free units: 0. (One total with basic's 60 billed (70 − 50) × 0.1 − 60 = −58.)
    expect(await step(2, 'pro2', '20', '10')).toMatchObject({ rated: 1, rejected: 0 })
    // pro: 10 calls in the free first tier: 0. (One total with a per_unit model refused it as priced by another model.)
    expect(await step(3, 'pro', '25', '10')).toMatchObject({ rated: 1, rejected: 0 })
    // pro2 again: its total goes on from 10 to 55, 5 above the free units: 0.5.
    expect(await step(4, 'pro2', '27', '45')).toMatchObject({ rated: 1, rejected: 0 })
    const rows = await query<{ event_id: string; plan_id: string; amount: string }>(data, 'SELECT event_id, plan_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id')
    expect(rows).toEqual([
      { event_id: 'n1', plan_id: 'basic', amount: '60' },
      { event_id: 'n2', plan_id: 'pro2', amount: '0' },
      { event_id: 'n3', plan_id: 'pro', amount: '0' },
      { event_id: 'n4', plan_id: 'pro2', amount: '0.5' },
    ])
  })

  it("a start folds the old plan's stored readings over that plan's period, not the period of the plan the subscription is on now", async () => {
    // A quarterly and a monthly plan metering seats. Rows rated under the quarterly plan were folded again (by any start
    // after a kill -9: here the accounts apply that moves the subscription, whose rater then checkpoints) with the
    // monthly plan's period, and seat totals went wrong for good.
    const twa: Catalog = {
      version: 'pq1',
      effective_from: '2020-01-01T00:00:00Z',
      currency: 'USD',
      meters: [{ id: 'm_twa', metric: 'seats', aggregation: 'time_weighted_avg' }],
      plans: [
        { id: 'p-q', billing_period: 'quarter', charges: [{ id: 'seats', kind: 'usage', meter: 'm_twa', model: 'per_unit', unit_price: '10' }] },
        { id: 'p-m', billing_period: 'month', charges: [{ id: 'seats', kind: 'usage', meter: 'm_twa', model: 'per_unit', unit_price: '10' }] },
      ],
    }
    const t = tempDir('rateflow-plan-period-')
    const dd = ['--data', t.dir]
    const ingest = (name: string, row: string, env: Record<string, string> = {}) => {
      const f = join(t.dir, `${name}.csv`)
      writeFileSync(f, `event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n${row}\n`)
      return rateflow(['ingest', 'csv', f, '--source', 'csv:seats', '--wait', ...dd], env)
    }
    try {
      await json(['catalog', 'apply', writeJson(join(t.dir, 'catalog.json'), twa), ...dd])
      await json(['accounts', 'apply', writeJson(join(t.dir, 'q.json'), accounts('p-q')), ...dd])
      // Q4 is 92 days. 10 seats from 16 October hold 77 of them: Q = 10 × 77 / 92, T = 83.695652174.
      const killed = await ingest('r1', 'r1,2026-10-16T00:00:00Z,,,s,seats,10', { RATEFLOW_CRASH_AT: 'after-commit:1' })
      expect(killed.signal).toBe('SIGKILL')
      await json(['accounts', 'apply', writeJson(join(t.dir, 'm.json'), accounts('p-m')), ...dd])
      await json(['accounts', 'apply', writeJson(join(t.dir, 'q.json'), accounts('p-q')), ...dd])
      // 20 seats from 1 November: 10 × 16 + 20 × 61 = 1,380 seat-days over 92, Q = 15, T = 150: this reading adds
      // 66.304347826 (32.082748948 when r1 had been folded over October alone).
      expect(JSON.parse((await ingest('r2', 'r2,2026-11-01T00:00:00Z,,,s,seats,20')).stdout)).toMatchObject({ rated: 1 })
      const rows = await query<{ event_id: string; plan_id: string; amount: string }>(t.dir, 'SELECT event_id, plan_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id')
      expect(rows).toEqual([
        { event_id: 'r1', plan_id: 'p-q', amount: '83.695652174' },
        { event_id: 'r2', plan_id: 'p-q', amount: '66.304347826' },
      ])
    } finally {
      t.cleanup()
    }
  }, 120_000)
})
