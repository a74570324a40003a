import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, describe, expect, it } from 'vitest'
import { MicroBatcher } from './batcher.js'
import { csvFileProblems, defaultCsvSource, ingestCsvFile, mapHeader, publishCsvFile } from './csv.js'
import { ValidationError } from '../common/errors.js'
import type { UsageBatch } from '../rating-core/record.js'

const dir = mkdtempSync(join(tmpdir(), 'rateflow-csv-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function ingest(name: string, content: string | Buffer, maxRecords = 1000) {
  const file = join(dir, name)
  writeFileSync(file, content)
  const batches: UsageBatch[] = []
  const batcher = new MicroBatcher(async (b) => void batches.push(b), { maxRecords, maxDelayMs: 10, maxInFlight: 2, batchId: (n) => `t:${n}` })
  const r = await ingestCsvFile(file, { source: 'csv:t' }, batcher)
  await batcher.flush()
  return { read: r.read, records: batches.flatMap((b) => b.records), rejects: batches.flatMap((b) => b.rejects), batches }
}

const HEADER = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity,dim.region'

describe('ingestCsvFile', () => {
  it('gzip cut short while reading (changed after the file check): the rows before the cut, then one reject for the cut row', async () => {
    const rows = Array.from({ length: 3000 }, (_, i) => `z${i},2026-10-05T11:00:00Z,fw-1,,,api_calls,${i + 1},`)
    const gz = gzipSync([HEADER, ...rows].join('\n') + '\n')
    const r = await ingest('cut.csv.gz', gz.subarray(0, Math.floor(gz.length * 0.6)))
    expect(r.rejects).toHaveLength(1)
    const cutAt = r.records.length
    expect(cutAt).toBeGreaterThan(0)
    expect(cutAt).toBeLessThan(3000)
    // Every record is a complete row of the file, in order: none made from the cut row.
    expect(r.records.map((x) => x.raw)).toEqual(rows.slice(0, cutAt))
    const [reject] = r.rejects
    expect(reject).toMatchObject({ source: 'csv:t', origin: `cut.csv.gz:${cutAt + 2}` })
    expect(reject!.reason).toMatch(/^the gzip data is corrupt or cut short here \(unexpected end of file\): the file ends at this row/)
    expect(`${rows.slice(cutAt).join('\n')}\n`.startsWith(reject!.raw)).toBe(true)
    expect(r.read).toBe(cutAt + 1)
  })

  it('maps rows to records: empty cells are absent fields, dimensions from dim.* columns, origin is file:line', async () => {
    const r = await ingest('a.csv', `${HEADER}\r\ne1,2026-10-01T00:00:00Z,fw-1,,,bytes_out,10,eu\r\n\r\ne2,2026-10-01T00:00:01Z,,a-1,,api_calls,3,\r\n`)
    expect(r.read).toBe(2)
    expect(r.records).toEqual([
      { event_id: 'e1', source: 'csv:t', event_time: '2026-10-01T00:00:00Z', metric: 'bytes_out', quantity: '10', raw: 'e1,2026-10-01T00:00:00Z,fw-1,,,bytes_out,10,eu', origin: 'a.csv:2', device_id: 'fw-1', dimensions: { region: 'eu' } },
      { event_id: 'e2', source: 'csv:t', event_time: '2026-10-01T00:00:01Z', metric: 'api_calls', quantity: '3', raw: 'e2,2026-10-01T00:00:01Z,,a-1,,api_calls,3,', origin: 'a.csv:4', account_id: 'a-1', dimensions: {} },
    ])
  })

  it('quoted cells; a row with broken quoting or the wrong column count is a reject with its raw text, and the rows after it go on', async () => {
    const r = await ingest(
      'b.csv',
      [HEADER, 'e1,2026-10-01T00:00:00Z,fw-1,,,bytes_out,"1,5",eu', 'e2,2026-10-01T00:00:00Z,fw-1,,,bytes_out,"7"x,eu', 'e3,2026-10-01T00:00:00Z,fw-1', 'e4,2026-10-01T00:00:00Z,fw-1,,,bytes_out,4,"multi', 'line"', ''].join('\n'),
    )
    expect(r.read).toBe(4)
    expect(r.records.map((x) => [x.event_id, x.quantity, x.raw, x.origin])).toEqual([
      ['e1', '1,5', 'e1,2026-10-01T00:00:00Z,fw-1,,,bytes_out,"1,5",eu', 'b.csv:2'],
      ['e4', '4', 'e4,2026-10-01T00:00:00Z,fw-1,,,bytes_out,4,"multi\nline"', 'b.csv:5'],
    ])
    expect(r.rejects).toEqual([
      { source: 'csv:t', raw: 'e2,2026-10-01T00:00:00Z,fw-1,,,bytes_out,"7"x,eu', origin: 'b.csv:3', reason: expect.stringMatching(/column 7: text after the closing quote/) },
      { source: 'csv:t', raw: 'e3,2026-10-01T00:00:00Z,fw-1', origin: 'b.csv:4', reason: 'has 3 columns, the header has 8' },
    ])
  })

  it('no event_id column: the id is a content hash of the row, the same for the same row', async () => {
    const r = await ingest('c.csv', 'event_time,device_id,metric,quantity\n2026-10-01T00:00:00Z,fw-1,bytes_out,1\n2026-10-01T00:00:00Z,fw-1,bytes_out,1\n')
    expect(r.records).toHaveLength(2)
    expect(r.records[0]!.event_id).toMatch(/^[0-9a-f]{40}$/)
    expect(r.records[1]!.event_id).toBe(r.records[0]!.event_id)
  })

  it('reads .csv.gz, keeps multi-byte characters split across read chunks whole, and waits on backpressure', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => `e${i},2026-10-01T00:00:00Z,fw-ü€-${i},,,bytes_out,${i},région`)
    const r = await ingest('d.csv.gz', gzipSync(Buffer.from([HEADER, ...rows].join('\n') + '\n')), 100)
    expect(r.read).toBe(5000)
    expect(r.records.map((x) => x.raw)).toEqual(rows)
    expect(r.batches.length).toBeGreaterThanOrEqual(50)
  })

  it('a header after blank lines is named by its own line in its problems', async () => {
    const file = join(dir, 'late-header.csv')
    writeFileSync(file, '\n \n\nwhen,device_id,metric\n1,2,3\n')
    expect((await csvFileProblems(file)).map((p) => `${p.path}: ${p.message.replace(/ \(expected.*/, '')}`)).toEqual([
      'late-header.csv:4 column 1: unknown column "when"',
      'late-header.csv:4: required column "event_time" is missing',
      'late-header.csv:4: required column "quantity" is missing',
    ])
  })

  it('a bad header fails the file before anything is published; so does an empty file', async () => {
    await expect(ingest('e.csv', 'when,device\n1,2\n')).rejects.toThrow(ValidationError)
    await expect(ingest('f.csv', '\n\n')).rejects.toThrow(/the file is empty/)
  })
})

describe('mapHeader', () => {
  it('refuses a dim.__proto__ column (each row would drop its value without a trace), naming the column', () => {
    try {
      mapHeader(['event_id', 'event_time', 'device_id', 'metric', 'quantity', 'dim.__proto__'], 'u.csv')
      throw new Error('expected a ValidationError')
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError)
      expect((err as ValidationError).problems).toEqual([{ path: 'u.csv:1 column 6', message: 'dimension name "__proto__" is reserved; give the dimension another name' }])
    }
  })
  it('a header named like a member of every object (constructor, toString, __proto__) is an unknown column, mapped or not', () => {
    for (const columns of [undefined, { ts: 'event_time' }]) {
      try {
        mapHeader(['event_id', 'event_time', 'device_id', 'metric', 'quantity', 'constructor', 'toString', '__proto__'], 'u.csv', columns)
        throw new Error('expected a ValidationError')
      } catch (err) {
        expect(err).toBeInstanceOf(ValidationError)
        expect((err as ValidationError).problems.map((p) => `${p.path}: ${p.message.replace(/ \(expected.*/, '')}`)).toEqual([
          'u.csv:1 column 6: unknown column "constructor"',
          'u.csv:1 column 7: unknown column "toString"',
          'u.csv:1 column 8: unknown column "__proto__"',
        ])
      }
    }
  })
})

describe('publishCsvFile', () => {
  it('cuts a file into the same batches however busy the thread is: by count and size, never by time', async () => {
    const rows = Array.from({ length: 20_500 }, (_, i) => `s${i},2026-10-05T11:00:00Z,fw-1,,,api_calls,1,`)
    const file = join(dir, 'slow.csv')
    writeFileSync(file, [HEADER, ...rows].join('\n') + '\n')
    const sizes: number[] = []
    // The thread kept busy for 60 ms after each batch (as a rater in the same process keeps it), while the reader holds
    // a part-filled batch: the batcher's 50 ms timer cut batches there, so two runs of one file were cut differently.
    const r = await publishCsvFile({ path: file, source: 'csv:slow', batchIdPrefix: 'slow:' }, async (b) => {
      sizes.push(b.records.length)
      setImmediate(() => {
        const until = Date.now() + 60
        while (Date.now() < until) {
          // busy
        }
      })
    })
    expect(r.read).toBe(20_500)
    expect(sizes).toEqual([...Array.from({ length: 20 }, () => 1000), 500])
  }, 30_000)
})

describe('defaultCsvSource', () => {
  it('is the file name without .csv and .gz; a gzipped copy shares its file\'s source whatever the case of .gz', () => {
    expect(defaultCsvSource('/in/usage.csv')).toBe('csv:usage')
    expect(defaultCsvSource('/in/usage.csv.gz')).toBe('csv:usage')
    expect(defaultCsvSource('/in/usage.csv.GZ')).toBe('csv:usage')
    // `.CSV` was never taken off (files ingested so keep their source); its gzipped copy, read since .GZ is, is the same
    // source, where it was csv:USAGE.CSV.GZ and every row was billed again.
    expect(defaultCsvSource('/in/USAGE.CSV')).toBe('csv:USAGE.CSV')
    expect(defaultCsvSource('/in/USAGE.CSV.GZ')).toBe('csv:USAGE.CSV')
  })
})
