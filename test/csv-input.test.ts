import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { json, killStrayChildren, query, rateflow, tempDir, writeJson } from './helpers/cli.js'

/**
 * CSV files as users hand them over, on the real services (nats-server with JetStream, embedded ClickHouse, the
 * CLI): bytes that are not UTF-8, a stray quote, a bad file among good ones, gzip cut short, the same file twice.
 * Each case checks that nothing is lost or merged: every row is rated or a reject with its exact input, and
 * the counts reconcile (read = rated + duplicates + rejected + suspended).
 */
const tmp = tempDir()
const data = tmp.dir
const d = ['--data', data]
const HEADER = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity,dim.region'
type Counts = { read: number; rated: number; duplicates: number; rejected: number; suspended: number }
const reconciles = (c: Counts) => c.rated + c.duplicates + c.rejected + c.suspended === c.read

/** A good row: `api_calls` of a bound device in October. */
const row = (id: string, qty = 1) => `${id},2026-10-05T11:00:00Z,fw-001-1,,,api_calls,${qty},`

function file(name: string, content: string | Buffer): string {
  const f = join(data, name)
  mkdirSync(join(f, '..'), { recursive: true })
  writeFileSync(f, content)
  return f
}

async function rejectsOf(source: string): Promise<Array<{ raw: string; reason: string; origin: string }>> {
  return query(data, `SELECT raw, reason, origin FROM rejected_usage WHERE source = '${source}' ORDER BY origin`)
}

async function ratedIds(source: string): Promise<string[]> {
  const rows = await query<{ event_id: string }>(data, `SELECT event_id FROM rated_usage WHERE source = '${source}' ORDER BY event_id`)
  return rows.map((r) => r.event_id)
}

beforeAll(async () => {
  await json(['catalog', 'apply', writeJson(join(data, 'catalog.json'), sampleCatalog()), ...d])
  await json(['accounts', 'apply', writeJson(join(data, 'accounts.json'), sampleAccounts({ customers: 2, devicesPerAccount: 2 })), ...d])
})
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmp.cleanup())

describe('ingest csv keeps what it cannot read', () => {
  it('rows with bytes that are not UTF-8 are rejects holding their exact bytes, never merged into one id', async () => {
    // Two Latin-1 ids that one replacement character would make the same id, a Latin-1 dimension, and valid UTF-8.
    const bytes = Buffer.concat([
      Buffer.from(`${HEADER}\n`),
      Buffer.from('caf\xe9,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1000,\n', 'latin1'),
      Buffer.from('caf\xe8,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,2000,\n', 'latin1'),
      Buffer.from('n3,2026-10-05T11:00:00Z,fw-001-1,,,bytes_out,5,Z\xfcrich\n', 'latin1'),
      Buffer.from(`${row('café-ok')}\n`, 'utf8'),
    ])
    const counts = await json<Counts>(['ingest', 'csv', file('latin1.csv', bytes), '--source', 'csv:latin1', '--wait', ...d])
    expect(counts).toEqual({ read: 4, rated: 1, duplicates: 0, rejected: 3, suspended: 0 })
    expect(await ratedIds('csv:latin1')).toEqual(['café-ok'])
    const rejects = await rejectsOf('csv:latin1')
    expect(rejects.map((r) => r.origin)).toEqual(['latin1.csv:2', 'latin1.csv:3', 'latin1.csv:4'])
    expect(rejects.map((r) => Buffer.from(r.raw.replace(/^base64:/, ''), 'base64').toString('latin1'))).toEqual([
      'caf\xe9,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1000,',
      'caf\xe8,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,2000,',
      'n3,2026-10-05T11:00:00Z,fw-001-1,,,bytes_out,5,Z\xfcrich',
    ])
    expect(rejects[0]!.reason).toBe("latin1.csv:2: byte 0xe9 at offset 3 of the row is not valid UTF-8; raw holds the row's bytes in base64")
    expect(rejects[2]!.reason).toMatch(/^latin1.csv:4: byte 0xfc at offset 48 of the row is not valid UTF-8/)
  })

  it('names the offset of a bad byte in the bytes raw keeps, for a quoted row too', async () => {
    // The position was counted in the row written back from its fields (character 3, of `u2…`), where the stored
    // bytes have the bad byte at offset 5 (after `  "u2`).
    const bytes = Buffer.concat([Buffer.from(`${HEADER}\n`), Buffer.from('  "u2\xff",2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,\n', 'latin1')])
    const counts = await json<Counts>(['ingest', 'csv', file('quoted-latin1.csv', bytes), '--source', 'csv:quoted-latin1', '--wait', ...d])
    expect(counts).toMatchObject({ read: 1, rejected: 1 })
    const [reject] = await rejectsOf('csv:quoted-latin1')
    const raw = Buffer.from(reject!.raw.replace(/^base64:/, ''), 'base64')
    expect(raw.toString('latin1')).toBe('  "u2\xff",2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,')
    expect(reject!.reason).toMatch(/^quoted-latin1.csv:2: byte 0xff at offset 5 of the row is not valid UTF-8/)
    expect(raw[5]).toBe(0xff)
  })

  it('a stray quote costs its own line only: the rows after it are rated', async () => {
    const rows = Array.from({ length: 38 }, (_, i) => row(`q${i + 3}`))
    const text = [HEADER, row('q1'), 'q2,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,"unclosed', ...rows].join('\n') + '\n'
    const counts = await json<Counts>(['ingest', 'csv', file('quote.csv', text), '--source', 'csv:quote', '--wait', ...d])
    expect(counts).toEqual({ read: 40, rated: 39, duplicates: 0, rejected: 1, suspended: 0 })
    const [reject] = await rejectsOf('csv:quote')
    expect(reject).toMatchObject({ origin: 'quote.csv:3', raw: 'q2,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,"unclosed' })
    expect(reject!.reason).toMatch(/quoted field opened on this line is not closed/)
  })

  it('a stray quote "closed" by the next row\'s quoted field rejects both lines, each counted and kept; the rows after are rated', async () => {
    const text = [
      HEADER,
      'r1,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,"Main office',
      'r2,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,7,"Branch, east"',
      row('r3', 2),
    ].join('\n') + '\n'
    const counts = await json<Counts>(['ingest', 'csv', file('stray.csv', text), '--source', 'csv:stray', '--wait', ...d])
    // Which of the two lines were rows cannot be told: neither is billed, both are in rejected_usage whole.
    expect(counts).toEqual({ read: 3, rated: 1, duplicates: 0, rejected: 2, suspended: 0 })
    expect(await ratedIds('csv:stray')).toEqual(['r3'])
    expect((await rejectsOf('csv:stray')).map((r) => [r.origin, r.raw])).toEqual([
      ['stray.csv:2', 'r1,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,"Main office'],
      ['stray.csv:3', 'r2,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,7,"Branch, east"'],
    ])
  })

  it('an event time the store cannot hold (before 1900, years 0000–0099 too, from 2300) is a reject, not a time clamped to the range', async () => {
    const text = [HEADER, row('in-range'), 'y9999,9999-01-01T00:00:00Z,fw-001-1,,,api_calls,1,', 'y1899,1899-12-31T23:59:59Z,fw-001-1,,,api_calls,1,', 'y0026,0026-10-06T00:00:00Z,fw-001-1,,,api_calls,1,'].join('\n') + '\n'
    const counts = await json<Counts>(['ingest', 'csv', file('years.csv', text), '--source', 'csv:years', '--wait', ...d])
    expect(counts).toEqual({ read: 4, rated: 1, duplicates: 0, rejected: 3, suspended: 0 })
    const reasons = (await rejectsOf('csv:years')).map((r) => r.reason)
    expect(reasons).toEqual([
      'years.csv:3: event_time "9999-01-01T00:00:00Z" is outside the range the store holds (1900-01-01T00:00:00Z to 2299-12-31T23:59:59.999Z)',
      'years.csv:4: event_time "1899-12-31T23:59:59Z" is outside the range the store holds (1900-01-01T00:00:00Z to 2299-12-31T23:59:59.999Z)',
      // Year 26, not 1926 (Date.UTC's reading of a two-digit year): refused, where it was held as an unbound 1926 event.
      'years.csv:5: event_time "0026-10-06T00:00:00Z" is outside the range the store holds (1900-01-01T00:00:00Z to 2299-12-31T23:59:59.999Z)',
    ])
  })

  it('a quoted row with a byte that is not UTF-8 keeps its exact bytes, quotes and spaces included', async () => {
    const bad = Buffer.from('q2,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,  "e\xe9u"', 'latin1')
    const text = Buffer.concat([Buffer.from(`${HEADER}\n`), bad, Buffer.from('\n')])
    const counts = await json<Counts>(['ingest', 'csv', file('quoted.csv', text), '--source', 'csv:quoted', '--wait', ...d])
    expect(counts).toMatchObject({ read: 1, rejected: 1 })
    const [reject] = await rejectsOf('csv:quoted')
    expect(Buffer.from(reject!.raw.replace(/^base64:/, ''), 'base64').equals(bad)).toBe(true)
  })

  it('a real character whose UTF-16 form ends in U+DC80–U+DCFF (💀) is no invalid byte, even after one in the file', async () => {
    const text = Buffer.concat([
      Buffer.from(`${HEADER}\n`),
      Buffer.from('bad\xe9,2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,\n', 'latin1'),
      Buffer.from(`${row('skull-💀')}\n`, 'utf8'),
    ])
    const counts = await json<Counts>(['ingest', 'csv', file('emoji.csv', text), '--source', 'csv:emoji', '--wait', ...d])
    expect(counts).toEqual({ read: 2, rated: 1, duplicates: 0, rejected: 1, suspended: 0 })
    expect(await ratedIds('csv:emoji')).toEqual(['skull-💀'])
  })
})

describe('ingest csv checks every file before publishing any', () => {
  it('a bad file among good ones exits 2 naming every problem, and nothing of the good ones is published', async () => {
    const good = file('good.csv', `${HEADER}\n${row('g1')}\n${row('g2')}\n`)
    const bad = file('bad.csv', `${HEADER},colour\n${row('b1')},red\n`)
    const notGzip = file('plain.csv.gz', `${HEADER}\n${row('p1')}\n`)
    const empty = file('empty.csv', '')
    // gzip checks its data at the end: a cut file, and a stored (level 0) one with a changed byte mid-way, whose rows
    // before the check would otherwise have been rated as read (another quantity, another id).
    const rows = Array.from({ length: 3000 }, (_, i) => row(`z${i}`, i + 1))
    const gz = gzipSync([HEADER, ...rows].join('\n') + '\n')
    const cut = file('cut.csv.gz', gz.subarray(0, Math.floor(gz.length * 0.6)))
    const stored = Buffer.from(gzipSync([HEADER, ...rows].join('\n') + '\n', { level: 0 }))
    const at = stored.indexOf('z1500,')
    stored[at] = 'y'.charCodeAt(0)
    const corrupt = file('corrupt.csv.gz', stored)
    const r = await rateflow(['ingest', 'csv', good, bad, notGzip, empty, cut, corrupt, join(data, 'nope.csv'), '--source', 'csv:checked', '--wait', ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/bad\.csv:1 column 9: unknown column "colour"/)
    expect(r.stderr).toMatch(/plain\.csv\.gz: not readable as gzip: incorrect header check \(nothing of it was ingested\)/)
    expect(r.stderr).toMatch(/empty\.csv:1: the file is empty: a header row is required/)
    expect(r.stderr).toMatch(/cut\.csv\.gz: not readable as gzip: unexpected end of file/)
    expect(r.stderr).toMatch(/corrupt\.csv\.gz: not readable as gzip: incorrect data check/)
    expect(r.stderr).toMatch(/nope\.csv: no such file/)
    // Had the good file been published, this rater would rate its batches as well.
    const after = await json<Counts>(['ingest', 'csv', file('other.csv', `${HEADER}\n${row('o1')}\n`), '--source', 'csv:other', '--wait', ...d])
    expect(after).toEqual({ read: 1, rated: 1, duplicates: 0, rejected: 0, suspended: 0 })
    expect(await ratedIds('csv:checked')).toEqual([])
  })

  it('a file whose default source (its name) is no valid source needs --source, before anything is published', async () => {
    const odd = file('a b!.csv', `${HEADER}\n${row('n1')}\n`)
    const r = await rateflow(['ingest', 'csv', file('fine.csv', `${HEADER}\n${row('f1')}\n`), odd, '--wait', ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/a b!\.csv: its default source would be "csv:a b!", and a source must be letters, digits and _ \. : @ -: give --source/)
    expect(await ratedIds('csv:fine')).toEqual([])
    expect(await json<Counts>(['ingest', 'csv', odd, '--source', 'csv:odd', '--wait', ...d])).toMatchObject({ read: 1, rated: 1 })
  })

  it('an empty --source, or one with characters no source may hold, is a usage error', async () => {
    const f = file('s.csv', `${HEADER}\n${row('s1')}\n`)
    const empty = await rateflow(['ingest', 'csv', f, '--source', '', '--wait', ...d])
    expect(empty.code).toBe(2)
    expect(empty.stderr).toMatch(/--source must not be empty/)
    const bad = await rateflow(['ingest', 'csv', f, '--source', 'bad source!', '--wait', ...d])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--source "bad source!": must be letters, digits and _ \. : @ - \(e\.g\. "csv:oct-export"\)/)
    // Given twice: which one was meant? (The last one was taken silently.) So is --data.
    const twice = await rateflow(['ingest', 'csv', f, '--source', 'csv:a', '--source', 'csv:b', '--wait', ...d])
    expect([twice.code, twice.stderr]).toEqual([2, expect.stringMatching(/--source is given more than once/)])
    const dataTwice = await rateflow(['ingest', 'csv', f, '--source', 'csv:a', '--data', data, ...d])
    expect([dataTwice.code, dataTwice.stderr]).toEqual([2, expect.stringMatching(/--data is given more than once/)])
  })

  it('two different files of one name in one command, on their default source, exit 2 naming both: the second would be billed as duplicates', async () => {
    const jan = file('jan/usage.csv', `${HEADER}\n${row('m1', 1000)}\n${row('m2', 2000)}\n`)
    const feb = file('feb/usage.csv', `${HEADER}\n${row('m1', 9000)}\n${row('m2', 8000)}\n`)
    const r = await rateflow(['ingest', 'csv', jan, feb, '--wait', ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${feb}: its default source "csv:usage" is also that of ${jan}, another file`)
    expect(r.stderr).toMatch(/Give each file its own --source \(one command each\), or --source for both when their ids are unique across them/)
    expect(await ratedIds('csv:usage')).toEqual([])
    // One source given for both: the user says their ids are one source's (February's m1 and m2 are January's events).
    expect(await json<Counts>(['ingest', 'csv', jan, feb, '--source', 'csv:jan-feb', '--wait', ...d])).toEqual({ read: 4, rated: 2, duplicates: 2, rejected: 0, suspended: 0 })
  })

  it('names each problem by the path as given, so two files of one name are told apart, and offers no column mapping ingest csv lacks', async () => {
    const a = file('west/site.csv', `${HEADER},colour\n${row('w1')},red\n`)
    const b = file('east/site.csv', `${HEADER}\n${row('e1')}\n`)
    const r = await rateflow(['ingest', 'csv', a, b, '--source', 'csv:sites', ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${a}:1 column 9: unknown column "colour"`)
    expect(r.stderr).toMatch(/ingest csv maps no column: rename it, or map it in the "columns" of a CSV inbox of rateflow run\)/)
    expect(r.stderr).not.toMatch(/or map it in the adapter's "columns"/)
  })

  it('a directory where a file should be is named as one', async () => {
    const r = await rateflow(['ingest', 'csv', data, '--source', 'csv:dir', ...d])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${data}: is a directory, not a CSV file`)
  })
})

describe('ingest csv counts what it is given', () => {
  it('the same file named twice in one command is read twice: its second reading counts duplicates', async () => {
    const f = file('twice.csv', [HEADER, row('t1'), row('t2'), row('t3')].join('\n') + '\n')
    const counts = await json<Counts>(['ingest', 'csv', f, f, '--source', 'csv:twice', '--wait', ...d])
    expect(counts).toEqual({ read: 6, rated: 3, duplicates: 3, rejected: 0, suspended: 0 })
  })

  it('duplicates under a default source (the file name) come with a warning naming --source', async () => {
    const oct = file('oct/usage.csv', `${HEADER}\n${row('u1', 100)}\n`)
    const nov = file('nov/usage.csv', `${HEADER}\n${row('u1', 300)}\n`)
    expect(await json<Counts>(['ingest', 'csv', oct, '--wait', ...d])).toMatchObject({ rated: 1, duplicates: 0 })
    const r = await rateflow(['ingest', 'csv', nov, '--wait', ...d])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ rated: 0, duplicates: 1 })
    expect(r.stderr).toMatch(/default source is csv:<file name>, so if a different file with the same name was ingested before, this one needs its own --source/)
  })

  it('duplicates within one file on its first ingest: the warning names repeated ids as a cause, not only an earlier file', async () => {
    const f = file('repeats/first.csv', `${HEADER}\n${row('p1')}\n${row('p1')}\n`)
    const r = await rateflow(['ingest', 'csv', f, '--wait', ...d])
    expect([r.code, JSON.parse(r.stdout)]).toEqual([0, expect.objectContaining({ rated: 1, duplicates: 1 })])
    expect(r.stderr).toMatch(/their id under the same source was ingested before, or appears earlier in the same file/)
  })
})

describe('ingest csv keeps dimension values as they are', () => {
  it("quotes and backslashes in dim values are stored as given, and a held event released later joins its group", async () => {
    // A value with a quote once failed the flush's insert (and every later one, on the same unacked batch); a
    // backslash was stored doubled, so a released event, read back from suspended_usage, made a group of its own.
    const regions = ["o'brien", 'eu\\west', "st john's \\ 'x'"]
    const lines = regions.flatMap((r, i) => [`q${i}-held,2026-10-05T11:00:00Z,fw-late-1,,,bytes_out,1000000000,"${r}"`, `q${i}-bound,2026-10-05T12:00:00Z,fw-001-1,,,bytes_out,1000000000,"${r}"`])
    const counts = await json<Counts>(['ingest', 'csv', file('dims.csv', [HEADER, ...lines].join('\n') + '\n'), '--source', 'csv:dims', '--wait', ...d])
    expect(counts).toEqual({ read: 6, rated: 3, duplicates: 0, rejected: 0, suspended: 3 })
    const accounts = sampleAccounts({ customers: 2, devicesPerAccount: 2 })
    accounts.customers[0]!.accounts[0]!.subscriptions[0]!.devices!.push({ device_id: 'fw-late-1', from: '2026-10-01T00:00:00Z', to: null })
    await json(['accounts', 'apply', writeJson(join(data, 'accounts-late.json'), accounts), ...d])
    const stored = await query<{ event_id: string; region: string }>(data, "SELECT event_id, dimensions['region'] AS region FROM usage_events WHERE source = 'csv:dims' ORDER BY event_id")
    expect(stored).toEqual(regions.flatMap((r, i) => [{ event_id: `q${i}-bound`, region: r }, { event_id: `q${i}-held`, region: r }]))
    const groups = await query<{ group_key: string; n: string }>(data, "SELECT group_key, count() AS n FROM rated_usage WHERE source = 'csv:dims' GROUP BY group_key")
    expect(groups.map((g) => [JSON.parse(g.group_key)[0], Number(g.n)]).sort()).toEqual(regions.map((r) => [r, 2]).sort())
  })
})
