import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { sampleAccounts, sampleCatalog, writeSampleCsv } from '../bench/sample-data.js'
import type { GlobalOptions, Io } from './context.js'
import { main } from './main.js'

/**
 * The main job on embedded defaults: writes a sample catalog, accounts and a CSV of 100,000 events (plus
 * a few bad rows and an unbound device) under `<data>/demo/`, applies them, ingests with --wait, and
 * prints a summary of rated usage per account as a table.
 */
export async function runDemo(g: GlobalOptions, io: Io, events = 100_000): Promise<number> {
  const dir = resolve(g.data, 'demo')
  // 0700, as the data directory it makes on the way (pipeline/runtime.ts, makeDataDir).
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const catalog = join(dir, 'catalog.json')
  const accounts = join(dir, 'accounts.json')
  const usage = join(dir, 'usage-2026-10.csv')
  writeFileSync(catalog, JSON.stringify(sampleCatalog(), null, 2))
  writeFileSync(accounts, JSON.stringify(sampleAccounts(), null, 2))
  await writeSampleCsv(usage, { events, withFaults: true })
  const d = ['--data', g.data]
  const step = async (title: string, argv: string[]) => {
    // As a shell takes it: an argument with spaces or shell characters is quoted (the SQL), so the line can be pasted.
    const quoted = (a: string) => {
      const flat = a.replace(/\s+/g, ' ')
      if (/^[\w@%+=:,./-]+$/.test(flat)) return flat
      return /^[^"$`\\!]*$/.test(flat) ? `"${flat}"` : `'${flat.replaceAll("'", "'\\''")}'`
    }
    io.out(`\n$ npx rateflow ${argv.map(quoted).join(' ')} --data ${quoted(g.data)}    # ${title}`)
    const code = await main([...argv, ...d], io)
    if (code !== 0) throw new Error(`demo step failed (exit ${code}): rateflow ${argv.join(' ')}`)
  }
  const started = Date.now()
  await step('store the catalog', ['catalog', 'apply', catalog])
  await step('accounts, subscriptions, device bindings', ['accounts', 'apply', accounts])
  await step(`${events} events + faults, end to end`, ['ingest', 'csv', usage, '--source', 'csv:demo', '--wait'])
  io.out(`(${((Date.now() - started) / 1000).toFixed(1)} s)`)
  await step('rated usage per account, October 2026', [
    'query',
    `SELECT account_id, charge_id, count() AS events, sum(quantity) AS quantity, sum(amount) AS amount, any(currency) AS currency
     FROM rated_usage GROUP BY account_id, charge_id ORDER BY account_id, charge_id LIMIT 12`,
    '--format',
    'Pretty',
  ])
  await step('what did not rate, and why', [
    'query',
    `SELECT * FROM (
       SELECT 'rejected' AS outcome, reason, count() AS n FROM rejected_usage FINAL GROUP BY reason
       UNION ALL
       SELECT 'suspended' AS outcome, reason, count() AS n FROM suspended_usage FINAL WHERE status = 'held' GROUP BY reason
     ) ORDER BY outcome, reason`,
    '--format',
    'Pretty',
  ])
  return 0
}
