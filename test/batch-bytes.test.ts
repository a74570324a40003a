import { createHash } from 'node:crypto'
import { jetstreamManager } from '@nats-io/jetstream'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { openQueue, BatchTooLargeError } from '../pipeline/queue.js'
import { startNatsServer, type LocalNatsServer } from '../pipeline/services/nats-server.js'
import { json, killStrayChildren, query, tempDir, writeJson } from './helpers/cli.js'

/**
 * Batches are bounded by what the queue takes in one message, whatever the rows' sizes: real CLI, real
 * nats-server (the CLI's own, and a shared one with a small max_payload), embedded ClickHouse.
 */
type Counts = { read: number; rated: number; duplicates: number; rejected: number; suspended: number }
const reconcile = (c: Counts) => c.rated + c.duplicates + c.rejected + c.suspended
const HEADER = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity,dim.region'

/** `chars` characters of text that differs from row to row (so no two rows share a value the encoding could fold). */
function filler(seed: string, chars: number): string {
  let out = ''
  for (let i = 0; out.length < chars; i++) out += createHash('sha256').update(`${seed}:${i}`).digest('base64')
  return out.slice(0, chars)
}

const row = (id: string, region: string) => `${id},2026-10-05T11:00:00Z,fw-001-1,,,api_calls,1,${region}`

const tmp = tempDir()
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmp.cleanup())

/** A data directory with the sample catalog and one account whose device is fw-001-1. */
async function dataDir(name: string, env: Record<string, string> = {}): Promise<string> {
  const data = join(tmp.dir, name)
  mkdirSync(data, { recursive: true })
  const d = ['--data', data]
  await json(['catalog', 'apply', writeJson(join(data, 'catalog.json'), sampleCatalog()), ...d], env)
  await json(['accounts', 'apply', writeJson(join(data, 'accounts.json'), sampleAccounts({ customers: 1, devicesPerAccount: 1 })), ...d], env)
  return data
}

function csv(path: string, rows: string[]): string {
  writeFileSync(path, [HEADER, ...rows].join('\n') + '\n')
  return path
}

/** 1,200 rows of ~650 bytes: 775 KB, and ~1.5 MB as records (each carries its raw row and its cells). */
const WIDE_ROWS = Array.from({ length: 1200 }, (_, i) => row(`w${i}`, filler(`w${i}`, 600)))

describe('ingest csv --wait with the CLI’s own nats-server', () => {
  let data: string
  beforeAll(async () => {
    data = await dataDir('own')
  })

  it('rates 1,200 rows of ~650 bytes, in batches the queue takes; the counts reconcile', async () => {
    const c = await json<Counts>(['ingest', 'csv', csv(join(data, 'wide.csv'), WIDE_ROWS), '--source', 'csv:wide', '--wait', '--data', data])
    expect(c).toEqual({ read: 1200, rated: 1200, duplicates: 0, rejected: 0, suspended: 0 })
    const [r] = await query<{ n: string }>(data, "SELECT count() AS n FROM rated_usage WHERE source = 'csv:wide'")
    expect(Number(r!.n)).toBe(1200)
  })

  it('rates a row of ~700 KB with the rows around it: its own server takes messages as large as a row can be', async () => {
    const rows = [row('s0', 'eu'), row('big', filler('big', 700_000)), row('s1', 'us')]
    const c = await json<Counts>(['ingest', 'csv', csv(join(data, 'big.csv'), rows), '--source', 'csv:big', '--wait', '--data', data])
    expect(c).toEqual({ read: 3, rated: 3, duplicates: 0, rejected: 0, suspended: 0 })
    expect(reconcile(c)).toBe(c.read)
    const got = await query<{ event_id: string }>(data, "SELECT event_id FROM rated_usage WHERE source = 'csv:big' ORDER BY event_id")
    expect(got.map((g) => g.event_id)).toEqual(['big', 's0', 's1'])
  })
})

describe('ingest csv --wait with a shared nats-server whose max_payload is 64 KiB', () => {
  const MAX_PAYLOAD = 64 * 1024
  let server: LocalNatsServer
  let env: Record<string, string>
  let data: string
  beforeAll(async () => {
    server = await startNatsServer(join(tmp.dir, 'small-nats'), { maxPayloadBytes: MAX_PAYLOAD })
    env = { NATS_URL: server.authUrl }
    data = await dataDir('small', env)
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('rates rows of ~650 bytes in as many batches as that takes', async () => {
    const c = await json<Counts>(['ingest', 'csv', csv(join(data, 'wide.csv'), WIDE_ROWS), '--source', 'csv:wide', '--wait', '--data', data], env)
    expect(c).toEqual({ read: 1200, rated: 1200, duplicates: 0, rejected: 0, suspended: 0 })
  })

  it('rejects a record that cannot fit in one message, with its size, the limit and as much raw as fits; the rest is rated', async () => {
    const big = row('big', filler('big', 600_000)) // ~1.2 MB as a record: more than even a default server takes
    const rows = [...Array.from({ length: 50 }, (_, i) => row(`a${i}`, 'eu')), big, ...Array.from({ length: 50 }, (_, i) => row(`b${i}`, 'us'))]
    const c = await json<Counts>(['ingest', 'csv', csv(join(data, 'mixed.csv'), rows), '--source', 'csv:mixed', '--wait', '--data', data], env)
    expect(c).toEqual({ read: 101, rated: 100, duplicates: 0, rejected: 1, suspended: 0 })
    expect(reconcile(c)).toBe(c.read)
    const [j, ...more] = await query<{ raw: string; reason: string }>(data, "SELECT raw, reason FROM rejected_usage WHERE source = 'csv:mixed'")
    expect(more).toEqual([])
    expect(j!.reason).toMatch(
      new RegExp(`^mixed\\.csv:52: record too large for the queue: it encodes to \\d+ bytes and the queue takes at most ${MAX_PAYLOAD - 1024} bytes per batch .*; raw cut to its first (\\d+) of ${big.length} bytes$`),
    )
    expect(big.startsWith(j!.raw)).toBe(true)
    expect(j!.raw.length).toBe(Number(/first (\d+) of/.exec(j!.reason)![1]))
    expect(j!.raw.length).toBeGreaterThan(MAX_PAYLOAD - 4096)
    const [r] = await query<{ n: string }>(data, "SELECT count() AS n FROM rated_usage WHERE source = 'csv:mixed'")
    expect(Number(r!.n)).toBe(100)
  })

  it('the queue refuses, naming batch and sizes, a batch larger than the server takes, and publishes nothing', async () => {
    const queue = await openQueue(server.authUrl)
    try {
      expect(queue.maxBatchBytes).toBe(MAX_PAYLOAD - 1024)
      const batch = { id: 'too-big', records: [{ event_id: 'x', source: 's', event_time: 't', metric: 'm', quantity: '1', raw: 'x'.repeat(MAX_PAYLOAD) }], rejects: [] }
      const jsm = await jetstreamManager(queue.nc)
      const stored = () => jsm.streams.info('USAGE').then((s) => s.state.messages)
      const before = await stored()
      const err = await queue.publish(batch).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(BatchTooLargeError)
      expect((err as Error).message).toMatch(/^usage batch too-big takes \d+ bytes; the queue takes at most 64512 per batch/)
      expect(await stored()).toBe(before)
    } finally {
      await queue.close()
    }
  })
})
