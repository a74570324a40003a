import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import { GuidingIndex } from '../catalog/guiding.js'
import { validateAccounts } from '../catalog/accounts.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import type { WireRecord } from '../rating-core/record.js'
import { stageBatch, type StagedBatch, type StagedCharge, type StagedRecord } from '../rating-core/stage.js'
import { decodeStaged, encodeStaged } from './staged-wire.js'

/** What structured clone would have delivered: the same data, own enumerable props only. */
const plain = (b: StagedBatch): unknown => JSON.parse(JSON.stringify(b))

describe('staged batches cross to the rater unchanged', () => {
  it('a staged sample batch with rejects, suspended rows, dimensions and several charges round-trips', () => {
    const size = { customers: 3, devicesPerAccount: 2 }
    const guiding = new GuidingIndex([validateCatalog(sampleCatalog())], validateAccounts(sampleAccounts(size)))
    const records: WireRecord[] = []
    let header = true
    for (const line of sampleCsvLines({ events: 400, size, withFaults: true, seed: 9 })) {
      if (header) {
        header = false
        continue
      }
      const [event_id, event_time, device_id, account_id, subscription_id, metric, quantity, region] = line.split(',')
      records.push({
        event_id: event_id!, source: 'csv:w', event_time: event_time!, metric: metric!, quantity: quantity!,
        dimensions: region ? { region } : {}, raw: line, origin: `w.csv:${records.length + 2}`,
        ...(device_id ? { device_id } : {}), ...(account_id ? { account_id } : {}), ...(subscription_id ? { subscription_id } : {}),
      })
    }
    const staged = stageBatch({ id: 'b-1', records, rejects: [{ source: 'csv:w', raw: 'x\ty\n"z', reason: 'bad row' }] }, guiding, Date.parse('2026-11-22T10:00:00Z'))
    expect(staged.rejectLines.length).toBeGreaterThan(1)
    expect(staged.records.some((r) => r.suspendLine !== undefined)).toBe(true)
    expect(plain(decodeStaged(encodeStaged(staged)))).toEqual(plain(staged))
  })

  it('any strings (tabs, newlines, NUL, astral characters), and any counts round-trip', () => {
    const text = fc.string({ unit: 'binary', maxLength: 12 })
    const charge = (eventMs: number) =>
      fc.record<StagedCharge>({
        totalsKey: text, chargeRef: text, quantity: text, dimensions: fc.dictionary(text, text, { maxKeys: 3 }),
        eventIso: text, eventMs: fc.constant(eventMs),
        eventId: text, timezone: text, periodStartIso: text, periodEndIso: text, prefix: text, suffix: text,
      })
    // Every instant Date can hold, negative ones included: the wire splits it into two 32-bit halves. A record's
    // charges share its event time.
    const record = fc.integer({ min: -8_640_000_000_000_000, max: 8_640_000_000_000_000 }).chain((eventMs) =>
      fc.record<StagedRecord>(
        {
          eventId: text, eventMs: fc.constant(eventMs), usageLine: text, suspendLine: text,
          charges: fc.array(charge(eventMs), { maxLength: 3 }),
          source: text,
          raw: text,
          origin: fc.option(text, { nil: undefined }),
          receivedAt: fc.constant('2026-11-22 10:00:00.000'),
        },
        { requiredKeys: ['eventId', 'eventMs', 'usageLine', 'charges', 'source', 'raw', 'origin', 'receivedAt'] },
      ),
    )
    const line = text.map((t) => t.replace(/\n/g, '\\n') + '\n')
    const batch = fc.record<StagedBatch>({ batchId: text, read: fc.nat(), rejectLines: fc.array(line, { maxLength: 4 }), records: fc.array(record, { maxLength: 5 }) })
    fc.assert(
      fc.property(batch, (b) => {
        expect(plain(decodeStaged(encodeStaged(b)))).toEqual(plain(b))
      }),
      { numRuns: 300 },
    )
  })
})
