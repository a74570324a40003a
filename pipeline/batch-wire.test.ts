import fc from 'fast-check'
import { Packr, unpack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import type { UsageBatch, WireRecord } from '../rating-core/record.js'
import { BatchDecodeError, decodeBatch, encodeBatch, MAX_DIM_KEYS, measureBatch } from './batch-wire.js'

/** What a round trip promises to keep: absent, undefined and null fields all absent; `{}` dimensions absent. */
function normal(b: UsageBatch): UsageBatch {
  return {
    id: b.id,
    rejects: b.rejects,
    records: b.records.map((r) => {
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(r)) {
        if (v === undefined || v === null) continue
        if (k === 'dimensions' && typeof v === 'object' && Object.keys(v as object).length === 0) continue
        out[k] = v
      }
      return out as unknown as WireRecord
    }),
  }
}

const text = fc.oneof(fc.constantFrom('', 'csv:a', 'e-1', '2026-10-01T00:00:00Z', 'ünïcode ✓', '\t\n'), fc.string())
const dimKey = fc.oneof(fc.constantFrom('region', 'site', '__proto__', 'constructor', ''), fc.string({ maxLength: 6 }))
const record: fc.Arbitrary<WireRecord> = fc.record(
  {
    event_id: text,
    source: fc.constantFrom('csv:a', 'mqtt:b'),
    event_time: text,
    device_id: text,
    account_id: text,
    subscription_id: text,
    metric: fc.constantFrom('api_calls', 'bytes_out'),
    quantity: text,
    raw: text,
    origin: text,
    dimensions: fc.dictionary(dimKey, fc.constantFrom('eu', 'us', 'x'), { maxKeys: 3 }),
  },
  { requiredKeys: ['event_id', 'source', 'event_time', 'metric', 'quantity'] },
)
const batch: fc.Arbitrary<UsageBatch> = fc.record({
  id: fc.string(),
  records: fc.array(record, { maxLength: 40 }),
  rejects: fc.array(fc.record({ source: text, raw: text, reason: text, origin: text }), { maxLength: 3 }),
})

describe('usage batches on the wire (version 2, columns)', () => {
  it('round-trips any batch: every field value, every dimension key and value, the rejects', () => {
    fc.assert(
      fc.property(batch, (b) => {
        expect(decodeBatch(encodeBatch(b))).toEqual(normal(b))
      }),
      { numRuns: 300 },
    )
  })

  it('sends dimensions as one map per record when a batch uses more than MAX_DIM_KEYS keys, and still round-trips', () => {
    const records: WireRecord[] = Array.from({ length: MAX_DIM_KEYS + 5 }, (_, i) => ({
      event_id: `e-${i}`, source: 's', event_time: 't', metric: 'm', quantity: '1', dimensions: { [`k${i}`]: `v${i}` },
    }))
    const bytes = encodeBatch({ id: 'b', records, rejects: [] })
    expect(Object.keys((unpack(bytes) as { dims: object }).dims)).toEqual(['each'])
    expect(decodeBatch(bytes).records).toEqual(records)
  })

  it('carries values validation must reject (numbers, a dimension that is not a map) as they are', () => {
    const records = [
      { event_id: 'e-1', source: 's', event_time: 't', metric: 'm', quantity: 12, dimensions: { region: 7 } },
      { event_id: 'e-2', source: 's', event_time: 't', metric: 'm', quantity: '1', dimensions: 'eu' },
      { event_id: 'e-3', source: 's', event_time: 't', metric: 'm', quantity: '1', dimensions: { a: 'x' } },
    ] as unknown as WireRecord[]
    expect(decodeBatch(encodeBatch({ id: 'b', records, rejects: [] })).records).toEqual(records)
    const numbers = [records[0]!, records[2]!]
    expect(decodeBatch(encodeBatch({ id: 'b', records: numbers, rejects: [] })).records).toEqual(numbers)
  })

  it('is plain msgpack any reader can read: keys once, a shared value once, ASCII columns as text and lengths', () => {
    const records: WireRecord[] = [
      { event_id: 'e-1', source: 'csv:a', event_time: 't1', device_id: 'd1', metric: 'm', quantity: '1', dimensions: { region: 'eu' }, raw: 'r1', origin: 'f.csv:2' },
      { event_id: 'e-2', source: 'csv:a', event_time: 't2', account_id: 'a2', metric: 'm', quantity: '2', raw: 'r2', origin: 'f.csv:3' },
    ]
    expect(unpack(encodeBatch({ id: 'b-7', records, rejects: [] }))).toEqual({
      v: 2,
      id: 'b-7',
      n: 2,
      cols: {
        event_id: { t: 'e-1e-2', l: [3, 3] }, source: 'csv:a', event_time: { t: 't1t2', l: [2, 2] },
        device_id: { t: 'd1', l: [2, -1] }, account_id: { t: 'a2', l: [-1, 2] },
        metric: 'm', quantity: { t: '12', l: [1, 1] }, raw: { t: 'r1r2', l: [2, 2] }, origin: { t: 'f.csv:2f.csv:3', l: [7, 7] },
      },
      dims: { keys: ['region'], cols: [{ t: 'eu', l: [2, -1] }] },
      rejects: [],
    })
  })

  it('sends a column with any non-ASCII value, or any value that is not a string, as an array of values', () => {
    const records: WireRecord[] = [
      { event_id: 'e-1', source: 's', event_time: 't', metric: 'm', quantity: '1', raw: 'größe=1', dimensions: { site: 'zürich' } },
      { event_id: 'e-2', source: 's', event_time: 't', metric: 'm', quantity: 2 as unknown as string, raw: 'x=1', dimensions: { site: 'bern' } },
    ]
    const wire = unpack(encodeBatch({ id: 'b', records, rejects: [] })) as { cols: Record<string, unknown>; dims: { cols: unknown[] } }
    expect(wire.cols.raw).toEqual(['größe=1', 'x=1'])
    expect(wire.cols.quantity).toEqual(['1', 2])
    expect(wire.cols.event_id).toEqual({ t: 'e-1e-2', l: [3, 3] })
    expect(wire.dims.cols).toEqual([['zürich', 'bern']])
    expect(decodeBatch(encodeBatch({ id: 'b', records, rejects: [] })).records).toEqual(records)
  })

  it('names the column whose text and lengths disagree', () => {
    const pack = (col: unknown) => new Packr({ useRecords: false }).pack({ v: 2, id: 'b', n: 2, cols: { event_id: col }, rejects: [] })
    expect(() => decodeBatch(pack({ t: 'e-1e-2', l: [3, 2] }))).toThrow(/column event_id: lengths sum to 5, text has 6/)
    expect(() => decodeBatch(pack({ t: 'e-1', l: [3] }))).toThrow(/column event_id is not \{t, l\} of 2 values/)
    expect(() => decodeBatch(pack(['e-1']))).toThrow(/column event_id has 1 values, the batch 2 records/)
    expect(() => decodeBatch(pack({ t: 'e-1e-2', l: [1.5, 4.5] }))).toThrow(/column event_id: length 1.5 of record 0 is not a whole number ≥ -1/)
    expect(() => decodeBatch(pack({ t: 'e-1e-2', l: [-2, 6] }))).toThrow(/length -2 of record 0/)
  })

  it('refuses, naming the place, a raw or origin that is not text and rejects that are not maps of text', () => {
    const packr = new Packr({ useRecords: false })
    const v2 = (extra: object) => packr.pack({ v: 2, id: 'b', n: 2, cols: { event_id: ['e-1', 'e-2'] }, rejects: [], ...extra })
    expect(() => decodeBatch(v2({ cols: { raw: [5, 'x'] } }))).toThrow(/not a usage batch: cols.raw holds number, not text/)
    expect(() => decodeBatch(v2({ cols: { origin: [null, ['a']] } }))).toThrow(/cols.origin holds an array, not text/)
    expect(() => decodeBatch(v2({ rejects: 'x' }))).toThrow(/rejects is not an array/)
    expect(() => decodeBatch(v2({ rejects: [{ source: 's', raw: 1, reason: 'r' }] }))).toThrow(/rejects\[0\].raw is not text/)
    expect(() => decodeBatch(v2({ rejects: [{ source: 's', raw: 'x', reason: 'r', origin: 7 }] }))).toThrow(/rejects\[0\].origin holds number/)
    expect(() => decodeBatch(packr.pack({ id: 'b', records: [5], rejects: [] }))).toThrow(/records\[0\] is not a map/)
    expect(() => decodeBatch(packr.pack({ id: 'b', records: [{ event_id: 'e', raw: {} }], rejects: [] }))).toThrow(/records\[0\].raw holds object/)
    expect(() => decodeBatch(packr.pack({ id: 7, records: [], rejects: [] }))).toThrow(/version 1 batch without a string id/)
    expect(() => decodeBatch(packr.pack({ v: 2, id: 'b', n: 1e9, cols: { event_id: 'e' }, rejects: [] }))).toThrow(/n is 1000000000; a batch holds at most 1,000,000 records/)
    // Shapes no check names: still a BatchDecodeError (one reject), not a TypeError that fails the rater on every start.
    for (const dims of ['str', { keys: ['a'], cols: 'x' }]) {
      expect(() => decodeBatch(v2({ dims }))).toThrow(BatchDecodeError)
    }
  })

  it('keeps a dimension named __proto__ as data, per key and per record', () => {
    const d = JSON.parse('{"__proto__": "p", "region": "eu"}') as Record<string, string>
    const one: WireRecord = { event_id: 'e-1', source: 's', event_time: 't', metric: 'm', quantity: '1', dimensions: d }
    for (const records of [[one], [one, { ...one, dimensions: 'x' as unknown as Record<string, string> }]]) {
      const got = decodeBatch(encodeBatch({ id: 'b', records, rejects: [] })).records[0]!.dimensions!
      expect(Object.keys(got)).toEqual(['__proto__', 'region'])
      expect(Object.getPrototypeOf(got)).toBe(Object.prototype)
      expect(Object.entries(got)).toEqual([['__proto__', 'p'], ['region', 'eu']])
    }
  })

  it('reads version 1 (one map per record), as batches published before version 2 still sit in the stream', () => {
    const b: UsageBatch = {
      id: 'old-1',
      records: [{ event_id: 'e-1', source: 's', event_time: 't', metric: 'm', quantity: '1', dimensions: { region: 'eu' }, raw: 'r', origin: 'o' }],
      rejects: [{ source: 's', raw: 'x', reason: 'bad' }],
    }
    expect(decodeBatch(new Packr({ useRecords: false }).pack(b))).toEqual(b)
  })

  it('names the version it cannot read', () => {
    expect(() => decodeBatch(new Packr({ useRecords: false }).pack({ v: 3, id: 'x' }))).toThrow(/not a usage batch: a map with v 3; this version reads 1 \(records\) and 2/)
    expect(() => decodeBatch(new Uint8Array([0x85, 0xa1]))).toThrow(/not a usage batch: not msgpack/)
    expect(() => decodeBatch(new Packr({ useRecords: false }).pack('hello'))).toThrow(/not a usage batch: a msgpack string, not a map/)
    expect(() => decodeBatch(new Packr({ useRecords: false }).pack(null))).toThrow(/not a usage batch: a msgpack nil, not a map/)
  })

  it('measureBatch gives the size of the encoding, whose bytes the next encodeBatch of that batch returns, once', () => {
    const b: UsageBatch = { id: 'm-1', records: [{ event_id: 'e-1', source: 's', event_time: 't', metric: 'm', quantity: '1', raw: 'ünïcode' }], rejects: [] }
    const fresh = encodeBatch(b)
    const size = measureBatch(b)
    expect(size).toBe(fresh.length)
    const kept = encodeBatch(b)
    expect(kept).toEqual(fresh)
    expect(encodeBatch(b)).not.toBe(kept) // returned once: a later encode encodes again
    expect(decodeBatch(kept)).toEqual(b)
  })
})
