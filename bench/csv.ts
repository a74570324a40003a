import { createReadStream, statSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'fast-csv'
import { DEFAULT_BATCHING } from '../adapters/batcher.js'
import { csvBatchIdPrefix, newRunId, publishCsvFile } from '../adapters/csv.js'
import { CsvRowParser } from '../adapters/csv-parser.js'
import { adapterTable, envInt, openHarness, type StoredCounts } from './adapter-harness.js'
import { median, perSecond, saveResult } from './results.js'
import { writeSampleCsv } from './sample-data.js'

/** The issue's goal for CSV on the 2-core reference machine. */
export const CSV_GOAL_ROWS_PER_S = 300_000

/** One run's figures; rates are medians over the rounds, `rounds` has each round's. */
export interface CsvBenchResult {
  rows: number
  file_bytes: number
  rateflow_rows_per_s: number
  raw_parse_rows_per_s: number
  fast_csv_parse_rows_per_s: number
  raw_jetstream_rows_per_s: number
  ratio_to_parse: number
  ratio_to_jetstream: number
  goal_rows_per_s: number
  goal_met: boolean
  rounds: Array<{ rateflow: number; parse: number; fast_csv: number; jetstream: number }>
  stream: StoredCounts
}

/** fast-csv over the file with the options the adapter used with it, counting rows: no mapping, no publish. */
async function fastCsvParse(file: string): Promise<number> {
  let rows = 0
  const parser = createReadStream(file, { highWaterMark: 1 << 20 }).pipe(parse({ headers: false, ignoreEmpty: true, trim: false }))
  for await (const _row of parser as AsyncIterable<string[]>) rows++
  return rows - 1
}

/** The adapter's own row parser over the file, counting rows: reading and parsing only, no mapping, no publish. */
async function rowParse(file: string): Promise<number> {
  let rows = 0
  const parser = new CsvRowParser()
  const input = createReadStream(file, { highWaterMark: 1 << 16, encoding: 'utf8' })
  for await (const chunk of input as AsyncIterable<string>) rows += parser.push(chunk).length
  return rows + parser.end().length - 1
}

/**
 * CSV file → adapters/csv → micro-batches → JetStream (USAGE), rows/s from opening the file to the last batch
 * stored, as `rateflow ingest csv` without --wait does it. Raw rates of the same path in the same run: reading and
 * parsing the same file with nothing else (with the adapter's row parser, and with fast-csv, the general-purpose
 * parser it replaced), and JetStream storing the very same batch bytes with nothing else.
 */
export async function benchCsv(rows: number, roundCount: number): Promise<CsvBenchResult> {
  const h = await openHarness('csv')
  try {
    const file = join(h.dir, 'usage.csv')
    await writeSampleCsv(file, { events: rows, size: { customers: 50, devicesPerAccount: 10 }, seed: 3 })
    const fileBytes = statSync(file).size
    const source = 'csv:bench'
    const rounds: CsvBenchResult['rounds'] = []
    let bytes: Uint8Array[] | undefined
    for (let round = 1; round <= roundCount; round++) {
      // 1. Raw: reading and parsing alone, with the adapter's parser and with fast-csv (round 1 also warms the
      // page cache for what follows).
      let t = performance.now()
      let parsed = await fastCsvParse(file)
      const fastCsvMs = performance.now() - t
      if (parsed !== rows) throw new Error(`bench csv: fast-csv read ${parsed} rows, expected ${rows}`)
      t = performance.now()
      parsed = await rowParse(file)
      const parseMs = performance.now() - t
      if (parsed !== rows) throw new Error(`bench csv: the row parser read ${parsed} rows, expected ${rows}`)

      // 2. Rateflow: the adapter with the same batching as `rateflow ingest csv`, a run id of its own per round.
      const plan = { path: file, source, batchIdPrefix: csvBatchIdPrefix(source, file, newRunId()) }
      t = performance.now()
      const r = await publishCsvFile(plan, h.sink)
      const rateflowMs = performance.now() - t
      if (r.read !== rows) throw new Error(`bench csv: the adapter read ${r.read} rows, expected ${rows}`)

      // 3. Raw: JetStream storing the very batches of round 1, read back from the stream.
      if (!bytes) await h.recount((bytes = []))
      const jsMs = await h.rawPublish(bytes, DEFAULT_BATCHING.maxInFlight)
      rounds.push({ rateflow: perSecond(rows, rateflowMs), parse: perSecond(rows, parseMs), fast_csv: perSecond(rows, fastCsvMs), jetstream: perSecond(rows, jsMs) })
    }

    // Every row of every round is in the stream, once.
    const stream = await h.expectStreamHolds('csv', rows * roundCount)
    const rate = median(rounds.map((x) => x.rateflow))
    const parseRate = median(rounds.map((x) => x.parse))
    const jsRate = median(rounds.map((x) => x.jetstream))
    return {
      rows,
      file_bytes: fileBytes,
      rateflow_rows_per_s: rate,
      raw_parse_rows_per_s: parseRate,
      fast_csv_parse_rows_per_s: median(rounds.map((x) => x.fast_csv)),
      raw_jetstream_rows_per_s: jsRate,
      ratio_to_parse: +(rate / parseRate).toFixed(2),
      ratio_to_jetstream: +(rate / jsRate).toFixed(2),
      goal_rows_per_s: CSV_GOAL_ROWS_PER_S,
      goal_met: rate >= CSV_GOAL_ROWS_PER_S,
      rounds,
      stream,
    }
  } finally {
    await h.close()
  }
}

/**
 * `rateflow bench csv`: BENCH_RECORDS rows (default 500,000), BENCH_ROUNDS rounds (default 3); prints the table,
 * writes bench/out/csv-<time>.json.
 */
export async function run(out: (s: string) => void): Promise<number> {
  const rows = envInt('BENCH_RECORDS', 500_000)
  const roundCount = envInt('BENCH_ROUNDS', 3)
  const res = await benchCsv(rows, roundCount)
  out(
    adapterTable(
      `benchmark csv: ${rows.toLocaleString('en')} rows (${(res.file_bytes / 1e6).toFixed(0)} MB), CSV file → adapter → JetStream (median of ${roundCount} rounds)`,
      { label: 'Rateflow: publishCsvFile → batches → JetStream', perSecond: res.rateflow_rows_per_s, unit: 'rows/s' },
      [
        { label: 'raw: read + parse the same file only', perSecond: res.raw_parse_rows_per_s, unit: 'rows/s' },
        { label: 'raw: read + parse with fast-csv instead', perSecond: res.fast_csv_parse_rows_per_s, unit: 'rows/s' },
        { label: 'raw: JetStream publish of the same batches', perSecond: res.raw_jetstream_rows_per_s, unit: 'rows/s' },
      ],
      CSV_GOAL_ROWS_PER_S,
      [
        `rounds (Rateflow / parse only / JetStream only): ${res.rounds.map((x) => `${x.rateflow.toLocaleString('en')} / ${x.parse.toLocaleString('en')} / ${x.jetstream.toLocaleString('en')}`).join('; ')}`,
        `stream holds ${res.stream.batches} batches, ${res.stream.records} records, ${res.stream.rejects} rejects`,
      ],
    ),
  )
  saveResult('csv', res)
  return 0
}
