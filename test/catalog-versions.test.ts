import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { AccountsDocument, Catalog } from '../catalog/types.js'
import { cliDataDir, json, query, rateflow, writeJson } from './helpers/cli.js'

/**
 * Where a new catalog version may go among the stored ones, on the real services (README, "Catalog versions"): after
 * the latest, or before the earliest, where no usage was ever rated (it was held, no version being in force), so that
 * usage older than the first catalog can be priced and released; never in between. And what `catalog apply` warns of:
 * a plan that stored subscriptions are on and the new version lacks, a plan whose billing period changes.
 */
const { data, d } = cliDataDir()

const plan = (id: string, price: string, billing_period: 'month' | 'quarter' = 'month') => ({
  id,
  billing_period,
  charges: [{ id: 'c', kind: 'usage' as const, meter: 'u', model: 'per_unit' as const, unit_price: price }],
})
const catalog = (version: string, from: string, plans: Catalog['plans']): Catalog => ({
  version,
  effective_from: from,
  currency: 'USD',
  meters: [{ id: 'u', metric: 'units', aggregation: 'sum' }],
  plans,
})

const accounts: AccountsDocument = {
  customers: [
    {
      id: 'c',
      name: 'C',
      accounts: [
        {
          id: 'a1',
          currency: 'USD',
          timezone: 'UTC',
          bill_cycle_day: 1,
          subscriptions: [
            { id: 's1', plan: 'pm', start: '2025-01-01T00:00:00Z', status: 'active', devices: [{ device_id: 'd1', from: '2025-01-01T00:00:00Z', to: null }] },
            { id: 's2', plan: 'old', start: '2025-01-01T00:00:00Z', status: 'active', devices: [{ device_id: 'd2', from: '2025-01-01T00:00:00Z', to: null }] },
          ],
        },
      ],
    },
  ],
}

const apply = (c: Catalog) => rateflow(['catalog', 'apply', writeJson(join(data, `${c.version}.json`), c), ...d])

describe('catalog versions before the earliest and after the latest', () => {
  it('usage older than the first version is held, and a version before the first one prices and releases it', async () => {
    expect((await apply(catalog('v1', '2026-01-01T00:00:00Z', [plan('pm', '1'), plan('old', '5')]))).code).toBe(0)
    await json(['accounts', 'apply', writeJson(join(data, 'accounts.json'), accounts), ...d])
    const f = join(data, 'u1.csv')
    writeFileSync(
      f,
      'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n' +
        'old1,2025-12-31T23:59:59.999Z,d1,,,units,2\n' +
        'new1,2026-01-01T00:00:00Z,d1,,,units,2\n',
    )
    expect(await json(['ingest', 'csv', f, '--wait', ...d])).toMatchObject({ read: 2, rated: 1, suspended: 1 })

    const r = await apply(catalog('v0', '2025-01-01T00:00:00Z', [plan('pm', '3'), plan('old', '5')]))
    expect(r.code, r.stderr).toBe(0)
    // Nothing was rated before v1, so nothing stays on an earlier version: no warning, no count.
    expect(JSON.parse(r.stdout)).toEqual({ version: 'v0', effective_from: '2025-01-01T00:00:00Z', status: 'stored' })
    expect(r.stderr).toBe('')
    const rows = await query<{ event_id: string; catalog_version: string; amount: string }>(
      data,
      'SELECT event_id, catalog_version, toString(amount) AS amount FROM rated_usage ORDER BY event_id',
    )
    expect(rows).toEqual([
      { event_id: 'new1', catalog_version: 'v1', amount: '2' },
      { event_id: 'old1', catalog_version: 'v0', amount: '6' },
    ])
    const [held] = await query<{ n: string }>(data, "SELECT toString(count()) AS n FROM suspended_usage FINAL WHERE status = 'held'")
    expect(held!.n).toBe('0')
    const list = await json<Array<{ version: string; effective_to: string | null }>>(['catalog', 'list', ...d])
    expect(list.map((v) => [v.version, v.effective_to])).toEqual([
      ['v0', '2026-01-01T00:00:00Z'],
      ['v1', null],
    ])
  })

  it('a version between stored ones is refused, naming both ends it may take', async () => {
    const r = await apply(catalog('mid', '2025-06-01T00:00:00Z', [plan('pm', '9'), plan('old', '9')]))
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('$.effective_from')
    expect(r.stderr).toContain('must be after 2026-01-01T00:00:00Z')
    expect(r.stderr).toContain('or before 2025-01-01T00:00:00Z')
    expect((await json<unknown[]>(['catalog', 'list', ...d])).length).toBe(2)
  })

  it('catalog apply warns of a plan that subscriptions are on and the version lacks, and of a billing period that changes', async () => {
    const r = await apply(catalog('v2', '2026-10-10T00:00:00Z', [plan('pm', '1', 'quarter')]))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain('warning: $.plans: plan "old" is not in version "v2", and subscription "s2" (account "a1") is on it')
    expect(r.stderr).toContain('warning: $.plans[0].billing_period: plan "pm" is billed by month in version "v1" and by quarter in version "v2" from 2026-10-10T00:00:00Z')
    // What the first warning says: s2's usage while v2 is in force is held, and moving s2 to a plan of v2 releases it.
    const f = join(data, 'u2.csv')
    writeFileSync(f, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\ngone1,2026-10-12T00:00:00Z,d2,,,units,1\n')
    expect(await json(['ingest', 'csv', f, '--wait', ...d])).toMatchObject({ read: 1, suspended: 1 })
    const moved = structuredClone(accounts)
    moved.customers[0]!.accounts[0]!.subscriptions[1]!.plan = 'pm'
    await json(['accounts', 'apply', writeJson(join(data, 'accounts-2.json'), moved), ...d])
    const [row] = await query<{ plan_id: string; catalog_version: string }>(data, "SELECT plan_id, catalog_version FROM rated_usage WHERE event_id = 'gone1'")
    expect(row).toEqual({ plan_id: 'pm', catalog_version: 'v2' })
  })
})
