import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import { GuidingIndex } from '../catalog/guiding.js'
import { validateAccounts } from '../catalog/accounts.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import type { WireRecord } from '../rating-core/record.js'
import { NO_DIMENSIONS, stageBatch, type StagedBatch, type StagedCharge, type StagedRecord } from '../rating-core/stage.js'
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
    // A metric no charge prices: refused by guiding.
    records.push({ ...records[0]!, event_id: 'unpriced-1', metric: 'cpu_temp' })
    const staged = stageBatch({ id: 'b-1', records, rejects: [{ source: 'csv:w', raw: 'x\ty\n"z', reason: 'bad row' }] }, guiding, Date.parse('2026-11-22T10:00:00Z'))
    expect(staged.rejectLines.length).toBeGreaterThan(1)
    expect(staged.records.some((r) => r.suspendLine !== undefined)).toBe(true)
    expect(staged.records.some((r) => r.rejectReason !== undefined)).toBe(true)
    expect(plain(decodeStaged(encodeStaged(staged)))).toEqual(plain(staged))
  })

  it('any strings (tabs, newlines, NUL, astral characters), and any counts round-trip', () => {
    const text = fc.string({ unit: 'binary', maxLength: 12 })
    // A record's charges share its event id, time and quantity (stageBatch gives each charge the record's).
    const charge = (eventMs: number, eventId: string, eventIso: string, quantity: string) =>
      fc.record<StagedCharge>({
        totalsKey: text, chargeRef: text, quantity: fc.constant(quantity), dimensions: fc.oneof(fc.constant(NO_DIMENSIONS), fc.dictionary(text, text, { maxKeys: 3 })),
        eventIso: fc.constant(eventIso), eventMs: fc.constant(eventMs),
        eventId: fc.constant(eventId), timezone: text, periodStartIso: text, periodEndIso: text, prefix: text, suffix: text,
      })
    // Every instant Date can hold, negative ones included: the wire splits it into two 32-bit halves.
    const record = fc
      .tuple(fc.integer({ min: -8_640_000_000_000_000, max: 8_640_000_000_000_000 }), text, text, text)
      .chain(([eventMs, eventId, eventIso, quantity]) =>
        fc
          .tuple(
            fc.record<StagedRecord>({
              eventId: fc.constant(eventId), eventMs: fc.constant(eventMs), usageLine: text,
              charges: fc.array(charge(eventMs, eventId, eventIso, quantity), { maxLength: 3 }),
              source: text,
              raw: text,
              origin: fc.option(text, { nil: undefined }),
              receivedAt: fc.constant('2026-11-22 10:00:00.000'),
            }),
            // A held record has its suspended_usage line and its reason (stageBatch sets both); a refused one its reason.
            fc.option(fc.tuple(text, text), { nil: undefined }),
            fc.option(text, { nil: undefined }),
          )
          .map(([r, held, refused]): StagedRecord => {
            const h = held === undefined ? r : { ...r, suspendLine: held[0], suspendReason: held[1] }
            return refused === undefined ? h : { ...h, rejectReason: refused }
          }),
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

  const charge = (over: Partial<StagedCharge> = {}): StagedCharge => ({
    totalsKey: 's\0c\0p\0\0v1', chargeRef: 'v1\0plan\0c', quantity: '2', dimensions: NO_DIMENSIONS, eventIso: '2026-11-01T00:00:00.000Z',
    eventMs: Date.parse('2026-11-01T00:00:00.000Z'), eventId: 'e-1', timezone: 'UTC', periodStartIso: '2026-11-01T00:00:00.000Z',
    periodEndIso: '2026-12-01T00:00:00.000Z', prefix: 'prefix\t', suffix: '\tsuffix\n', ...over,
  })
  const record = (charges: StagedCharge[]): StagedRecord => ({
    eventId: 'e-1', eventMs: Date.parse('2026-11-01T00:00:00.000Z'), usageLine: 'u\n', suspendLine: undefined, charges,
    source: 'csv:w', raw: 'raw', origin: undefined, receivedAt: '2026-11-22 10:00:00.000',
  })

  it('keeps charges of one totals key apart when their other shared strings differ', () => {
    const b: StagedBatch = {
      batchId: 'b', read: 1, rejectLines: [],
      records: [record([charge(), charge({ chargeRef: 'v1\0other\0c', suffix: '\tother\n', dimensions: { region: 'eu' } }), charge()])],
    }
    const back = decodeStaged(encodeStaged(b))
    expect(plain(back)).toEqual(plain(b))
    expect(back.records[0]!.charges.map((c) => c.chargeRef)).toEqual(['v1\0plan\0c', 'v1\0other\0c', 'v1\0plan\0c'])
  })

  it('refuses a record whose charges do not share its event id, time and quantity (the wire sends them once per record)', () => {
    for (const over of [{ eventId: 'e-2' }, { eventIso: '2026-11-02T00:00:00.000Z' }, { quantity: '3' }, { eventMs: 1 }]) {
      const b: StagedBatch = { batchId: 'b', read: 1, rejectLines: [], records: [record([charge(), charge(over)])] }
      expect(() => encodeStaged(b), JSON.stringify(over)).toThrow(/a charge of event e-1 has another/)
    }
  })
})
