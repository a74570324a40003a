import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { cliTestDir, oneSubscription } from './helpers/accounts.js'
import { json, lockHolder, query, rateflow, writeJson } from './helpers/cli.js'

/**
 * An `accounts apply` while another process that is no `rateflow run` holds the data directory, and lets go soon (an
 * `ingest csv --wait` finishing): it past its last look at the guiding files, the apply that wrote them left the usage
 * they own held, with both commands at exit 0 (a race of ~50 ms at the end of an ingest, found by a crash harness).
 * The apply now waits for such a holder and releases itself.
 */
const { dir, d } = cliTestDir('rateflow-apply-holder-')

const catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'calls', metric: 'api_calls', aggregation: 'sum' }],
  plans: [{ id: 'p', billing_period: 'month', charges: [{ id: 'calls', kind: 'usage', meter: 'calls', model: 'per_unit', unit_price: '2' }] }],
}

it('an apply beside a holder that lets go releases the usage it binds itself, once the holder is gone', async () => {
  await json(['catalog', 'apply', writeJson(join(dir, 'catalog.json'), catalog), ...d])
  await json(['accounts', 'apply', writeJson(join(dir, 'a1.json'), oneSubscription('p', [{ device_id: 'fw-1', from: '2026-10-01T00:00:00Z', to: null }])), ...d])
  const csv = join(dir, 'u.csv')
  writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\ne1,2026-10-05T10:00:00Z,fw-1,,,api_calls,1\ne2,2026-10-05T10:00:00Z,fw-late,,,api_calls,3\n')
  expect(await json(['ingest', 'csv', csv, '--source', 'csv:u', '--wait', ...d])).toMatchObject({ rated: 1, suspended: 1 })

  // A holder that is no run, letting go 1.5 s after it took the directory.
  await lockHolder(dir, 1500)
  const bound = oneSubscription('p', [
    { device_id: 'fw-1', from: '2026-10-01T00:00:00Z', to: null },
    { device_id: 'fw-late', from: '2026-10-01T00:00:00Z', to: null },
  ])
  const r = await rateflow(['accounts', 'apply', writeJson(join(dir, 'a2.json'), bound), ...d])
  expect(r.code, r.stderr).toBe(0)
  expect(JSON.parse(r.stdout)).toMatchObject({ released: 1 })
  expect(r.stderr).toBe('')
  expect(await query(dir, "SELECT event_id, toString(amount) AS amount FROM rated_usage ORDER BY event_id")).toEqual([
    { event_id: 'e1', amount: '2' },
    { event_id: 'e2', amount: '6' },
  ])
  expect(await query(dir, "SELECT count() AS n FROM suspended_usage FINAL WHERE status = 'held'")).toEqual([{ n: '0' }])
})
