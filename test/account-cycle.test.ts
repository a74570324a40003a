import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { expect, it } from 'vitest'
import { cliTestDir, oneSubscription } from './helpers/accounts.js'
import { json, lockHolder, query, rateflow, writeJson } from './helpers/cli.js'

/**
 * A stored account's bill_cycle_day and timezone, through `accounts apply` (real CLI, nats-server, embedded chDB): free
 * to change before the account has rated usage (a typo fixed); refused after, with exit 2 at the field's path, as the
 * new periods would overlap those already rated and give free units and flat fees twice. Nothing of a refused file is
 * stored. And what `accounts apply` says of the release when another process holds the directory.
 */
const ROOT = resolve(import.meta.dirname, '..')
const { dir, d } = cliTestDir('rateflow-account-cycle-')

const catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'egress', metric: 'bytes_out', aggregation: 'sum' }],
  plans: [
    {
      id: 'p',
      billing_period: 'month',
      charges: [{ id: 'egress', kind: 'usage', meter: 'egress', model: 'graduated', free_units: '100', tiers: [{ up_to: '1000', unit_price: '1', flat_fee: '50' }, { up_to: null, unit_price: '0.5' }] }],
    },
  ],
}
/** Waits for a holder process to say it holds the directory; fails, not hangs, when it ends first. */
function held(p: ChildProcess): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve())
    p.once('exit', (code, signal) => reject(new Error(`the holder process ended (${code ?? signal}) before it held the data directory`)))
  })
}

const devices = [{ device_id: 'fw-1', from: '2026-10-01T00:00:00Z', to: null }]
const withCycle = (bill_cycle_day: number, timezone: string) => oneSubscription('p', devices, { account: { bill_cycle_day, timezone } })

it('changes a cycle while nothing is rated, and refuses to once usage is', async () => {
  await json(['catalog', 'apply', writeJson(join(dir, 'catalog.json'), catalog), ...d])
  await json(['accounts', 'apply', writeJson(join(dir, 'a1.json'), withCycle(1, 'UTC')), ...d])
  // A typo fixed before any usage: applied.
  await json(['accounts', 'apply', writeJson(join(dir, 'a2.json'), withCycle(15, 'Europe/Berlin')), ...d])
  const csv = join(dir, 'usage.csv')
  writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\na1,2026-10-20T10:00:00Z,fw-1,,,bytes_out,200\n')
  expect(await json(['ingest', 'csv', csv, '--source', 'csv:u', '--wait', ...d])).toMatchObject({ rated: 1 })
  // Its period is 15 October – 15 November (Berlin): 100 free, then 100 × 1 and the first tier's flat fee 50.
  expect(await query(dir, "SELECT toString(amount) AS amount, toString(period_start) AS p FROM rated_usage")).toEqual([{ amount: '150', p: '2026-10-14 22:00:00.000' }])

  const refused = await rateflow(['accounts', 'apply', writeJson(join(dir, 'a3.json'), withCycle(1, 'Europe/Berlin')), ...d])
  expect(refused.code).toBe(2)
  expect(refused.stderr).toMatch(
    /\$\.customers\[0\]\.accounts\[0\]\.bill_cycle_day: account "a-1" is stored with bill_cycle_day 15: changing it to 1 is refused: it has rated usage/,
  )
  // Not stored: the next event is still in the 15th's period.
  writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\na2,2026-11-02T10:00:00Z,fw-1,,,bytes_out,100\n')
  await json(['ingest', 'csv', csv, '--source', 'csv:u', '--wait', ...d])
  expect(await query(dir, "SELECT event_id, toString(period_start) AS p FROM rated_usage ORDER BY event_id")).toEqual([
    { event_id: 'a1', p: '2026-10-14 22:00:00.000' },
    { event_id: 'a2', p: '2026-10-14 22:00:00.000' },
  ])
})

it('says who releases held usage when another process holds the data directory, where "released": 0 said nothing', async () => {
  // A process that holds the directory's lock and is no run (as a long `rateflow query` does), for longer than an apply
  // waits for such a holder to let go.
  const holder = await lockHolder(dir)
  try {
    const r = await rateflow(['accounts', 'apply', writeJson(join(dir, 'a4.json'), withCycle(15, 'Europe/Berlin')), ...d])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ released: 0 })
    expect(r.stderr).toMatch(/another process holds the data directory or the stream .*held usage this data owns is released by its rater, if it runs one, else by the next rater to start/)
  } finally {
    holder.kill('SIGKILL')
  }
})

it('names the account and why when it cannot ask a running rateflow run whether the account has rated usage (exit 1)', async () => {
  // A process that holds the directory and announces a run whose HTTP API answers nothing (a closed port).
  const run = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { acquireLock } = await import(${JSON.stringify(join(ROOT, 'dist/pipeline/data-dir-lock.js'))})
       const { writeFileSync } = await import('node:fs')
       acquireLock(${JSON.stringify(dir)})
       writeFileSync(${JSON.stringify(join(dir, 'run.json'))}, JSON.stringify({ pid: process.pid, http: 'http://127.0.0.1:1' }))
       console.log('held'); setInterval(() => {}, 1000)`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  try {
    await held(run)
    // A file with problems of its own is told them first (exit 2), not that the store could not be asked.
    const bad = withCycle(1, 'Europe/Berlin')
    bad.customers[0]!.accounts[0]!.currency = 'usd'
    const wrong = await rateflow(['accounts', 'apply', writeJson(join(dir, 'bad.json'), bad), ...d])
    expect([wrong.code, wrong.stderr]).toEqual([2, expect.stringMatching(/\$\.customers\[0\]\.accounts\[0\]\.currency/)])
    // a-1 has rated usage (the first test); asking whether it has fails.
    const r = await rateflow(['accounts', 'apply', writeJson(join(dir, 'a5.json'), withCycle(1, 'Europe/Berlin')), ...d])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/accounts apply: cannot tell whether account "a-1" has rated usage \(its bill_cycle_day or timezone changes, which is refused once it has\): query: the rateflow run \(pid \d+\) at http:\/\/127\.0\.0\.1:1 did not answer/)
  } finally {
    run.kill('SIGKILL')
  }
})
