import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ingestCsv } from '../cli/ingest.js'
import { fileType } from '../pipeline/store.js'
import { chString, chTime, tsv, tsvMap } from '../pipeline/tsv.js'
import type { Store } from '../pipeline/store.js'
import { writeE2eScenario } from './e2e.js'
import { median, ratio, saveResult, withTempRuntime } from './results.js'
import { sampleCsvLines } from './sample-data.js'

/** The input formats compared: the rater's (TabSeparated) and two binary ones ClickHouse reads without text parsing. */
export const INSERT_FORMATS = ['TabSeparated', 'RowBinary', 'Native'] as const
export type InsertFormat = (typeof INSERT_FORMATS)[number]

/** One format's figures: the median over the rounds of the CPU (all of this process's threads) per event. */
export interface InsertFormatResult {
  format: InsertFormat
  /** Bytes per event of both tables' rows in this format. */
  bytes_per_event: number
  cpu_us_per_event_median: number
  wall_us_per_event_median: number
  /** cpu_us_per_event_median of TabSeparated / this one's: above 1 is cheaper than what the rater inserts. */
  cpu_ratio_vs_tsv: number
}

/**
 * What the store's inserts would cost in another input format. Rates `events` sample events end to end once
 * (as `bench e2e` does), reads back every row the run stored (rated_usage and usage_events) in each format, then
 * inserts the same rows into copy tables from a file, as the embedded store does (`INSERT … SELECT FROM file()`,
 * LowCardinality read as String, `optimize_on_insert = 0`), formats alternating round by round. Background merges
 * are stopped on the copies, so the figures are the inserts' own CPU: parsing, sorting, compressing, writing.
 * The JavaScript cost of producing binary rows is not in these figures.
 */
export async function benchInsertFormats(events = 300_000, rounds = 5): Promise<InsertFormatResult[]> {
  // Embedded only: the inserts read files of this process's machine (file()).
  return withTempRuntime(async (rt, dir) => {
    const csv = await writeE2eScenario(rt, dir, events)
    await ingestCsv(rt, { files: [csv], source: 'csv:bench', wait: true })
    const store = await rt.store()
    const tables = ['rated_usage', 'usage_events'] as const
    const files = new Map<string, { path: string; structure: string; bytes: number }>()
    /** Rows each table holds after the run, as text (a count is a UInt64). */
    const stored = new Map<string, string>()
    for (const t of tables) {
      const [n] = await store.rows<{ n: string }>(`SELECT toString(count()) AS n FROM ${t}`)
      stored.set(t, n!.n)
      const structure = (await store.columns(t)).map((c) => `${c.name} ${fileType(c.type)}`).join(', ')
      await store.command(`CREATE TABLE IF NOT EXISTS bench_${t} AS ${t}`)
      await store.command(`SYSTEM STOP MERGES bench_${t}`)
      for (const format of INSERT_FORMATS) {
        const rs = await store.client.exec({ query: `SELECT * FROM ${t} FORMAT ${format}` })
        const chunks: Buffer[] = []
        for await (const c of rs.stream) chunks.push(Buffer.from(c as Uint8Array))
        const bytes = Buffer.concat(chunks)
        const path = join(dir, `${t}.${format}`)
        writeFileSync(path, bytes)
        files.set(`${t} ${format}`, { path, structure, bytes: bytes.length })
      }
    }
    const samples = new Map<InsertFormat, Array<{ cpu: number; wall: number }>>(INSERT_FORMATS.map((f) => [f, []]))
    for (let round = 0; round < rounds; round++) {
      for (const format of INSERT_FORMATS) {
        let cpu = 0
        let wall = 0
        for (const t of tables) {
          const f = files.get(`${t} ${format}`)!
          const c0 = process.cpuUsage()
          const w0 = performance.now()
          await store.command(
            `INSERT INTO bench_${t} SELECT * FROM file(${chString(f.path)}, '${format}', ${chString(f.structure)}) SETTINGS optimize_on_insert = 0`,
          )
          const c = process.cpuUsage(c0)
          cpu += c.user + c.system
          wall += (performance.now() - w0) * 1000
        }
        samples.get(format)!.push({ cpu: cpu / events, wall: wall / events })
      }
      // Every format stored every row: a format that parsed into fewer rows would only look fast.
      for (const t of tables) {
        const [copied] = await store.rows<{ n: string }>(`SELECT toString(count()) AS n FROM bench_${t}`)
        const want = BigInt(stored.get(t)!) * BigInt(INSERT_FORMATS.length)
        if (BigInt(copied!.n) !== want) throw new Error(`bench insert-formats: bench_${t} holds ${copied!.n} rows after a round, expected ${want}`)
        await store.command(`TRUNCATE TABLE bench_${t}`)
      }
    }
    const cpuOf = (f: InsertFormat) => median(samples.get(f)!.map((s) => s.cpu))
    return INSERT_FORMATS.map((format) => ({
      format,
      bytes_per_event: Math.round(tables.reduce((n, t) => n + files.get(`${t} ${format}`)!.bytes, 0) / events),
      cpu_us_per_event_median: +cpuOf(format).toFixed(2),
      wall_us_per_event_median: +median(samples.get(format)!.map((s) => s.wall)).toFixed(2),
      cpu_ratio_vs_tsv: ratio(cpuOf('TabSeparated'), cpuOf(format)),
    }))
  })
}

/** The sample's usage events as the pool has them after validation (one source, one batch id, time in ms). */
interface UsageInput {
  event_id: string
  source: string
  iso: string
  ms: number
  device_id: string
  metric: string
  quantity: string
  dimensions: Record<string, string>
}

const RECEIVED_MS = Date.parse('2026-11-22T18:00:00.000Z')
const BATCH_ID = 'csv:bench:0123456789abcdef:0123456789ab:17'

/** usage_events rows of `b` as TabSeparated, built as staging builds them, joined and encoded to UTF-8 (as on their way to the spool file). */
export function usageRowsTsv(b: readonly UsageInput[]): Buffer {
  const tail = '\t' + chTime(new Date(RECEIVED_MS).toISOString()) + '\t' + tsv(BATCH_ID) + '\n'
  const lines = new Array<string>(b.length)
  for (let i = 0; i < b.length; i++) {
    const r = b[i]!
    const dims = Object.keys(r.dimensions).length ? '\t' + tsvMap(r.dimensions) : '\t{}'
    lines[i] = tsv(r.source) + '\t' + tsv(r.event_id) + '\t' + chTime(r.iso) + '\t' + tsv(r.device_id) + '\t\t\t' + tsv(r.metric) + '\t' + r.quantity + dims + tail
  }
  return Buffer.from(lines.join(''))
}

/**
 * A minimal RowBinary writer, enough for usage_events rows with the quantity as text (the INSERT casts it to its
 * Decimal column, as it casts LowCardinality's String): a measuring prototype, not the store's code.
 */
class RowBinaryWriter {
  buf: Buffer
  pos = 0
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size)
  }
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(b, 0, 0, this.pos)
    this.buf = b
  }
  byte(v: number): void {
    this.ensure(1)
    this.buf[this.pos++] = v
  }
  /** A String: its UTF-8 length as a LEB128 varint, then the bytes (ASCII copied char by char). */
  str(s: string): void {
    const n = s.length
    this.ensure(n * 3 + 5)
    const buf = this.buf
    let p = this.pos
    if (n < 128) {
      buf[p] = n
      let i = 0
      for (; i < n; i++) {
        const c = s.charCodeAt(i)
        if (c > 127) break
        buf[p + 1 + i] = c
      }
      if (i === n) {
        this.pos = p + 1 + n
        return
      }
    }
    let v = Buffer.byteLength(s)
    while (v >= 128) {
      buf[p++] = (v & 127) | 128
      v >>>= 7
    }
    buf[p++] = v
    this.pos = p + buf.write(s, p)
  }
  /** A DateTime64(3): epoch ms as a little-endian Int64 (ms ≥ 0 here). */
  ms(ms: number): void {
    this.ensure(8)
    const lo = ms % 4_294_967_296
    this.buf.writeUInt32LE(lo, this.pos)
    this.buf.writeUInt32LE((ms - lo) / 4_294_967_296, this.pos + 4)
    this.pos += 8
  }
  bytes(src: Uint8Array): void {
    this.ensure(src.length)
    this.buf.set(src, this.pos)
    this.pos += src.length
  }
}

let rowsWriter: RowBinaryWriter | undefined

/** usage_events rows of `b` as RowBinary, the quantity as text; what repeats in a batch (source, metric, batch id) encoded once. */
export function usageRowsRowBinary(b: readonly UsageInput[]): Buffer {
  const once = (s: string) => {
    const o = new RowBinaryWriter(s.length * 3 + 5)
    o.str(s)
    return o.buf.subarray(0, o.pos)
  }
  // One buffer for every batch, as a staging thread would keep; each batch's rows leave as a copy of their own.
  const w = (rowsWriter ??= new RowBinaryWriter(1 << 20))
  w.pos = 0
  const source = once(b[0]?.source ?? '')
  const batch = once(BATCH_ID)
  const metrics = new Map<string, Uint8Array>()
  for (const r of b) {
    w.bytes(r.source === b[0]!.source ? source : once(r.source))
    w.str(r.event_id)
    w.ms(r.ms)
    w.str(r.device_id)
    w.byte(0) // account_id ''
    w.byte(0) // subscription_id ''
    let m = metrics.get(r.metric)
    if (m === undefined) metrics.set(r.metric, (m = once(r.metric)))
    w.bytes(m)
    w.str(r.quantity)
    const keys = Object.keys(r.dimensions)
    w.byte(keys.length)
    for (const k of keys) {
      w.str(k)
      w.str(r.dimensions[k]!)
    }
    w.ms(RECEIVED_MS)
    w.bytes(batch)
  }
  return Buffer.from(w.buf.subarray(0, w.pos))
}

/** One way of building the rows: JavaScript CPU per event (median of the rounds) and bytes per event. */
export interface RowBuildResult {
  way: 'TabSeparated, joined, UTF-8' | 'RowBinary'
  us_per_event_median: number
  bytes_per_event: number
}

/**
 * Building usage_events rows in JavaScript, one thread, batches of 1,000 sample events: as TabSeparated (as staging
 * builds them, then joined and encoded as they are on the way to the spool file; the rater also flattens them once
 * more in between, not counted here) against RowBinary. Both are inserted first and must give the same rows.
 */
export async function benchRowBuilding(store: Store, events = 200_000, rounds = 9): Promise<RowBuildResult[]> {
  const batches: UsageInput[][] = []
  let batch: UsageInput[] = []
  let header = true
  for (const line of sampleCsvLines({ events, size: { customers: 50, devicesPerAccount: 10 }, seed: 3 })) {
    if (header) {
      header = false
      continue
    }
    const [event_id, time, device_id, , , metric, quantity, region] = line.split(',') as string[]
    const ms = Date.parse(time!)
    batch.push({ event_id: event_id!, source: 'csv:bench', iso: new Date(ms).toISOString(), ms, device_id: device_id!, metric: metric!, quantity: quantity!, dimensions: region ? { region } : {} })
    if (batch.length === 1000) {
      batches.push(batch)
      batch = []
    }
  }
  if (batch.length) batches.push(batch)
  // Same rows either way, as ClickHouse reads them.
  const cols = await store.columns('usage_events')
  const dir = mkdtempSync(join(tmpdir(), 'rateflow-rows-'))
  try {
    const dumps: string[] = []
    for (const [format, rows, decimalAsText] of [['TabSeparated', usageRowsTsv(batches[0]!), false], ['RowBinary', usageRowsRowBinary(batches[0]!), true]] as const) {
      const structure = cols.map((c) => `${c.name} ${decimalAsText && c.type.startsWith('Decimal') ? 'String' : fileType(c.type)}`).join(', ')
      const file = join(dir, `rows.${format}`)
      writeFileSync(file, rows)
      await store.command('CREATE TABLE IF NOT EXISTS bench_rows AS usage_events')
      await store.command('TRUNCATE TABLE bench_rows')
      await store.command(`INSERT INTO bench_rows SELECT * FROM file(${chString(file)}, '${format}', ${chString(structure)})`)
      dumps.push(await store.text('SELECT * FROM bench_rows ORDER BY source, event_id', 'TabSeparated'))
    }
    if (dumps[0] !== dumps[1] || dumps[0]!.split('\n').length !== batches[0]!.length + 1) {
      throw new Error('bench insert-formats: the RowBinary rows differ from the TabSeparated ones')
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const measure = (way: RowBuildResult['way'], build: (b: readonly UsageInput[]) => Buffer): RowBuildResult => {
    const us: number[] = []
    let bytes = 0
    for (let round = 0; round < rounds; round++) {
      bytes = 0
      const t = performance.now()
      for (const b of batches) bytes += build(b).length
      us.push(((performance.now() - t) * 1000) / events)
    }
    return { way, us_per_event_median: +median(us).toFixed(3), bytes_per_event: Math.round(bytes / events) }
  }
  const out: RowBuildResult[] = []
  // Alternating, twice each: the second pair is the one reported (JIT-compiled both).
  for (let i = 0; i < 2; i++) {
    out[0] = measure('TabSeparated, joined, UTF-8', usageRowsTsv)
    out[1] = measure('RowBinary', usageRowsRowBinary)
  }
  return out
}

/** `rateflow bench insert-formats`: BENCH_EVENTS sets the size (default 300,000), BENCH_ROUNDS the rounds (5). */
export async function run(out: (s: string) => void): Promise<number> {
  const events = Number(process.env.BENCH_EVENTS ?? 300_000)
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5)
  const res = await benchInsertFormats(events, rounds)
  out(`benchmark insert-formats: ${events} events' rows (rated_usage + usage_events), ${rounds} rounds, medians, merges stopped`)
  out('  format         bytes/event   CPU µs/event   wall µs/event   CPU vs TabSeparated')
  for (const r of res) {
    out(`  ${r.format.padEnd(14)} ${String(r.bytes_per_event).padStart(11)}   ${r.cpu_us_per_event_median.toFixed(2).padStart(12)}   ${r.wall_us_per_event_median.toFixed(2).padStart(13)}   ${r.cpu_ratio_vs_tsv.toFixed(2)}×`)
  }
  const build = await withTempRuntime(async (rt) => benchRowBuilding(await rt.store()))
  out('building usage_events rows in JavaScript, one thread, 200,000 events (same rows as ClickHouse reads them: checked)')
  for (const b of build) out(`  ${b.way.padEnd(28)} ${b.us_per_event_median.toFixed(3)} µs/event   ${b.bytes_per_event} bytes/event`)
  saveResult('insert-formats', { inserts: res, building: build })
  return 0
}
