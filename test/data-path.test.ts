import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import { json, query, rateflow, tempDir, writeJson, killStrayChildren } from './helpers/cli.js'

/**
 * CSV → JetStream → rating pool → ClickHouse on the real services: the CLI starts a real nats-server with
 * JetStream and embedded ClickHouse (chDB) under a temporary --data directory.
 */
const EVENTS = 3000
const size = { customers: 6, devicesPerAccount: 3 }
const tmp = tempDir()
const data = tmp.dir
const d = ['--data', data]
const csv = join(data, 'usage.csv')
const lines = [...sampleCsvLines({ events: EVENTS, size, withFaults: true, seed: 11 })]
type Counts = { read: number; rated: number; duplicates: number; rejected: number; suspended: number }
const reconcile = (c: Counts) => c.rated + c.duplicates + c.rejected + c.suspended

const RATED_DUMP = `SELECT source, event_id, account_id, subscription_id, plan_id, charge_id, group_key, event_time,
  toString(quantity) AS quantity, toString(amount) AS amount, currency, catalog_version, period_start
  FROM rated_usage ORDER BY source, event_id, charge_id`

beforeAll(async () => {
  writeFileSync(csv, lines.join('\n') + '\n')
  await json(['catalog', 'apply', writeJson(join(data, 'catalog.json'), sampleCatalog()), ...d])
  await json(['accounts', 'apply', writeJson(join(data, 'accounts.json'), sampleAccounts(size)), ...d])
})
// A test that timed out must not leave a process holding its data directory for the tests after it.
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmp.cleanup())

describe('ingest csv --wait on real services', () => {
  let first: Counts
  let dumpAfterFirst: unknown[]

  it('rates every good row, and the counts reconcile: read = rated + duplicates + rejected + suspended', async () => {
    first = await json<Counts>(['ingest', 'csv', csv, '--source', 'csv:t', '--wait', ...d])
    expect(first).toEqual({ read: EVENTS + 6, rated: EVENTS, duplicates: 0, rejected: 4, suspended: 2 })
    expect(reconcile(first)).toBe(first.read)
    const [row] = await query<{ n: string; u: string }>(data, 'SELECT count() AS n, uniqExact(source, event_id, charge_id) AS u FROM rated_usage')
    expect(Number(row!.n)).toBe(EVENTS) // one usage charge per metric in the sample plan
    expect(Number(row!.u)).toBe(EVENTS)
    const [ev] = await query<{ n: string }>(data, 'SELECT count() AS n FROM usage_events')
    expect(Number(ev!.n)).toBe(EVENTS + 2) // accepted = rated + suspended
    dumpAfterFirst = await query(data, RATED_DUMP)
    // Analysts' JSON gives times as ISO-8601 with their offset (CONTRACT: times in JSON output), decimals as strings.
    const [r] = await query<{ event_time: unknown; period_start: unknown; amount: unknown }>(data, 'SELECT event_time, period_start, amount FROM rated_usage LIMIT 1')
    expect(r!.event_time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(r!.period_start).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(typeof r!.amount).toBe('string')
  })

  it('prices per_unit exactly: per group and period, Σ amounts = round9(Σ quantity × unit price)', async () => {
    // Independent expectation from the CSV itself, with literal period bounds (Berlin and New York Octobers).
    const periods: Record<string, Array<[string, number, number]>> = {
      'Europe/Berlin': [['2026-09-30 22:00:00.000', Date.parse('2026-09-30T22:00:00Z'), Date.parse('2026-10-31T23:00:00Z')], ['2026-10-31 23:00:00.000', Date.parse('2026-10-31T23:00:00Z'), Date.parse('2026-11-30T23:00:00Z')]],
      'America/New_York': [['2026-09-01 04:00:00.000', Date.parse('2026-09-01T04:00:00Z'), Date.parse('2026-10-01T04:00:00Z')], ['2026-10-01 04:00:00.000', Date.parse('2026-10-01T04:00:00Z'), Date.parse('2026-11-01T04:00:00Z')]],
    }
    const expected = new Map<string, bigint>() // key → Σ bytes (egress) or Σ calls (api)
    for (const l of lines.slice(1)) {
      const [id, time, device, , , metric, qty, region] = l.split(',')
      if (!id!.startsWith('e-')) continue
      const c = Number(device!.split('-')[1])
      const tz = c % 2 ? 'Europe/Berlin' : 'America/New_York'
      const ms = Date.parse(time!)
      const p = periods[tz]!.find(([, s, e]) => s <= ms && ms < e)![0]
      const key = `s-${String(c).padStart(3, '0')}|${metric === 'bytes_out' ? 'egress' : 'api'}|${p}|${metric === 'bytes_out' ? JSON.stringify([region]) : ''}` // group_key: JSON array of group_by values
      expected.set(key, (expected.get(key) ?? 0n) + BigInt(qty!))
    }
    const rows = await query<{ k: string; amount: string }>(
      data,
      `SELECT concat(subscription_id, '|', charge_id, '|', toString(period_start), '|', group_key) AS k, toString(sum(amount)) AS amount
       FROM rated_usage GROUP BY k`,
    )
    expect(rows.length).toBe(expected.size)
    for (const r of rows) {
      const q = expected.get(r.k)!
      // egress: bytes × 1e-9 GB × 0.08 = bytes × 8 / 10^11; api: calls × 4 / 10^4. Half-even to 1e-9.
      const [num, den] = r.k.includes('|egress|') ? [q * 8n, 100n] : [q * 4n * 100000n, 1n]
      expect(r.amount).toBe(fmt9(roundHalfEven(num, den)))
    }
  })

  it('ingesting the same file twice leaves rated_usage unchanged and counts the duplicates', async () => {
    const second = await json<Counts>(['ingest', 'csv', csv, '--source', 'csv:t', '--wait', ...d])
    expect(second).toEqual({ read: EVENTS + 6, rated: 0, duplicates: EVENTS + 2, rejected: 4, suspended: 0 })
    expect(await query(data, RATED_DUMP)).toEqual(dumpAfterFirst)
  })

  it('gives every reject a reason a person can act on, with the raw row, file and line', async () => {
    const rows = await query<{ raw: string; reason: string; source: string }>(
      data,
      'SELECT raw, reason, source FROM rejected_usage FINAL ORDER BY reason',
    )
    const n = EVENTS
    const byLine = (line: number) => rows.find((r) => r.reason.startsWith(`usage.csv:${line}:`))
    const first = EVENTS + 2 // header is line 1, events lines 2..EVENTS+1
    expect(byLine(first)).toMatchObject({ raw: `f-${n},yesterday,fw-001-1,,,bytes_out,100,eu`, source: 'csv:t' })
    expect(byLine(first)!.reason).toMatch(/event_time "yesterday" is not an ISO-8601 time with offset/)
    expect(byLine(first + 1)!.reason).toMatch(/quantity "12kB" is not a non-negative decimal/)
    expect(byLine(first + 1)!.raw).toBe(`f-${n + 1},2026-10-02T10:00:00Z,fw-001-1,,,bytes_out,12kB,eu`)
    expect(byLine(first + 2)!.reason).toMatch(/no owner id: device_id, account_id and subscription_id are all empty/)
    expect(byLine(first + 3)!.reason).toMatch(/has 7 columns, the header has 8/)
    expect(rows.length).toBe(4) // re-ingesting did not double them
  })

  it('holds rows of an unbound device in suspended_usage, and rates them once accounts apply binds it to an account in the catalog\'s currency', async () => {
    const held = await query<{ event_id: string; reason: string }>(
      data,
      "SELECT event_id, reason FROM suspended_usage FINAL WHERE status = 'held' ORDER BY event_id",
    )
    expect(held.map((h) => h.event_id)).toEqual([`f-${EVENTS + 4}`, `f-${EVENTS + 5}`])
    expect(held[0]!.reason).toMatch(/device "fw-unbound-1" has no binding at 2026-10-03T10:00:00.000Z/)
    const binding = {
      customers: [
        {
          id: 'c-late',
          name: 'Late Corp',
          accounts: [
            {
              id: 'a-late',
              currency: 'USD',
              timezone: 'UTC',
              bill_cycle_day: 1,
              subscriptions: [
                {
                  id: 's-late',
                  plan: 'sase-pro',
                  start: '2026-10-01T00:00:00Z',
                  status: 'active',
                  devices: [{ device_id: 'fw-unbound-1', from: '2026-10-01T00:00:00Z', to: null }],
                },
              ],
            },
          ],
        },
      ],
    }
    // Bound first to an account billed in EUR: the USD catalog cannot price it, so the rows stay held, with that reason.
    const inEuro = { customers: [{ ...binding.customers[0]!, accounts: [{ ...binding.customers[0]!.accounts[0]!, currency: 'EUR' }] }] }
    const none = await json<{ released: number }>(['accounts', 'apply', writeJson(join(data, 'late-eur.json'), inEuro), ...d])
    expect(none.released).toBe(0)
    const heldEur = await query<{ reason: string }>(data, "SELECT reason FROM suspended_usage FINAL WHERE status = 'held' ORDER BY event_id")
    expect(heldEur.map((h) => h.reason)).toEqual([
      expect.stringMatching(/account "a-late" is billed in EUR but catalog version "[^"]+" prices in USD/),
      expect.stringMatching(/account "a-late" is billed in EUR but catalog version "[^"]+" prices in USD/),
    ])
    const out = await json<{ released: number }>(['accounts', 'apply', writeJson(join(data, 'late.json'), binding), ...d])
    expect(out.released).toBe(2)
    const rated = await query<{ event_id: string; account_id: string; charge_id: string; amount: string }>(
      data,
      "SELECT event_id, account_id, charge_id, toString(amount) AS amount FROM rated_usage WHERE account_id = 'a-late' ORDER BY event_id",
    )
    expect(rated).toEqual([
      { event_id: `f-${EVENTS + 4}`, account_id: 'a-late', charge_id: 'egress', amount: '0.0004' }, // 5e6 B = 0.005 GB × 0.08
      { event_id: `f-${EVENTS + 5}`, account_id: 'a-late', charge_id: 'api', amount: '0.0028' }, // 7 × 0.0004
    ])
    const still = await query(data, "SELECT * FROM suspended_usage FINAL WHERE status = 'held'")
    expect(still).toEqual([])
    // A third ingest of the file: the released rows are duplicates now, nothing is suspended again.
    const third = await json<Counts>(['ingest', 'csv', csv, '--source', 'csv:t', '--wait', ...d])
    expect(third).toMatchObject({ rated: 0, duplicates: EVENTS + 2, suspended: 0 })
  })
})

describe('bad files and documents exit 2 and name every problem', () => {
  it('a CSV header with unknown and missing columns', async () => {
    const f = join(data, 'bad-header.csv')
    writeFileSync(f, 'event_id,when,device,metric,qty\n1,2,3,4,5\n')
    const r = await rateflow(['ingest', 'csv', f, '--wait', ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/bad-header.csv:1 column 2: unknown column "when"/)
    expect(r.stderr).toMatch(/bad-header.csv:1 column 3: unknown column "device"/)
    expect(r.stderr).toMatch(/required column "event_time" is missing/)
    expect(r.stderr).toMatch(/required column "quantity" is missing/)
  })

  it('an accounts file naming a parent account that does not exist exits 2; one naming a stored account applies', async () => {
    const child = { customers: [{ id: 'c-orphan', name: 'Orphan', accounts: [{ id: 'a-orphan', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, tax: { jurisdiction: 'US', rate: '0' }, parent_account: 'a-missing', subscriptions: [] }] }] }
    const r = await rateflow(['accounts', 'apply', writeJson(join(data, 'orphan.json'), child), ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/parent_account: account "a-orphan" names parent account "a-missing", which is neither in this file nor stored/)
    child.customers[0]!.accounts[0]!.parent_account = 'a-001' // a stored account: fine
    expect(await json(['accounts', 'apply', writeJson(join(data, 'orphan.json'), child), ...d])).toMatchObject({ accounts: 1 })
  })

  it('a problem the merge with the stored accounts makes is named at its path in the file', async () => {
    // One customer (index 0 of this file, not of the stored accounts) binding a device that a stored account holds.
    const thief = { customers: [{ id: 'c-thief', name: 'Thief', accounts: [{ id: 'a-thief', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [{ id: 's-thief', plan: 'sase-pro', start: '2026-10-01T00:00:00Z', status: 'active', devices: [{ device_id: 'fw-001-1', from: '2026-10-01T00:00:00Z', to: null }] }] }] }] }
    const r = await rateflow(['accounts', 'apply', writeJson(join(data, 'thief.json'), thief), ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/accounts \(merged with the stored accounts\): 1 problem/)
    expect(r.stderr).toMatch(/\$\.customers\[0\]\.accounts\[0\]\.subscriptions\[0\]\.devices\[0\]: device "fw-001-1" is already bound in this period at stored customer "c-001" account "a-001" subscription "s-001" devices\[0\]/)
  })

  it('a subscription to a plan no stored catalog version has applies, with a warning naming its path', async () => {
    const typo = { customers: [{ id: 'c-typo', name: 'Typo', accounts: [{ id: 'a-typo', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [{ id: 's-typo', plan: 'sase-prp', start: '2026-10-01T00:00:00Z', status: 'active' }] }] }] }
    const r = await rateflow(['accounts', 'apply', writeJson(join(data, 'typo.json'), typo), ...d])
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/warning: \$\.customers\[0\]\.accounts\[0\]\.subscriptions\[0\]\.plan: plan "sase-prp" is in no stored catalog version: its usage is held until one has it/)
  })

  it('a data directory that cannot be made, or stored accounts that cannot be read, are named without a stack trace', async () => {
    // A regular file where a directory of the path should be.
    const blocker = join(data, 'not-a-dir')
    writeFileSync(blocker, '')
    // (`catalog apply` makes the directory; `query` and `catalog list` make none, and say there is nothing there.)
    const r = await rateflow(['catalog', 'apply', writeJson(join(data, 'blocked-catalog.json'), sampleCatalog()), '--data', join(blocker, 'sub')])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(new RegExp(`--data ${join(blocker, 'sub')}: cannot use it as a data directory: ENOTDIR`))
    const q = await rateflow(['query', 'SELECT 1', '--data', join(blocker, 'sub')])
    expect([q.code, q.stderr]).toEqual([2, expect.stringContaining(`no Rateflow store in ${join(blocker, 'sub')}`)])
    const l = await rateflow(['catalog', 'list', '--data', join(blocker, 'sub')])
    expect([l.code, l.stderr]).toEqual([2, expect.stringContaining(`--data ${join(blocker, 'sub')}: no such directory`)])
    const f = await rateflow(['catalog', 'list', '--data', blocker])
    expect([f.code, f.stderr]).toEqual([2, expect.stringContaining(`--data ${blocker} is not a directory`)])
    // A mistyped directory is named and not made.
    const typo = join(data, 'no-such-data')
    const t = await rateflow(['catalog', 'list', '--data', typo])
    expect([t.code, t.stderr]).toEqual([2, expect.stringMatching(/no such directory: no catalog was applied there/)])
    expect(existsSync(typo)).toBe(false)
    // The accounts file's place taken by a directory: the system's message, with the file it is about, and no stack.
    const other = join(data, 'odd-data')
    mkdirSync(join(other, 'catalog', 'accounts.json'), { recursive: true })
    const a = await rateflow(['accounts', 'apply', writeJson(join(data, 'small-accounts.json'), sampleAccounts({ customers: 1, devicesPerAccount: 1 })), '--data', other])
    expect(a.code).toBe(1)
    expect(a.stderr).toMatch(/accounts\.json/)
    expect(a.stderr).not.toMatch(/\n\s+at /)
  })

  it('a RATEFLOW_LOG that is no log level is bad usage naming the variable, as every RATEFLOW_* knob', async () => {
    const r = await rateflow(['catalog', 'list', ...d], { RATEFLOW_LOG: 'loud' })
    expect([r.code, r.stderr.trim()]).toEqual([2, 'rateflow: RATEFLOW_LOG: "loud" is not a log level (one of fatal, error, warn, info, debug, trace, silent)'])
  })

  it('a NATS_URL the NATS client cannot read is bad usage naming it, before anything is made; an empty RATEFLOW_DATA too', async () => {
    // They were "cannot reach NATS at nats://a b …: Invalid URL", exit 1, as if a server were down, after the data
    // directory was made; an empty RATEFLOW_DATA put the store in the current directory.
    const fresh = join(data, 'never-made-nats')
    const csv = join(data, 'nats-url.csv')
    writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n')
    for (const [url, named] of [
      ['nats://a b', '"nats://a b" is not a NATS server URL'],
      ['::::', '"::::" is not a NATS server URL'],
      ['nats://127.0.0.1:99999', '"nats://127.0.0.1:99999" is not a NATS server URL'],
      ['ws://127.0.0.1:4222', '"ws://127.0.0.1:4222" is not a NATS server URL'],
      ['nats://127.0.0.1:4222, x y ,http://h', '"x y", "http://h" are not NATS server URLs'],
    ]) {
      const r = await rateflow(['ingest', 'csv', csv, '--wait', '--data', fresh], { NATS_URL: url })
      expect([url, r.code, r.stderr]).toEqual([url, 2, `rateflow: NATS_URL: ${named} (e.g. nats://127.0.0.1:4222; several are separated by commas)\n`])
      expect(existsSync(fresh)).toBe(false)
    }
    // Named by a command that reaches no service too, as every variable it honours.
    const l = await rateflow(['catalog', 'list', ...d], { NATS_URL: 'nats://a b' })
    expect(l.code).toBe(2)
    const e = await rateflow(['catalog', 'list'], { RATEFLOW_DATA: '' })
    expect([e.code, e.stderr]).toEqual([2, 'rateflow: RATEFLOW_DATA is empty: set it to a data directory, or unset it for the default ./.rateflow\n'])
    // --data given: the variable is not used, so not in the way.
    expect((await rateflow(['catalog', 'list', ...d], { RATEFLOW_DATA: '' })).code).toBe(0)
  })

  it('a missing file', async () => {
    const r = await rateflow(['ingest', 'csv', join(data, 'nope.csv'), ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/nope\.csv: no such file/)
    // Bad input makes nothing: a data directory that was not there is still not there.
    const fresh = join(data, 'never-made')
    const f = await rateflow(['ingest', 'csv', join(data, 'nope.csv'), '--data', fresh])
    expect([f.code, existsSync(fresh)]).toEqual([2, false])
    const s = await rateflow(['ingest', 'csv', writeJson(join(data, 'x.csv'), 'x'), '--source', 'bad name', '--data', fresh])
    expect([s.code, existsSync(fresh)]).toEqual([2, false])
    // Help asked of a command is the help (it was an unknown option, exit 2).
    for (const args of [['query', '--help'], ['catalog', 'apply', '-h'], ['ingest', 'csv', '--help']]) {
      const h = await rateflow(args)
      expect([args, h.code, h.stdout]).toEqual([args, 0, expect.stringMatching(/^rateflow — usage mediation, rating and billing\n/)])
    }
    // No file at all: the command and what it takes are named.
    const none = await rateflow(['catalog', 'apply', ...d])
    expect([none.code, none.stderr]).toEqual([2, 'rateflow: catalog apply FILE: expected 1 argument, got 0\n'])
    const two = await rateflow(['accounts', 'apply', 'a.json', 'b.json', ...d])
    expect([two.code, two.stderr]).toEqual([2, 'rateflow: accounts apply FILE: expected 1 argument, got 2\n'])
  })

  it('the rater knobs of the release after an apply are checked before anything is stored (they were ignored, bad values too)', async () => {
    const fresh = join(data, 'knobs')
    const c = await rateflow(['catalog', 'apply', writeJson(join(data, 'knob-catalog.json'), sampleCatalog()), '--data', fresh], { RATEFLOW_LOAD_PAGE_ROWS: 'abc' })
    expect([c.code, c.stderr, existsSync(fresh)]).toEqual([2, expect.stringContaining('RATEFLOW_LOAD_PAGE_ROWS: must be a whole number from 1 to 10000000, got "abc"'), false])
    const a = await rateflow(['accounts', 'apply', writeJson(join(data, 'knob-accounts.json'), sampleAccounts({ customers: 1, devicesPerAccount: 1 })), ...d], { RATEFLOW_DEDUPE_HORIZON_HOURS: '0' })
    expect([a.code, a.stderr]).toEqual([2, expect.stringContaining('RATEFLOW_DEDUPE_HORIZON_HOURS: must be a whole number from 1 to 87600, got "0"')])
  })

  it('a catalog with several errors lists each with its JSON path', async () => {
    const bad = sampleCatalog() as unknown as Record<string, any>
    bad.currency = 'usd'
    bad.plans[0].charges[1].unit_price = 0.08
    bad.plans[0].charges[2].meter = 'nope'
    bad.meters[0].colour = 'red'
    bad.meters[0]['odd.key'] = 1
    const r = await rateflow(['catalog', 'apply', writeJson(join(data, 'bad-catalog.json'), bad), ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/\$\.currency/)
    expect(r.stderr).toMatch(/\$\.plans\[0\]\.charges\[1\]\.unit_price/)
    expect(r.stderr).toMatch(/\$\.plans\[0\]\.charges\[2\]\.meter/)
    expect(r.stderr).toMatch(/\$\.meters\[0\]\.colour/)
    // A key that is no JavaScript name is quoted: `$.meters[0].odd.key` read as two steps.
    expect(r.stderr).toContain('$.meters[0]["odd.key"]: unknown field "odd.key"')
  })

  it('a key given twice in a catalog, accounts or price file is a problem at its path, named with the file\'s other problems', async () => {
    // JSON.parse keeps the last of the two silently: a hand-edited price of 0.01 then 0.10 was stored as 0.10.
    const text = JSON.stringify(sampleCatalog(), null, 2).replace(/"unit_price": "([^"]+)"/, '"unit_price": "$1", "unit_price": "9"').replace('"currency": "USD"', '"currency": "usd"')
    const file = join(data, 'twice-catalog.json')
    writeFileSync(file, text)
    const r = await rateflow(['catalog', 'apply', file, ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/catalog: 2 problems\n {2}\$\.plans\[0\]\.charges\[\d+\]\.unit_price: key "unit_price" is given twice \(lines \d+ and \d+\): keep one\n {2}\$\.currency:/)
    const p = await rateflow(['price', '--catalog', file, '--plan', 'x', '--charge', 'y', '--quantity', '1'])
    expect([p.code, p.stderr]).toEqual([2, expect.stringMatching(/unit_price: key "unit_price" is given twice/)])
    const accounts = JSON.stringify(sampleAccounts({ customers: 1, devicesPerAccount: 1 }), null, 2).replace('"bill_cycle_day": 1', '"bill_cycle_day": 1, "bill_cycle_day": 15')
    const afile = join(data, 'twice-accounts.json')
    writeFileSync(afile, accounts)
    const a = await rateflow(['accounts', 'apply', afile, ...d])
    expect([a.code, a.stderr]).toEqual([2, expect.stringMatching(/accounts: 1 problem\n {2}\$\.customers\[0\]\.accounts\[0\]\.bill_cycle_day: key "bill_cycle_day" is given twice/)])
  })

  it("a catalog at a stored version's effective_from is told so with its other problems, in one run", async () => {
    // The data directory holds the sample catalog (effective 2026-01-01) already: a new version at the same instant
    // (written in another offset) is neither after the latest nor before the earliest.
    const bad = sampleCatalog() as unknown as Record<string, any>
    bad.version = 'back-dated'
    bad.effective_from = '2026-01-01T01:00:00+01:00'
    bad.currency = 'usd'
    const r = await rateflow(['catalog', 'apply', writeJson(join(data, 'back-dated.json'), bad), ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/\$\.currency/)
    expect(r.stderr).toMatch(/\$\.effective_from: must be after .*, the effective_from of the latest stored version .*, or before /)
  })

  it('a catalog file that is not UTF-8 is refused naming the byte, not stored with U+FFFD; a byte order mark is read past', async () => {
    const cat = sampleCatalog() as unknown as Record<string, any>
    cat.version = 'caf\u00e9-latin1'
    cat.effective_from = '2099-01-01T00:00:00Z'
    const text = JSON.stringify(cat)
    writeFileSync(join(data, 'latin1.json'), Buffer.from(text, 'latin1'))
    const r = await rateflow(['catalog', 'apply', join(data, 'latin1.json'), ...d])
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/latin1\.json: not UTF-8 \(at byte \d+\): save it as UTF-8/)])
    cat.version = 'with-bom'
    writeFileSync(join(data, 'bom.json'), '\ufeff' + JSON.stringify(cat))
    expect(await json(['catalog', 'apply', join(data, 'bom.json'), ...d])).toMatchObject({ version: 'with-bom' })
  })

  it('an accounts file with several errors lists each with its JSON path, and stores nothing', async () => {
    const bad = sampleAccounts({ customers: 2, devicesPerAccount: 1 }) as unknown as Record<string, any>
    bad.customers[0].accounts[0].timezone = 'Mars/Olympus'
    bad.customers[0].accounts[0].bill_cycle_day = 31
    bad.customers[1].accounts[0].subscriptions[0].devices[0].from = '2026-10-01'
    bad.customers[1].accounts[0].subscriptions[0].sttaus = 'active'
    // A parent that is neither in the file nor stored: in the same list, not left for a second run.
    bad.customers[1].accounts[0].parent_account = 'ghost'
    const r = await rateflow(['accounts', 'apply', writeJson(join(data, 'bad-accounts.json'), bad), ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/\$\.customers\[1\]\.accounts\[0\]\.parent_account: account "a-002" names parent account "ghost", which is neither in this file nor stored/)
    expect(r.stderr).toMatch(/\$\.customers\[0\]\.accounts\[0\]\.timezone: unknown IANA time zone "Mars\/Olympus"/)
    expect(r.stderr).toMatch(/\$\.customers\[0\]\.accounts\[0\]\.bill_cycle_day/)
    expect(r.stderr).toMatch(/\$\.customers\[1\]\.accounts\[0\]\.subscriptions\[0\]\.devices\[0\]\.from: "2026-10-01" is not an ISO-8601 time with offset/)
    expect(r.stderr).toMatch(/\$\.customers\[1\]\.accounts\[0\]\.subscriptions\[0\]\.sttaus: unknown field/)
  })

  it('analysts cannot change the store through query', async () => {
    const r = await rateflow(['query', 'DROP TABLE rated_usage', ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/DROP is not allowed for read-only queries/)
    const [row] = await query<{ n: string }>(data, 'SELECT count() AS n FROM rated_usage')
    expect(Number(row!.n)).toBeGreaterThan(0)
  })
})

function roundHalfEven(num: bigint, den: bigint): bigint {
  const q = num / den
  const r = num % den
  if (r * 2n > den || (r * 2n === den && q % 2n === 1n)) return q + 1n
  return q
}
function fmt9(v: bigint): string {
  const s = v.toString().padStart(10, '0')
  const int = s.slice(0, -9).replace(/^0+(?=\d)/, '')
  const frac = s.slice(-9).replace(/0+$/, '')
  return frac ? `${int}.${frac}` : int
}
