import { describe, expect, it } from 'vitest'
import type { GraduatedPercentageCharge } from '../../catalog/types.js'
import { priceGraduatedPercentage } from './graduated-percentage.js'

// Lago docs, graduated percentage charge model: 0-1,000 at 1% + $200, 1,001-10,000 at 2% + $300,
// 10,001+ at 3% + $400. Transactions of $500, $550, $4,000 cost $205, $306, $80: the cumulative
// totals after each are 205, 511, 591.
const lago: GraduatedPercentageCharge = {
  id: 'gp',
  kind: 'usage',
  meter: 'm',
  model: 'graduated_percentage',
  tiers: [
    { up_to: '1000', rate: '1', flat_fee: '200' },
    { up_to: '10000', rate: '2', flat_fee: '300' },
    { up_to: null, rate: '3', flat_fee: '400' },
  ],
}

const cases: { name: string; charge: GraduatedPercentageCharge; usage: string; expect: string }[] = [
  { name: 'Lago: after the $500 transaction', charge: lago, usage: '500', expect: '205' },
  { name: 'Lago: after $500 + $550 = 1,050 (205 + 306)', charge: lago, usage: '1050', expect: '511' },
  { name: 'Lago: after $500 + $550 + $4,000 = 5,050 (205 + 306 + 80)', charge: lago, usage: '5050', expect: '591' },
  { name: 'Q = 0 charges the first tier flat fee', charge: lago, usage: '0', expect: '200' },
  { name: 'into tier 3: 10 + 200 + 180 + 300 + 300 + 400', charge: lago, usage: '20000', expect: '1390' },
  { name: 'free units', charge: { ...lago, free_units: '1000' }, usage: '1050', expect: '200.5' },
  { name: 'maximum', charge: { ...lago, maximum: '300' }, usage: '1050', expect: '300' },
  { name: 'fractional percent', charge: { ...lago, tiers: [{ up_to: null, rate: '2.5' }] }, usage: '0.01', expect: '0.00025' },
  // 2 × 1.25000004 % = 0.0250000008, rounded once (per tier it was 0.0125 + 0.0125).
  { name: 'the total is the exact sum over tiers rounded once', charge: { ...lago, tiers: [{ up_to: '1', rate: '1.25000004' }, { up_to: null, rate: '1.25000004' }] }, usage: '2', expect: '0.025000001' },
]

describe('priceGraduatedPercentage', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      expect(priceGraduatedPercentage(tc.charge, tc.usage).amount).toBe(tc.expect)
    })
  }
  it('lines use rate/100 as the unit price', () => {
    expect(priceGraduatedPercentage(lago, '1050').lines).toEqual([
      { description: 'tier 1 (0, 1000]', quantity: '1000', unit_price: '0.01', flat_fee: '200', amount: '210' },
      { description: 'tier 2 (1000, 10000]', quantity: '50', unit_price: '0.02', flat_fee: '300', amount: '301' },
    ])
  })
})
