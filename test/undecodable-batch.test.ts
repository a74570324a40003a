import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import { openQueue, USAGE_SUBJECT } from '../pipeline/queue.js'
import { startNatsServer } from '../pipeline/services/nats-server.js'
import { json, killStrayChildren, query, tempDir, writeJson } from './helpers/cli.js'

/**
 * A message on the USAGE stream that is not a usage batch (another tool's bytes, a truncated write) is one
 * reject with its bytes, and the rater goes on: it must not stop every batch behind it.
 */
const tmp = tempDir()
const data = tmp.dir
const d = ['--data', data]
const size = { customers: 2, devicesPerAccount: 2 }
const EVENTS = 200
const csv = join(data, 'usage.csv')
// Truncated msgpack (a map of five entries that ends after one key byte), and a string where a map belongs.
const garbage = [new Uint8Array([0x85, 0xa1]), new Uint8Array([0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f])]

beforeAll(async () => {
  writeFileSync(csv, [...sampleCsvLines({ events: EVENTS, size, seed: 5 })].join('\n') + '\n')
  await json(['catalog', 'apply', writeJson(join(data, 'catalog.json'), sampleCatalog()), ...d])
  await json(['accounts', 'apply', writeJson(join(data, 'accounts.json'), sampleAccounts(size)), ...d])
  // The nats-server the CLI runs for this data directory keeps its store under it: put the bad messages there.
  const server = await startNatsServer(data)
  const queue = await openQueue(server.authUrl)
  for (const [i, bytes] of garbage.entries()) await queue.js.publish(USAGE_SUBJECT, bytes, { msgID: `not-a-batch-${i}` })
  await queue.close()
  await server.stop()
})
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmp.cleanup())

describe('a stream message that is not a usage batch', () => {
  it('lands in rejected_usage with its bytes in base64, and the file behind it is rated', async () => {
    const counts = await json<Record<string, number>>(['ingest', 'csv', csv, '--source', 'csv:u', '--wait', ...d])
    expect(counts).toEqual({ read: EVENTS, rated: EVENTS, duplicates: 0, rejected: 0, suspended: 0 })
    const rows = await query<{ raw: string; reason: string; origin: string; batch_id: string }>(
      data,
      "SELECT raw, reason, origin, batch_id FROM rejected_usage FINAL WHERE source = 'jetstream:USAGE' ORDER BY batch_id",
    )
    expect(rows.map((r) => r.batch_id)).toEqual(['not-a-batch-0', 'not-a-batch-1'])
    expect(rows.map((r) => Buffer.from(r.raw, 'base64'))).toEqual(garbage.map((g) => Buffer.from(g)))
    expect(rows[0]!.reason).toMatch(/^stream USAGE message 1: not a usage batch: not msgpack: .+ \(raw is the message's bytes in base64\)$/)
    expect(rows[1]!.reason).toMatch(/^stream USAGE message 2: not a usage batch: a msgpack string, not a map/)
    // Committed like any batch: both counted in the commit log, and acked (nothing left to deliver).
    const [f] = await query<{ rejected: string }>(data, 'SELECT sum(rejected) AS rejected FROM flushes')
    expect(Number(f!.rejected)).toBe(2)
    const again = await json<Record<string, number>>(['ingest', 'csv', csv, '--source', 'csv:u', '--wait', ...d])
    expect(again).toEqual({ read: EVENTS, rated: 0, duplicates: EVENTS, rejected: 0, suspended: 0 })
    const [n] = await query<{ n: string }>(data, "SELECT count() AS n FROM rejected_usage FINAL WHERE source = 'jetstream:USAGE'")
    expect(Number(n!.n)).toBe(2)
  })
})
