import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import pino from 'pino'
import { validateAdapterConfig } from '../adapters/config.js'
import { BUILTIN_MAPPINGS } from '../adapters/syslog/mappings.js'
import { SyslogAdapter } from '../adapters/syslog/listener.js'
import { adapterTable, envInt, median, openHarness, type StoredCounts } from './adapter-harness.js'
import { startLoad, type LoadSpec } from './load.js'
import { perSecond, saveResult } from './results.js'

/** The issue's goal for syslog over TCP on the 2-core reference machine. */
export const SYSLOG_GOAL_LINES_PER_S = 100_000

/** One run's figures; rates are medians over the rounds, `rounds` has each round's. */
export interface SyslogBenchResult {
  lines: number
  framing: 'lf' | 'octet'
  rateflow_lines_per_s: number
  raw_lines_per_s: number
  ratio: number
  goal_lines_per_s: number
  goal_met: boolean
  rounds: Array<{ rateflow: number; raw: number }>
  stream: StoredCounts
}

/**
 * A bare TCP server on 127.0.0.1 that counts messages and nothing else (LF lines, or RFC 6587 octet-counted
 * frames): the raw rate of the same TCP path without Rateflow. Resolves `done` with performance.now() at the
 * `expect`-th message.
 */
async function bareCounter(framing: 'lf' | 'octet', expect: number): Promise<{ port: number; done: Promise<number>; close(): void }> {
  let count = 0
  let resolveDone!: (t: number) => void
  const done = new Promise<number>((r) => (resolveDone = r))
  const server = net.createServer((socket) => {
    // Octet counting: bytes still to skip of the current frame, and the count digits read so far.
    let skip = 0
    let digits = 0
    socket.on('data', (chunk: Buffer) => {
      if (framing === 'lf') {
        for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, i + 1)) count++
      } else {
        let i = 0
        while (i < chunk.length) {
          if (skip > 0) {
            const n = Math.min(skip, chunk.length - i)
            skip -= n
            i += n
            if (skip === 0) count++
            continue
          }
          const c = chunk[i++]!
          if (c === 0x20) {
            skip = digits
            digits = 0
          } else digits = digits * 10 + (c - 0x30)
        }
      }
      if (count >= expect) resolveDone(performance.now())
    })
    socket.on('end', () => socket.end())
    socket.on('error', () => undefined)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as AddressInfo).port, done, close: () => server.close() }
}

/**
 * RFC 5424 lines with key=value bodies over one TCP connection from a separate process, written as fast as TCP
 * backpressure allows → SyslogAdapter → micro-batches → JetStream; lines/s from the go signal to the batch that
 * completes the count stored. In the same run, the same generator against a bare TCP server that only counts lines.
 * Each round runs both one after the other; rates are the rounds' medians.
 */
export async function benchSyslog(lines: number, framing: 'lf' | 'octet', roundCount: number): Promise<SyslogBenchResult> {
  const h = await openHarness('syslog')
  // The adapter as `rateflow run` configures it by default, publishing to USAGE, up for every round.
  const config = validateAdapterConfig({ syslog: [{ tcp_port: 0, source: 'syslog:bench' }] }, { presets: BUILTIN_MAPPINGS })
  const adapter = new SyslogAdapter(config.syslog[0]!, { sink: h.sink, logger: pino({ level: 'warn' }) })
  try {
    await adapter.start()
    const rounds: SyslogBenchResult['rounds'] = []
    for (let r = 1; r <= roundCount; r++) {
      // 1. Raw: the bare counter.
      const bare = await bareCounter(framing, lines)
      const raw = await timed({ kind: 'syslog-tcp', port: bare.port, lines, framing, runId: randomBytes(4).toString('hex') }, lines, () => bare.done)
      bare.close()
      // 2. Rateflow.
      const rateflow = await timed({ kind: 'syslog-tcp', port: adapter.ports.tcp!, lines, framing, runId: randomBytes(4).toString('hex') }, lines, () => h.storedAt(lines * r))
      rounds.push({ rateflow, raw })
    }
    await adapter.stop()
    const stream = await h.recount()
    if (stream.records !== lines * roundCount || stream.rejects !== 0) {
      throw new Error(`bench syslog: the stream holds ${JSON.stringify(stream)}, expected ${lines * roundCount} records`)
    }
    const rate = median(rounds.map((x) => x.rateflow))
    const rawRate = median(rounds.map((x) => x.raw))
    return {
      lines,
      framing,
      rateflow_lines_per_s: rate,
      raw_lines_per_s: rawRate,
      ratio: +(rate / rawRate).toFixed(2),
      goal_lines_per_s: SYSLOG_GOAL_LINES_PER_S,
      goal_met: rate >= SYSLOG_GOAL_LINES_PER_S,
      rounds,
      stream,
    }
  } finally {
    await adapter.stop().catch(() => undefined)
    await h.close()
  }
}

/** Runs one generator process to completion while `received` waits for the receiving side; returns its rate. */
async function timed(spec: LoadSpec, lines: number, received: () => Promise<number>): Promise<number> {
  const load = await startLoad(spec)
  try {
    const t0 = performance.now()
    const sent = load.go()
    const t1 = await received()
    await sent
    return perSecond(lines, t1 - t0)
  } finally {
    load.kill()
  }
}

/**
 * `rateflow bench syslog`: BENCH_RECORDS lines per round (default 500,000), BENCH_SYSLOG_FRAMING `lf` (default) or
 * `octet`, BENCH_ROUNDS rounds (default 3); prints the table, writes bench/out/syslog-<time>.json.
 */
export async function run(out: (s: string) => void): Promise<number> {
  const lines = envInt('BENCH_RECORDS', 500_000)
  const framing = process.env.BENCH_SYSLOG_FRAMING === 'octet' ? 'octet' : 'lf'
  const roundCount = envInt('BENCH_ROUNDS', 3)
  const res = await benchSyslog(lines, framing, roundCount)
  out(
    adapterTable(
      `benchmark syslog: ${lines.toLocaleString('en')} RFC 5424 lines (key=value bodies, ${framing === 'lf' ? 'newline' : 'octet-counted'} framing) over TCP → JetStream (median of ${roundCount} rounds)`,
      { label: 'Rateflow: SyslogAdapter → batches → JetStream', perSecond: res.rateflow_lines_per_s, unit: 'lines/s' },
      [{ label: 'raw: bare TCP server counting lines', perSecond: res.raw_lines_per_s, unit: 'lines/s' }],
      SYSLOG_GOAL_LINES_PER_S,
      [
        `rounds (Rateflow / raw): ${res.rounds.map((x) => `${x.rateflow.toLocaleString('en')} / ${x.raw.toLocaleString('en')}`).join('; ')}`,
        `stream holds ${res.stream.batches} batches, ${res.stream.records} records, ${res.stream.rejects} rejects`,
      ],
    ),
  )
  saveResult('syslog', res)
  return 0
}
