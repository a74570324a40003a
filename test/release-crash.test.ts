import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { cliTestDir, oneSubscription, type TestBinding } from './helpers/accounts.js'
import { json, query, rateflow, storeCommand, withAppliedData, writeJson } from './helpers/cli.js'

/**
 * A release of held usage killed after writing its rows and before its commit, and suspended_usage merged before the
 * next start: the held events must still be held, and the next `accounts apply` releases them. A release rewrites each
 * held row as `released` at a higher version (ReplacingMergeTree(version)); the merge keeps that row alone, and the
 * recovery's delete of the torn rows used to leave nothing: the events were neither held nor rated, for good. Embedded
 * chDB merges only while a process has the store open, so the test merges by hand (OPTIMIZE … FINAL), as a ClickHouse
 * server does on its own while the rater is down. Real CLI, nats-server and embedded ClickHouse.
 */
const { dir, d } = cliTestDir('rateflow-release-crash-')

const catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'calls', metric: 'api_calls', aggregation: 'sum' }],
  plans: [{ id: 'api', billing_period: 'month', charges: [{ id: 'calls', kind: 'usage', meter: 'calls', model: 'per_unit', unit_price: '2' }] }],
}
const accounts = (devices: TestBinding[]) => oneSubscription('api', devices)
const GW1: TestBinding[] = [{ device_id: 'gw-1', from: '2026-10-01T00:00:00Z', to: null }]

/** A data directory of its own with the catalog and accounts binding `devices` applied, for `body`; removed after it. */
const withStore = (prefix: string, devices: TestBinding[], body: (dir: string, d: string[]) => Promise<void>) => withAppliedData(prefix, catalog, accounts(devices), body)

/** Merges suspended_usage's parts, as a ClickHouse server's background merges do. */
const mergeSuspended = () => storeCommand(dir, 'OPTIMIZE TABLE suspended_usage FINAL')

it('keeps held events held when a torn release was merged before the restart, and releases them on the next apply', async () => {
  await json(['catalog', 'apply', writeJson(join(dir, 'catalog.json'), catalog), ...d])
  await json(['accounts', 'apply', writeJson(join(dir, 'accounts.json'), accounts([])), ...d])
  const csv = join(dir, 'calls.csv')
  const rows = Array.from({ length: 20 }, (_, i) => `e${i},2026-10-0${1 + (i % 9)}T10:00:00Z,gw-1,,,api_calls,${i + 1}`)
  writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n' + rows.join('\n') + '\n')
  expect(await json(['ingest', 'csv', csv, '--source', 'csv:calls', '--wait', ...d])).toEqual({ read: 20, rated: 0, duplicates: 0, rejected: 0, suspended: 20 })

  // The binding releases the 20; killed after the release's rows are written, before its commit row.
  const bound = writeJson(join(dir, 'bound.json'), accounts(GW1))
  const killed = await rateflow(['accounts', 'apply', bound, ...d], { RATEFLOW_CRASH_AT: 'before-commit:1' })
  expect(killed.signal).toBe('SIGKILL')
  await mergeSuspended()
  // The merge kept the torn `released` rows alone (as a server's merge would).
  const [torn] = await query<{ released: string; held: string }>(
    dir,
    "SELECT countIf(status = 'released') AS released, countIf(status = 'held') AS held FROM suspended_usage",
  )
  expect(torn).toEqual({ released: '20', held: '0' })

  const again = await json<{ released: number }>(['accounts', 'apply', bound, ...d])
  expect(again.released).toBe(20)
  const [state] = await query<{ released: string; held: string }>(
    dir,
    "SELECT countIf(status = 'released') AS released, countIf(status = 'held') AS held FROM suspended_usage FINAL",
  )
  expect(state).toEqual({ released: '20', held: '0' })
  const [rated] = await query<{ n: string; amount: string }>(dir, 'SELECT count() AS n, toString(sum(amount)) AS amount FROM rated_usage')
  // Σ quantities 1..20 = 210, at 2 each.
  expect(rated).toEqual({ n: '20', amount: '420' })
})

it('a torn batch of a source named release-… is no release: its events are rated once after the crash', async () => {
  await withStore('rateflow-release-source-', [], async (dir, d) => {
    const csv = join(dir, 'calls.csv')
    writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\ne1,2026-10-02T10:00:00Z,gw-1,,,api_calls,3\ne2,2026-10-02T11:00:00Z,gw-1,,,api_calls,4\n')
    // Held, and killed before the commit: the next start deletes the batch's rows, and its redelivery holds them again.
    const killed = await rateflow(['ingest', 'csv', csv, '--source', 'release-x', '--wait', ...d], { RATEFLOW_CRASH_AT: 'before-commit:1' })
    expect(killed.signal).toBe('SIGKILL')
    const bound = writeJson(join(dir, 'bound.json'), accounts(GW1))
    // Taken for a release, the torn rows were copied back as held, and released here.
    expect(await json(['accounts', 'apply', bound, ...d])).toMatchObject({ released: 0 })
    const again = await json<{ read: number; rated: number; duplicates: number }>(['ingest', 'csv', csv, '--source', 'release-x', '--wait', ...d])
    expect(again.read).toBe(2)
    const rated = await query<{ event_id: string; n: string; amount: string }>(
      dir,
      'SELECT event_id, count() AS n, toString(sum(amount)) AS amount FROM rated_usage GROUP BY event_id ORDER BY event_id',
    )
    expect(rated).toEqual([
      { event_id: 'e1', n: '1', amount: '6' },
      { event_id: 'e2', n: '1', amount: '8' },
    ])
  })
})

it('releases a held event whose row is stamped ahead of the clock (a clock set back since), once', async () => {
  await withStore('rateflow-release-clock-', [], async (dir, d) => {
    const csv = join(dir, 'calls.csv')
    writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\nk1,2026-10-02T10:00:00Z,gw-1,,,api_calls,5\n')
    expect(await json(['ingest', 'csv', csv, '--source', 'csv:k', '--wait', ...d])).toMatchObject({ suspended: 1 })
    // The held row's version a day ahead of now: as if the clock was set back a day after it was written.
    // (A copy of the row, a day ahead: the version is the table's key, and cannot be updated.)
    await storeCommand(
      dir,
      `INSERT INTO suspended_usage SELECT source, event_id, event_time, device_id, account_id, subscription_id, metric, quantity, dimensions,
         raw, origin, reason, status, version + 86400000, received_at, batch_id FROM suspended_usage`,
    )
    const bound = writeJson(join(dir, 'bound.json'), accounts(GW1))
    expect(await json(['accounts', 'apply', bound, ...d])).toMatchObject({ released: 1 })
    // The release's row wins over the held one: stamped below it, the event read as held and was rated again here.
    expect(await query(dir, 'SELECT event_id, toString(status) AS status FROM suspended_usage FINAL')).toEqual([{ event_id: 'k1', status: 'released' }])
    expect(await json(['accounts', 'apply', bound, ...d])).toMatchObject({ released: 0 })
    expect(await query(dir, 'SELECT count() AS n FROM rated_usage')).toEqual([{ n: '1' }])
  })
})

it('stamps every batch above those rated before it, over two restarts with the clock behind the store', async () => {
  await withStore('rateflow-stamp-order-', GW1, async (dir, d) => {
    const header = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n'
    const file = (name: string, body: string) => {
      const f = join(dir, name)
      writeFileSync(f, header + body)
      return f
    }
    const first = await rateflow(['ingest', 'csv', file('f0.csv', 'a,2026-10-01T08:00:00Z,gw-1,,,api_calls,1\n'), '--source', 'csv:s', '--wait', ...d], { RATEFLOW_CRASH_AT: 'after-commit:1' })
    expect(first.signal).toBe('SIGKILL')
    // That run's clock was a day ahead, and is set back since.
    await storeCommand(dir, 'ALTER TABLE rated_usage UPDATE rated_at = rated_at + INTERVAL 1 DAY WHERE 1 SETTINGS mutations_sync = 2')
    await storeCommand(dir, 'INSERT INTO flushes SELECT flush_id, committed_at + INTERVAL 1 DAY, batches, rated, duplicates, rejected, suspended, released FROM flushes')
    await storeCommand(dir, 'DELETE FROM flushes WHERE committed_at < now64() + INTERVAL 1 HOUR SETTINGS mutations_sync = 2')
    // Six batches (a file each) with the clock still behind: their stamps run ahead of it by 1 ms a batch, faster than
    // commit times did, so the next start, seeded from the latest commit, stamped below them.
    const many = ['b', 'c', 'd', 'f', 'g', 'h'].map((id, i) => file(`m${i}.csv`, `${id},2026-10-01T09:00:0${i}Z,gw-1,,,api_calls,1\n`))
    expect((await rateflow(['ingest', 'csv', ...many, '--source', 'csv:s', '--wait', ...d])).code).toBe(0)
    expect((await rateflow(['ingest', 'csv', file('z.csv', 'e,2026-10-01T11:00:00Z,gw-1,,,api_calls,1\n'), '--source', 'csv:s', '--wait', ...d])).code).toBe(0)
    const rows = await query<{ event_id: string; at: string }>(dir, 'SELECT event_id, toString(toUnixTimestamp64Milli(rated_at)) AS at FROM rated_usage')
    const e = Number(rows.find((r) => r.event_id === 'e')!.at)
    expect(rows.filter((r) => r.event_id !== 'e' && Number(r.at) >= e).map((r) => r.event_id)).toEqual([])
  })
}, 120_000)
