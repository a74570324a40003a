import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { encodeBatch } from '../pipeline/batch-wire.js'
import type { UsageBatch, WireRecord, WireReject } from '../rating-core/record.js'
import { DEFAULT_BATCHING, MicroBatcher } from './batcher.js'

type Item = { record: WireRecord } | { reject: WireReject }

/** Feeds `items` through a batcher with these limits; returns the batches the sink got, each with its encoded size. */
async function run(items: readonly Item[], options: { maxBytes: number; maxRecords?: number }) {
  const batches: Array<UsageBatch & { bytes: number }> = []
  const batcher = new MicroBatcher(
    async (b) => {
      batches.push({ ...b, bytes: encodeBatch(b).length })
    },
    { maxRecords: options.maxRecords ?? 1000, maxBytes: options.maxBytes, maxDelayMs: 60_000, maxInFlight: 4, batchId: (n) => `t:${n}` },
  )
  for (const item of items) await batcher.add(item)
  await batcher.flush()
  return batches
}

/** A CSV-like record whose raw row is `filler` long, and whose dim.region cell is the filler itself. */
function row(i: number, filler: string): { record: WireRecord } {
  const raw = `w${i},2026-10-05T11:00:00Z,fw-1,,,api_calls,1,${filler}`
  return {
    record: { event_id: `w${i}`, source: 'csv:t', event_time: '2026-10-05T11:00:00Z', device_id: 'fw-1', metric: 'api_calls', quantity: '1', raw, origin: `f.csv:${i + 2}`, dimensions: { region: filler } },
  }
}

const ids = (bs: readonly UsageBatch[]) => bs.map((b) => b.id)
const eventIds = (bs: readonly UsageBatch[]) => bs.flatMap((b) => b.records.map((r) => r.event_id))
const KB64 = 64 * 1024

describe('MicroBatcher cuts batches by bytes as well as records', () => {
  it('rows of ~650 bytes: every batch fits, ids are consecutive, order is kept, and a second run gives the same batches', async () => {
    const items = Array.from({ length: 1200 }, (_, i) => row(i, 'x'.repeat(600 + (i % 7))))
    const batches = await run(items, { maxBytes: KB64 })
    expect(batches.length).toBeGreaterThan(10) // 1200 rows × ~1.3 KB encoded do not fit in one or two 64 KB batches
    for (const b of batches) expect(b.bytes).toBeLessThanOrEqual(KB64)
    expect(ids(batches)).toEqual(batches.map((_, n) => `t:${n}`))
    expect(eventIds(batches)).toEqual(items.map((it) => it.record.event_id))
    expect(batches.flatMap((b) => b.rejects)).toEqual([])
    const again = await run(items, { maxBytes: KB64 })
    expect(again.map((b) => [b.id, b.records.map((r) => r.event_id)])).toEqual(batches.map((b) => [b.id, b.records.map((r) => r.event_id)]))
  })

  it('splits a batch the estimate let through (3-byte characters), in order, under the next ids', async () => {
    // String lengths count a character of U+4E00.. as one byte; UTF-8 takes three, so the cut by estimate is too late.
    const items = Array.from({ length: 300 }, (_, i) => row(i, '表'.repeat(600)))
    const batches = await run(items, { maxBytes: KB64 })
    for (const b of batches) expect(b.bytes).toBeLessThanOrEqual(KB64)
    expect(ids(batches)).toEqual(batches.map((_, n) => `t:${n}`))
    expect(eventIds(batches)).toEqual(items.map((it) => it.record.event_id))
    const again = await run(items, { maxBytes: KB64 })
    expect(again.map((b) => [b.id, b.records.length])).toEqual(batches.map((b) => [b.id, b.records.length]))
  })

  it('keeps the usual batch whole: 1,000 short records are one batch under the default limit', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => row(i, 'eu'))
    const batches = await run(items, { maxBytes: DEFAULT_BATCHING.maxBytes })
    expect(batches.map((b) => b.records.length)).toEqual([1000])
  })

  it('a record that cannot fit on its own becomes a reject: raw cut to fit, reason with size and limit; the rest goes on', async () => {
    const big = row(1, 'é'.repeat(100_000)) // 200,000 bytes of UTF-8 in each of raw and region
    const items = [row(0, 'a'), big, row(2, 'b')]
    const batches = await run(items, { maxBytes: KB64 })
    for (const b of batches) expect(b.bytes).toBeLessThanOrEqual(KB64)
    expect(ids(batches)).toEqual(batches.map((_, n) => `t:${n}`))
    expect(eventIds(batches)).toEqual(['w0', 'w2'])
    const rejects = batches.flatMap((b) => b.rejects)
    expect(rejects).toHaveLength(1)
    const j = rejects[0]!
    expect(j).toMatchObject({ source: 'csv:t', origin: 'f.csv:3' })
    const total = Buffer.byteLength(big.record.raw!)
    expect(j.reason).toMatch(new RegExp(`^record too large for the queue: it encodes to \\d+ bytes and the queue takes at most 65536 bytes per batch .*; raw cut to its first \\d+ of ${total} bytes$`))
    const kept = Number(/first (\d+) of/.exec(j.reason)![1])
    expect(Buffer.byteLength(j.raw)).toBe(kept)
    expect(kept).toBeGreaterThan(KB64 - 1024) // as much as fits, not a token preview
    expect(big.record.raw!.startsWith(j.raw)).toBe(true) // a prefix that ends on a whole character
  })

  it('an adapter reject too large on its own keeps its reason and says it was cut', async () => {
    const batches = await run([{ reject: { source: 'syslog:e', raw: 'z'.repeat(200_000), reason: 'not key=value', origin: 'syslog tcp' } }], { maxBytes: KB64 })
    expect(batches).toHaveLength(1)
    expect(batches[0]!.bytes).toBeLessThanOrEqual(KB64)
    expect(batches[0]!.rejects[0]!.reason).toMatch(/^not key=value \(and too large for the queue: .*\); raw cut to its first \d+ of 200000 bytes$/)
  })

  it('calls the stored callbacks of a split batch once every part is stored', async () => {
    const stored: string[] = []
    let parts = 0
    const batcher = new MicroBatcher(
      async () => {
        parts++
        await new Promise((r) => setTimeout(r, 5))
      },
      { maxRecords: 1000, maxBytes: KB64, maxDelayMs: 60_000, maxInFlight: 8, batchId: (n) => `t:${n}` },
    )
    for (let i = 0; i < 60; i++) batcher.add(row(i, '表'.repeat(600)), () => stored.push(`w${i}`))
    await batcher.flush()
    expect(parts).toBeGreaterThan(1)
    expect(stored).toHaveLength(60)
  })

  it('any records, any limit: every batch fits, nothing is lost or reordered, and the same input gives the same batches', async () => {
    const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 400 }), fc.constantFrom('', 'eu', 'x'.repeat(3000), '😀'.repeat(3000)))
    const item: fc.Arbitrary<Item> = fc.oneof(
      fc.record({ event_id: fc.string({ maxLength: 8 }), raw: text, region: text }).map(({ event_id, raw, region }) => ({
        record: { event_id, source: 'mqtt:p', event_time: '2026-10-01T00:00:00Z', metric: 'm', quantity: '1', raw, dimensions: { region } },
      })),
      fc.record({ raw: text, reason: fc.string({ maxLength: 30 }) }).map(({ raw, reason }) => ({ reject: { source: 'mqtt:p', raw, reason } })),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 60 }), fc.integer({ min: 4096, max: 40_000 }), fc.integer({ min: 1, max: 50 }), async (items, maxBytes, maxRecords) => {
        const batches = await run(items, { maxBytes, maxRecords })
        for (const b of batches) expect(b.bytes).toBeLessThanOrEqual(maxBytes)
        expect(ids(batches)).toEqual(batches.map((_, n) => `t:${n}`))
        const out = batches.reduce((n, b) => n + b.records.length + b.rejects.length, 0)
        expect(out).toBe(items.length)
        // Records that fit keep their order; those that did not became rejects.
        const kept = eventIds(batches)
        const all = items.flatMap((it) => ('record' in it ? [it.record.event_id] : []))
        let at = 0
        for (const id of kept) {
          while (all[at] !== id) at++
          at++
        }
        expect(at).toBeLessThanOrEqual(all.length)
        const again = await run(items, { maxBytes, maxRecords })
        expect(again).toEqual(batches)
      }),
      { numRuns: 100 },
    )
  })
})
