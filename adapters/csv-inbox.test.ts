import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { ErrorCode, RateflowError } from '../common/errors.js'
import type { Logger } from '../common/logger.js'
import type { UsageBatch } from '../rating-core/record.js'
import { CsvInbox, checkCsvInboxEntries } from './csv-inbox.js'

// A file named boom.csv fails its check as a defect would (a TypeError), every time.
vi.mock('./csv.js', async (importOriginal) => {
  const csv = await importOriginal<typeof import('./csv.js')>()
  return {
    ...csv,
    csvFileProblems: (path: string, options?: csv.CsvCheckOptions) =>
      path.endsWith('boom.csv') ? Promise.reject(new TypeError('target.startsWith is not a function')) : csv.csvFileProblems(path, options),
  }
})

const tmp = mkdtempSync(join(tmpdir(), 'rateflow-inbox-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))
let dirs = 0

const HEADER = 'event_id,event_time,device_id,metric,quantity'
const csv = (...ids: string[]) => [HEADER, ...ids.map((id) => `${id},2026-10-01T00:00:00Z,d-1,api_calls,1`)].join('\n') + '\n'

/** What the inbox logged, by level: the message and the file it names. */
type Logged = Array<{ level: string; msg: string; file?: string; err?: unknown }>

/** A watch folder and an inbox on it that polls every 10 ms; `sink` stores batches unless told otherwise. */
function inbox(sink?: (b: UsageBatch) => Promise<void>) {
  const watch = join(tmp, `inbox-${++dirs}`)
  mkdirSync(watch)
  const batches: UsageBatch[] = []
  const logged: Logged = []
  const log = (level: string) => (o: { file?: string; err?: unknown }, msg: string) => void logged.push({ level, msg, ...o })
  const logger = { warn: log('warn'), error: log('error'), info: log('info'), debug: log('debug') } as unknown as Logger
  const a = new CsvInbox({ watch, source: 'csv:t' }, { sink: sink ?? (async (b) => void batches.push(b)), logger, pollMs: 10 })
  return { watch, a, batches, logged, ids: () => batches.flatMap((b) => b.records.map((r) => r.event_id)) }
}

async function until(what: string, ok: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('checkCsvInboxEntries', () => {
  it('accepts watch, source and a columns mapping onto CSV columns and dim.<name>', () => {
    const r = checkCsvInboxEntries([{ watch: './inbox', source: 'csv:drop', columns: { ts: 'event_time', region: 'dim.region' } }])
    expect(r.problems).toEqual([])
    expect(r.options).toEqual([{ watch: './inbox', source: 'csv:drop', columns: { ts: 'event_time', region: 'dim.region' } }])
  })

  it('reports every problem with its path, including a columns target that is no CSV column', () => {
    const r = checkCsvInboxEntries([
      { watch: './a', source: 'csv:a', columns: { ts: 'evnt_time', region: 'dim.', n: 3, 'Event Time': 'time' } },
      { source: 'csv:b', colour: 'red' },
      'x',
    ])
    expect(r.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      '$.adapters.csv[0].columns.ts: must be one of event_id, event_time, device_id, account_id, subscription_id, metric, quantity or dim.<name>, got "evnt_time"',
      '$.adapters.csv[0].columns.region: must be one of event_id, event_time, device_id, account_id, subscription_id, metric, quantity or dim.<name>, got "dim."',
      '$.adapters.csv[0].columns.n: must be a string',
      // A CSV header with a space or a dot is quoted: `columns.Event Time` read as two names.
      '$.adapters.csv[0].columns["Event Time"]: must be one of event_id, event_time, device_id, account_id, subscription_id, metric, quantity or dim.<name>, got "time"',
      '$.adapters.csv[1].colour: unknown key',
      '$.adapters.csv[1].watch: is required',
      '$.adapters.csv[2]: must be an object',
    ])
    expect(r.options).toEqual([])
  })

  it('holds a source to the rule every adapter source follows', () => {
    const r = checkCsvInboxEntries([{ watch: './a', source: 'bad source!' }])
    expect(r.problems.map((p) => `${p.path}: ${p.message}`)).toEqual(['$.adapters.csv[0].source: must be letters, digits and _ . : @ - (e.g. "csv:drop")'])
    expect(r.options).toEqual([])
  })
})

const LINK_WARNING = 'CSV inbox: this entry is a symbolic link, which the inbox does not follow (put the file itself in the folder); skipped'

/** A file beside the watched folder (not in it), for links to point at. */
function writeOutside(watch: string, content: string): string {
  const f = join(watch, '..', `outside-${Math.random().toString(36).slice(2)}.csv`)
  writeFileSync(f, content)
  return f
}

describe('CsvInbox', () => {
  const unreadable: Array<[string, string, (at: string, watch: string) => void, string]> = [
    ['that is a dangling symbolic link', 'a.csv', (at, watch) => symlinkSync(join(watch, 'nowhere'), at), LINK_WARNING],
    // Whoever may write the folder linked x.csv to a file only rateflow could read: its lines came back in failed/'s
    // error file and rejected_usage. A link to a good CSV file is not read either (the warning says to put the file in).
    ['that is a symbolic link to a file outside the folder', 'l.csv', (at, watch) => symlinkSync(writeOutside(watch, csv('secret1')), at), LINK_WARNING],
    ['that is no regular file (a directory named x.csv)', 'h-dir.csv', (at) => mkdirSync(at), 'CSV inbox: this entry is not a regular file (a directory?); skipped'],
  ]
  for (const [what, name, make, warning] of unreadable) {
    it(`skips an entry ${what}, warning once, leaves it in place and reads the other files`, async () => {
      const { watch, a, ids, logged } = inbox()
      make(join(watch, name), watch)
      writeFileSync(join(watch, 'b.csv'), csv('b1'))
      await a.start()
      try {
        await until('b.csv in done/', () => existsSync(join(watch, 'done', 'b.csv')))
        await new Promise((r) => setTimeout(r, 100))
        // Shown in /v1/stats, where the one warning may have left the log.
        expect(a.stats.skippedEntries).toBe(1)
      } finally {
        await a.stop()
      }
      expect(ids()).toEqual(['b1'])
      expect(logged.map((l) => [l.level, l.msg, l.file])).toEqual([['warn', warning, name]])
      expect(readdirSync(watch).sort()).toEqual([name, 'done', 'processing'].sort())
    })
  }

  for (const sub of ['processing', 'done', 'failed']) {
    it(`reads and moves nothing while ${sub} in the folder is a symbolic link, warning once; goes on once it is a folder`, async () => {
      const { watch, a, ids, logged } = inbox()
      // A folder only rateflow may read, with a CSV-shaped file: linked as processing/, it was read (its lines shown in
      // failed/) and its files moved out of it.
      const secret = join(watch, '..', `secret-${sub}-${Math.random().toString(36).slice(2)}`)
      mkdirSync(secret)
      writeFileSync(join(secret, 'shadow.csv'), csv('s1'))
      symlinkSync(secret, join(watch, sub))
      writeFileSync(join(watch, 'b.csv'), csv('b1'))
      await a.start()
      try {
        await until('the warning', () => logged.length > 0)
        await new Promise((r) => setTimeout(r, 100))
        expect(ids()).toEqual([])
        expect(readdirSync(secret)).toEqual(['shadow.csv'])
        expect(readdirSync(watch).sort()).toEqual(['b.csv', sub].sort())
        expect(logged.map((l) => [l.level, l.msg, l.file])).toEqual([
          ['warn', `CSV inbox: ${sub} in the folder is a symbolic link: nothing is read or moved until it is a folder of its own`, `${sub}/`],
        ])
        expect(a.stats.skippedEntries).toBe(1)
        rmSync(join(watch, sub))
        await until('b.csv in done/', () => existsSync(join(watch, 'done', 'b.csv')))
        expect(a.stats.skippedEntries).toBe(0)
      } finally {
        await a.stop()
      }
      expect(ids()).toEqual(['b1'])
      expect(readdirSync(secret)).toEqual(['shadow.csv'])
    })
  }

  it('a file that fails in a way of its own again and again goes to failed/ with the error; the files after it are read meanwhile', async () => {
    const { watch, a, ids, logged } = inbox()
    writeFileSync(join(watch, 'boom.csv'), csv('x1'))
    writeFileSync(join(watch, 'c.csv'), csv('c1'))
    await a.start()
    try {
      await until('boom.csv in failed/', () => existsSync(join(watch, 'failed', 'boom.csv.error.txt')))
      await until('c.csv in done/', () => existsSync(join(watch, 'done', 'c.csv')))
    } finally {
      await a.stop()
    }
    expect(ids()).toEqual(['c1'])
    expect(a.stats).toMatchObject({ files: 1, failedFiles: 1 })
    const text = readFileSync(join(watch, 'failed', 'boom.csv.error.txt'), 'utf8')
    expect(text).toMatch(/^CSV file boom\.csv: could not be ingested, 3 times in a row: target\.startsWith is not a function\n  nothing of it was published in the last attempt\nTypeError/)
    expect(logged.filter((l) => l.file === 'boom.csv').map((l) => l.msg)).toEqual([
      'CSV inbox: reading the file failed; it is tried again, the next files go on',
      'CSV inbox: reading the file failed; it is tried again, the next files go on',
      'CSV inbox: the file failed again and again; moved to failed/',
    ])
  })

  it('a queue that refuses batches fails no file: the files stay and are read once it takes them again', async () => {
    let down = true
    const stored: UsageBatch[] = []
    let refused = 0
    const { watch, a } = inbox(async (b) => {
      if (down) {
        refused++
        throw new RateflowError(ErrorCode.ServiceUnavailable, 'publishing batch failed: timeout')
      }
      stored.push(b)
    })
    writeFileSync(join(watch, 'a.csv'), csv('a1'))
    writeFileSync(join(watch, 'b.csv'), csv('b1'))
    await a.start()
    try {
      await until('ten refusals', () => refused >= 10)
      expect(existsSync(join(watch, 'failed'))).toBe(false)
      down = false
      await until('both files in done/', () => existsSync(join(watch, 'done', 'a.csv')) && existsSync(join(watch, 'done', 'b.csv')))
    } finally {
      await a.stop()
    }
    expect(stored.flatMap((b) => b.records.map((r) => r.event_id))).toEqual(['a1', 'b1'])
    expect(a.stats).toMatchObject({ files: 2, failedFiles: 0 })
  })

  it('a file renamed in under the name of the one being read is read too, not moved to done/ unread', async () => {
    let release: (() => void) | undefined
    const held = new Promise<void>((r) => (release = r))
    const stored: UsageBatch[] = []
    let publishing = false
    const { watch, a } = inbox(async (b) => {
      // The first file's batch (the file read whole) waits until the second file has taken its name in the folder.
      publishing = true
      if (stored.length === 0) await held
      stored.push(b)
    })
    writeFileSync(join(tmp, 'big.tmp'), csv('big1', 'big2'))
    writeFileSync(join(tmp, 'small.tmp'), csv('small1'))
    renameSync(join(tmp, 'big.tmp'), join(watch, 'usage.csv'))
    await a.start()
    try {
      await until('the first file published', () => publishing)
      renameSync(join(tmp, 'small.tmp'), join(watch, 'usage.csv'))
      release!()
      await until('the second file read', () => stored.some((b) => b.records.some((r) => r.event_id === 'small1')))
      await until('two files in done/', () => readdirSync(join(watch, 'done')).length === 2)
    } finally {
      release!()
      await a.stop()
    }
    expect(stored.flatMap((b) => b.records.map((r) => r.event_id))).toEqual(['big1', 'big2', 'small1'])
    expect(readdirSync(join(watch, 'processing'))).toEqual([])
    expect(a.stats).toMatchObject({ files: 2, rows: 3 })
  })

  it('a file left in processing/ (a crash while it was read) is read first at start, with the same ids and origins as from the folder', async () => {
    // No event_id column: the ids are content ids, which must not change with the folder the file is read from.
    const content = 'event_time,device_id,metric,quantity\n2026-10-01T00:00:00Z,d-1,api_calls,1\n2026-10-01T00:01:00Z,d-1,api_calls,2\n'
    const first = inbox()
    writeFileSync(join(first.watch, 'usage.csv'), content)
    await first.a.start()
    await until('usage.csv in done/', () => existsSync(join(first.watch, 'done', 'usage.csv')))
    await first.a.stop()

    const again = inbox()
    mkdirSync(join(again.watch, 'processing'))
    writeFileSync(join(again.watch, 'processing', 'usage.csv'), content)
    writeFileSync(join(again.watch, 'later.csv'), csv('l1'))
    await again.a.start()
    try {
      await until('both in done/', () => existsSync(join(again.watch, 'done', 'usage.csv')) && existsSync(join(again.watch, 'done', 'later.csv')))
    } finally {
      await again.a.stop()
    }
    const view = (bs: UsageBatch[]) => bs.flatMap((b) => b.records.map((r) => [r.event_id, r.origin]))
    expect(view(again.batches).slice(0, 2)).toEqual(view(first.batches))
    expect(view(first.batches).map(([, origin]) => origin)).toEqual(['usage.csv:2', 'usage.csv:3'])
    expect(again.ids()[2]).toBe('l1')
    expect(readdirSync(join(again.watch, 'processing'))).toEqual([])
  })

  it('takes file names in any case: USAGE.CSV, and USAGE.CSV.GZ gunzipped', async () => {
    const { watch, a, ids } = inbox()
    writeFileSync(join(watch, 'A.CSV'), csv('u1'))
    writeFileSync(join(watch, 'B.Csv.GZ'), gzipSync(csv('g1')))
    await a.start()
    try {
      await until('both in done/', () => existsSync(join(watch, 'done', 'A.CSV')) && existsSync(join(watch, 'done', 'B.Csv.GZ')))
    } finally {
      await a.stop()
    }
    expect(ids()).toEqual(['u1', 'g1'])
    expect(a.stats).toMatchObject({ files: 2, failedFiles: 0 })
  })
})
