import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import { GuidingIndex } from '../catalog/guiding.js'
import { validateAccounts } from '../catalog/accounts.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import type { WireRecord } from '../rating-core/record.js'
import { NO_DIMENSIONS, stageBatch, type StagedBatch, type StagedCharge, type StagedRecord } from '../rating-core/stage.js'
import { AMOUNT_SLOT, decodeStaged, encodeStaged, METERED_SLOT, writeSlot, type AppliedBatch } from './staged-wire.js'

/** What structured clone would have delivered: the same data, own enumerable props only. */
const plain = (b: unknown): unknown => JSON.parse(JSON.stringify(b))

/** A rated row as staging lays it out: both slots zeroed. */
const SLOTS = '0'.repeat(METERED_SLOT) + '\t' + '0'.repeat(AMOUNT_SLOT)

/** What the rater should get of `b`: its records with each usage line, and each charge's rated row with zeroed slots. */
function expected(b: StagedBatch): unknown {
  return plain({
    ...b,
    records: b.records.map(({ charges, ...r }) => ({ ...r, charges: charges.map(({ prefix, suffix, ...c }) => ({ ...c, row: prefix + SLOTS + suffix })) })),
  })
}

/** What the rater got: the rows read back as text at the offsets decodeStaged gives, each slot checked to be one. */
function received(a: AppliedBatch): unknown {
  const text = (from: number, to: number) => Buffer.from(a.rows.buffer, a.rows.byteOffset + from, to - from).toString('utf8')
  let usageFrom = 0
  let rowFrom = a.ratedFrom
  const { rows: _rows, ratedFrom: _from, ...rest } = a
  return plain({
    ...rest,
    records: a.records.map(({ usageEnd, charges, ...r }) => {
      const usageLine = text(usageFrom, usageEnd)
      usageFrom = usageEnd
      return {
        ...r,
        usageLine,
        charges: charges.map(({ rowEnd, slot, ...c }) => {
          expect(text(slot, slot + SLOTS.length)).toBe(SLOTS)
          const row = text(rowFrom, rowEnd)
          rowFrom = rowEnd
          return { ...c, row }
        }),
      }
    }),
  })
}

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
    expect(received(decodeStaged(encodeStaged(staged)))).toEqual(expected(staged))
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
        fc.record<StagedRecord>(
          {
            eventId: fc.constant(eventId), eventMs: fc.constant(eventMs), usageLine: text, suspendLine: text,
            charges: fc.array(charge(eventMs, eventId, eventIso, quantity), { maxLength: 3 }),
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
        expect(received(decodeStaged(encodeStaged(b)))).toEqual(expected(b))
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
      records: [record([charge(), charge({ chargeRef: 'v1\0other\0c', dimensions: { region: 'eu' } }), charge()])],
    }
    const back = decodeStaged(encodeStaged(b))
    expect(received(back)).toEqual(expected(b))
    expect(back.records[0]!.charges.map((c) => c.chargeRef)).toEqual(['v1\0plan\0c', 'v1\0other\0c', 'v1\0plan\0c'])
  })

  it('refuses a record whose charges do not share its event id, time and quantity (the wire sends them once per record)', () => {
    for (const over of [{ eventId: 'e-2' }, { eventIso: '2026-11-02T00:00:00.000Z' }, { quantity: '3' }, { eventMs: 1 }]) {
      const b: StagedBatch = { batchId: 'b', read: 1, rejectLines: [], records: [record([charge(), charge(over)])] }
      expect(() => encodeStaged(b), JSON.stringify(over)).toThrow(/a charge of event e-1 has another/)
    }
  })
})

describe('writeSlot', () => {
  const slot = (width: number, value: string): string | false => {
    const rows = Buffer.from(`[${'0'.repeat(width)}]`)
    return writeSlot(rows, 1, width, value) ? rows.toString('latin1') : false
  }

  it('writes a decimal right-aligned over the zeros, a minus sign first, and nothing when it does not fit', () => {
    expect(slot(8, '12.5')).toBe('[000012.5]')
    expect(slot(8, '-12.5')).toBe('[-00012.5]')
    expect(slot(8, '0')).toBe('[00000000]')
    expect(slot(10, '-0.000001')).toBe('[-00.000001]')
    expect(slot(8, '12345678')).toBe('[12345678]')
    expect(slot(8, '-1234567')).toBe('[-1234567]')
    expect(slot(8, '123456789')).toBe(false)
    expect(slot(8, '-12345678')).toBe(false)
  })

  // That ClickHouse reads such a slot as the decimal is proven on chDB by the rater's row test (pipeline/rater.test.ts).
  it('leaves the same decimal but for leading zeros after the sign (any sign, digits and scale that fit)', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.bigInt({ min: 0n, max: 10n ** 20n }), fc.integer({ min: 0, max: 9 }), (negative, digits, scale) => {
        const text = digits.toString().padStart(scale + 1, '0')
        const value = `${negative ? '-' : ''}${scale === 0 ? text : `${text.slice(0, -scale)}.${text.slice(-scale)}`}`
        const rows = Buffer.from('0'.repeat(AMOUNT_SLOT + 4))
        if (!writeSlot(rows, 0, AMOUNT_SLOT + 4, value)) return
        // Leading zeros are the only difference: the same number, read back.
        const back = rows.toString('latin1')
        expect(back.length).toBe(AMOUNT_SLOT + 4)
        const strip = (v: string) => v.replace(/^(-?)0+(?=\d)/, '$1')
        expect(strip(back)).toBe(strip(value))
      }),
    )
  })
})
