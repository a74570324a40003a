import { describe, expect, it } from 'vitest'
import type { PercentageCharge } from '../../catalog/types.js'
import { pricePercentage } from './percentage.js'

const charge = (extra: Partial<PercentageCharge> = {}): PercentageCharge => ({ id: 'p', kind: 'usage', meter: 'm', model: 'percentage', rate: '1.2', ...extra })

const cases: { name: string; charge: PercentageCharge; values: string[]; expect: string }[] = [
  // Lago docs, percentage charge model: "1.2% on transactions", "$0.10 per transaction".
  { name: 'Lago percentage: 1.2% + $0.10 on $1,000 and $250', charge: charge({ fixed_fee_per_event: '0.1' }), values: ['1000', '250'], expect: '15.2' },
  // Lago's Stripe template: card payments online 2.9% + $0.30.
  { name: 'Lago Stripe template: 2.9% + 0.30 on $100 = 3.20', charge: charge({ rate: '2.9', fixed_fee_per_event: '0.30' }), values: ['100'], expect: '3.2' },
  // OpenMeter, openmeter/billing/rating/service/rate/dynamic_test.go (repo openmeterio/openmeter at 008a1f8): a dynamic
  // price bills the metered value × a multiplier, here 1.33333 = a rate of 133.333 %, with no fixed fee or
  // per-event clamp, so Σ per-event fees = value × rate as in OpenMeter. OpenMeter rounds each line to cents
  // (13.33, 93.33 + 66.67); rated amounts here keep 9 decimals and only invoices round, so only the
  // unrounded value and the clamps compare: 10 × 1.33333 = 13.3333, and maximum 100 on 70 + 50 (93.3331 +
  // 66.6665 = 159.9996) bills 100; minimum 100 with no usage bills 100.
  { name: 'OpenMeter dynamic price: 10 × 1.33333 = 13.3333 (13.33 in cents)', charge: charge({ rate: '133.333' }), values: ['10'], expect: '13.3333' },
  { name: 'OpenMeter dynamic price: maximum 100 on 70 + 50', charge: charge({ rate: '133.333', maximum: '100' }), values: ['70', '50'], expect: '100' },
  { name: 'OpenMeter dynamic price: 70 + 50 without maximum = 159.9996', charge: charge({ rate: '133.333' }), values: ['70', '50'], expect: '159.9996' },
  { name: 'OpenMeter dynamic price: minimum 100 with no usage', charge: charge({ rate: '133.333', minimum: '100' }), values: [], expect: '100' },
  { name: 'per-event minimum lifts small transactions', charge: charge({ fixed_fee_per_event: '0.1', per_event_min: '0.5' }), values: ['10', '1000'], expect: '12.6' },
  { name: 'per-event maximum caps large transactions', charge: charge({ per_event_max: '5' }), values: ['10000', '100'], expect: '6.2' },
  { name: 'free value consumed in order: first event free, second straddles (200 free + 100 × 1.2% + 0.1), third 100 × 1.2% + 0.1', charge: charge({ fixed_fee_per_event: '0.1', free_units: '500' }), values: ['300', '300', '100'], expect: '2.6' },
  { name: 'an entirely free event pays no fixed fee nor minimum', charge: charge({ fixed_fee_per_event: '0.1', per_event_min: '1', free_units: '500' }), values: ['300'], expect: '0' },
  { name: 'free units larger than all value', charge: charge({ free_units: '1000000' }), values: ['300', '300'], expect: '0' },
  { name: 'no events: 0', charge: charge(), values: [], expect: '0' },
  { name: 'no events with a charge minimum', charge: charge({ minimum: '25' }), values: [], expect: '25' },
  { name: 'charge maximum on the sum of fees', charge: charge({ maximum: '10' }), values: ['1000', '1000'], expect: '10' },
  { name: 'a refund (negative value) costs nothing', charge: charge({ fixed_fee_per_event: '0.1' }), values: ['-50', '100'], expect: '1.3' },
  // Fees are summed exact and the sum rounded once: three fees of 5e-10 are 1.5e-9, 0.000000002 (each rounded, 0).
  { name: 'fees below a nano-unit add up before rounding', charge: charge({ rate: '0.005' }), values: ['0.00001', '0.00001', '0.00001'], expect: '0.000000002' },
  { name: 'sub-cent values keep 9 decimals', charge: charge(), values: ['0.000001'], expect: '0.000000012' },
]

describe('pricePercentage', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      expect(pricePercentage(tc.charge, tc.values).amount).toBe(tc.expect)
    })
  }
  it('one line per event, in order', () => {
    const r = pricePercentage(charge({ fixed_fee_per_event: '0.1', free_units: '500' }), ['300', '300'])
    expect(r.lines.map((l) => [l.quantity, l.amount])).toEqual([
      ['300', '0'],
      ['300', '1.3'],
    ])
  })
})
