import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { deviceId, sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { validateAccounts } from '../catalog/accounts.js'
import { GuidingIndex } from '../catalog/guiding.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import type { WireRecord } from './record.js'
import { rejectLine, stageBatch, stagedReject } from './stage.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

describe('stageBatch caches', () => {
  it('keep no batch text alive: a group_by value sliced out of a large text is cached as its own copy', () => {
    const guiding = new GuidingIndex([validateCatalog(sampleCatalog())], validateAccounts(sampleAccounts({ customers: 2, devicesPerAccount: 1 })))
    const batches = 40
    const stageOne = (b: number) => {
      // The region is a slice of a 200,000-character text, as values decoded from a batch's bytes can be.
      const text = 'x'.repeat(200_000) + `region-only-in-batch-${b}`
      const region = text.slice(200_000)
      const staged = stageBatch(
        {
          id: `b-${b}`,
          records: [{ event_id: `e-${b}`, source: 'csv:t', event_time: '2026-10-05T10:00:00Z', device_id: deviceId(1, 1), metric: 'bytes_out', quantity: '1000', dimensions: { region } }],
          rejects: [],
        },
        guiding,
        Date.parse('2026-11-22T10:00:00Z'),
      )
      expect(staged.records[0]!.charges.length).toBe(1)
    }
    stageOne(-1) // routes and periods made once, outside the measure
    gc()
    gc()
    const before = process.memoryUsage().heapUsed
    for (let b = 0; b < batches; b++) stageOne(b)
    gc()
    gc()
    const heldPerBatch = (process.memoryUsage().heapUsed - before) / batches
    // A slice kept as a cache key (groups, dimension text) would hold its ~200 KB text: ~400 KB per batch here.
    expect(heldPerBatch).toBeLessThan(20_000)
  })
})

describe('stageBatch rejects', () => {
  it('rejects a record whose values are not text, keeping its fields as JSON when it came without raw bytes, 64-bit integers included', () => {
    const guiding = new GuidingIndex([validateCatalog(sampleCatalog())], validateAccounts(sampleAccounts({ customers: 1, devicesPerAccount: 1 })))
    // A 64-bit quantity as a msgpack decoder hands it over: a BigInt.
    const record = { event_id: 'e-1', source: 'mqtt:x', event_time: '2026-10-05T10:00:00Z', device_id: deviceId(1, 1), metric: 'bytes_out', quantity: 18446744073709551615n }
    const staged = stageBatch({ id: 'b-1', records: [record as unknown as WireRecord], rejects: [] }, guiding, Date.parse('2026-11-22T10:00:00Z'))
    expect(staged.records).toEqual([])
    expect(staged.rejectLines).toHaveLength(1)
    const [source, raw, reason] = staged.rejectLines[0]!.split('\t')
    expect(source).toBe('mqtt:x')
    expect(JSON.parse(raw!)).toEqual({ ...record, quantity: '18446744073709551615' })
    expect(reason).toBe('quantity 18446744073709551615 is not a non-negative decimal with at most 29 integer and 9 fraction digits')
  })
})

describe('rejected_usage keys', () => {
  it('keeps apart the rejects of the records one input makes; the same input of the same event is one key, whatever the reason', () => {
    const guiding = new GuidingIndex([validateCatalog(sampleCatalog())], validateAccounts(sampleAccounts({ customers: 2, devicesPerAccount: 1 })))
    // One appliance log line, three records (as a syslog mapping makes them): one priced, two of metrics no charge prices.
    const raw = 'date=2026-10-05 time=10:00:00 devid=fw sentbyte=1200 rcvdbyte=5400 duration=30'
    const rec = (metric: string): WireRecord => ({ event_id: `h-${metric}`, source: 'syslog:fw', event_time: '2026-10-05T10:00:00Z', device_id: deviceId(1, 1), metric, quantity: '1', raw, origin: 'syslog tcp 127.0.0.1:5000 #1' })
    const stage = () => stageBatch({ id: 'b', records: [rec('bytes_out'), rec('cpu_temp'), rec('fan_rpm')], rejects: [] }, guiding, Date.parse('2026-11-22T10:00:00Z'))
    const keys = (lines: string[]) => lines.map((l) => l.split('\t')[5])
    // The two refused records' reject lines, as their owner writes them (not duplicates).
    const rejects = (b: ReturnType<typeof stage>) =>
      b.records.filter((r) => r.rejectReason !== undefined).map((r) => rejectLine(stagedReject(r, r.rejectReason!), r.receivedAt, b.batchId, r.eventId))
    const first = stage()
    expect(first.records.filter((r) => r.charges.length > 0)).toHaveLength(1)
    expect(rejects(first)).toHaveLength(2)
    const [a, b] = keys(rejects(first))
    expect(a).not.toBe(b)
    expect(keys(rejects(stage()))).toEqual([a, b])
    // The same input of the same event rejected for another reason (the catalog changed in between): the same row.
    const j = { source: 'syslog:fw', raw, origin: 'o', reason: 'one reason' }
    expect(keys([rejectLine(j, 'now', 'b', 'e-1')])).toEqual(keys([rejectLine({ ...j, reason: 'another' }, 'later', 'c', 'e-1')]))
  })
})
