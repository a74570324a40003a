import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import pino from 'pino'
import { validateAdapterConfig } from '../adapters/config.js'
import { BUILTIN_MAPPINGS } from '../adapters/syslog/mappings.js'
import { SyslogAdapter } from '../adapters/syslog/listener.js'
import { adapterTable, envInt, openHarness, type StoredCounts } from './adapter-harness.js'
import { timedLoad, type LoadSpec } from './load.js'
import { median, saveResult } from './results.js'

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
  /** Newline framing only: the bare forwarder's rate, TCP → JetStream without Rateflow. */
  raw_jetstream_lines_per_s?: number
  rounds: Array<{ rateflow: number; raw: number; jetstream?: number }>
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
 * The same TCP path into JetStream without Rateflow: a bare server that publishes what it receives, each read's
 * complete lines as one message, up to 8 publishes in flight (as the adapter's batcher), pausing the socket beyond.
 * No framing rules, no parsing, no records. Resolves `done` with performance.now() once the message completing
 * `expect` lines is stored.
 */
async function bareForwarder(publish: (bytes: Uint8Array) => Promise<unknown>, expect: number): Promise<{ port: number; done: Promise<number>; close(): void }> {
  let stored = 0
  let resolveDone!: (t: number) => void
  const done = new Promise<number>((r) => (resolveDone = r))
  const server = net.createServer((socket) => {
    let rest = Buffer.alloc(0)
    let inFlight = 0
    socket.on('data', (chunk: Buffer) => {
      const b = rest.length ? Buffer.concat([rest, chunk]) : chunk
      const end = b.lastIndexOf(0x0a) + 1
      rest = Buffer.from(b.subarray(end))
      let lines = 0
      for (let i = b.indexOf(0x0a); i >= 0 && i < end; i = b.indexOf(0x0a, i + 1)) lines++
      if (lines === 0) return
      inFlight++
      if (inFlight >= 8) socket.pause()
      void publish(b.subarray(0, end)).then(() => {
        inFlight--
        socket.resume()
        stored += lines
        if (stored >= expect) resolveDone(performance.now())
      })
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
 * completes the count stored. In the same run, the same generator against a bare TCP server that only counts lines,
 * and (newline framing) one that forwards the bytes to JetStream without parsing. Each round runs them one after the
 * other; rates are the rounds' medians.
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
      // 1. Raw: the bare counter, and (newline framing) the bare forwarder into JetStream.
      const bare = await bareCounter(framing, lines)
      const raw = await timedLoad({ kind: 'syslog-tcp', port: bare.port, lines, framing, runId: randomBytes(4).toString('hex') }, lines, () => bare.done)
      bare.close()
      let forwarded: number | undefined
      if (framing === 'lf') {
        const stream = await h.benchStream()
        const fwd = await bareForwarder(stream.publish, lines)
        forwarded = await timedLoad({ kind: 'syslog-tcp', port: fwd.port, lines, framing, runId: randomBytes(4).toString('hex') }, lines, () => fwd.done)
        fwd.close()
        await stream.remove()
      }
      // 2. Rateflow.
      const rateflow = await timedLoad({ kind: 'syslog-tcp', port: adapter.ports.tcp!, lines, framing, runId: randomBytes(4).toString('hex') }, lines, () => h.storedAt(lines * r))
      rounds.push({ rateflow, raw, ...(forwarded !== undefined && { jetstream: forwarded }) })
    }
    await adapter.stop()
    const stream = await h.expectStreamHolds('syslog', lines * roundCount)
    const rate = median(rounds.map((x) => x.rateflow))
    const rawRate = median(rounds.map((x) => x.raw))
    const jsRates = rounds.flatMap((x) => (x.jetstream === undefined ? [] : [x.jetstream]))
    return {
      lines,
      framing,
      rateflow_lines_per_s: rate,
      raw_lines_per_s: rawRate,
      ratio: +(rate / rawRate).toFixed(2),
      ...(jsRates.length > 0 && { raw_jetstream_lines_per_s: median(jsRates) }),
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
      [
        { label: 'raw: bare TCP server counting lines', perSecond: res.raw_lines_per_s, unit: 'lines/s' },
        ...(res.raw_jetstream_lines_per_s === undefined
          ? []
          : [{ label: 'raw: bare TCP server → JetStream, no parsing', perSecond: res.raw_jetstream_lines_per_s, unit: 'lines/s' }]),
      ],
      SYSLOG_GOAL_LINES_PER_S,
      [
        `rounds (Rateflow / counting / → JetStream): ${res.rounds.map((x) => `${x.rateflow.toLocaleString('en')} / ${x.raw.toLocaleString('en')} / ${x.jetstream?.toLocaleString('en') ?? '-'}`).join('; ')}`,
        `stream holds ${res.stream.batches} batches, ${res.stream.records} records, ${res.stream.rejects} rejects`,
      ],
    ),
  )
  saveResult('syslog', res)
  return 0
}
