import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateAccounts } from '../catalog/accounts.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import { ingestCsv } from '../cli/ingest.js'
import { createLogger } from '../common/logger.js'
import { openRuntime } from '../pipeline/runtime.js'
import { fileType } from '../pipeline/store.js'
import { chString } from '../pipeline/tsv.js'
import { ratio, saveResult } from './results.js'
import { sampleAccounts, sampleCatalog, writeSampleCsv } from './sample-data.js'

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
  const dir = mkdtempSync(join(tmpdir(), 'rateflow-bench-'))
  const rt = openRuntime({ dataDir: join(dir, 'data'), log: createLogger('bench', process.env.RATEFLOW_LOG ?? 'error') })
  try {
    const size = { customers: 50, devicesPerAccount: 10 }
    rt.repo.putCatalog(validateCatalog(sampleCatalog()))
    rt.repo.putAccounts(validateAccounts(sampleAccounts(size)))
    const csv = join(dir, 'usage.csv')
    await writeSampleCsv(csv, { events, size, seed: 3 })
    await ingestCsv(rt, { files: [csv], source: 'csv:bench', wait: true })
    const store = await rt.store()
    const tables = ['rated_usage', 'usage_events'] as const
    const files = new Map<string, { path: string; structure: string; bytes: number }>()
    /** Rows each table holds after the run, as text (a count is a UInt64). */
    const stored = new Map<string, string>()
    for (const t of tables) {
      const [n] = await store.rows<{ n: string }>(`SELECT toString(count()) AS n FROM ${t}`)
      stored.set(t, n!.n)
      const cols = await store.rows<{ name: string; type: string }>(
        `SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = '${t}' ORDER BY position`,
      )
      const structure = cols.map((c) => `${c.name} ${fileType(c.type)}`).join(', ')
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
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const cpuOf = (f: InsertFormat) => median(samples.get(f)!.map((s) => s.cpu))
    return INSERT_FORMATS.map((format) => ({
      format,
      bytes_per_event: Math.round(tables.reduce((n, t) => n + files.get(`${t} ${format}`)!.bytes, 0) / events),
      cpu_us_per_event_median: +cpuOf(format).toFixed(2),
      wall_us_per_event_median: +median(samples.get(format)!.map((s) => s.wall)).toFixed(2),
      cpu_ratio_vs_tsv: ratio(cpuOf('TabSeparated'), cpuOf(format)),
    }))
  } finally {
    await rt.close()
    rmSync(dir, { recursive: true, force: true })
  }
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
  saveResult('insert-formats', res)
  return 0
}
