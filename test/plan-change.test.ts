import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { AccountsDocument, Catalog } from '../catalog/types.js'
import { cliDataDir, json, query, writeJson } from './helpers/cli.js'

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
})
