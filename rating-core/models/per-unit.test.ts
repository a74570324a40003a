import { describe, expect, it } from 'vitest'
import type { PerUnitCharge } from '../../catalog/types.js'
import { pricePerUnit } from './per-unit.js'

const charge = (extra: Partial<PerUnitCharge> = {}): PerUnitCharge => ({ id: 'p', kind: 'usage', meter: 'm', model: 'per_unit', unit_price: '0.05', ...extra })

const cases: { name: string; charge: PerUnitCharge; usage: string; expect: string }[] = [
  // Zuplo monetization docs, per-unit: $0.001 per API call, 100,000 calls = $100.
  { name: 'Zuplo per-unit: 100,000 × 0.001 = 100', charge: charge({ unit_price: '0.001' }), usage: '100000', expect: '100' },
  // OpenMeter, openmeter/billing/rating/service/rate/unit_test.go (repo openmeterio/openmeter at 4066f16), unit price.
  // Mid-period split lines bill increments: with 10/unit and maximum 100, 7 units were billed 70 and the next 5
  // bill T(12) − T(7) = 100 − 70 = 30 ("max spend set and hit").
  { name: 'OpenMeter unit: 10 × 100 = 1000', charge: charge({ unit_price: '100' }), usage: '10', expect: '1000' },
  { name: 'OpenMeter unit: no usage', charge: charge({ unit_price: '10' }), usage: '0', expect: '0' },
  { name: 'OpenMeter unit: minimum spend 100 with no usage', charge: charge({ unit_price: '10', minimum: '100' }), usage: '0', expect: '100' },
  { name: 'OpenMeter unit: maximum 100 not hit at 10 × 10', charge: charge({ unit_price: '10', maximum: '100' }), usage: '10', expect: '100' },
  { name: 'OpenMeter unit: 7 × 10 before the split line', charge: charge({ unit_price: '10', maximum: '100' }), usage: '7', expect: '70' },
  { name: 'OpenMeter unit: maximum 100 hit at 7 + 5 units (120)', charge: charge({ unit_price: '10', maximum: '100' }), usage: '12', expect: '100' },
  { name: 'Q = 0', charge: charge(), usage: '0', expect: '0' },
  { name: 'decimal Q', charge: charge(), usage: '12.345', expect: '0.61725' },
  { name: 'rounds half-even at 9 decimals (…5 → even, down)', charge: charge({ unit_price: '0.0000000001' }), usage: '5', expect: '0' },
  { name: 'rounds half-even at 9 decimals (…5 → even, up)', charge: charge({ unit_price: '0.0000000001' }), usage: '15', expect: '0.000000002' },
  { name: 'huge Q 1e30', charge: charge(), usage: '1000000000000000000000000000000', expect: '50000000000000000000000000000' },
  { name: '18-decimal price', charge: charge({ unit_price: '0.000000000000000001' }), usage: '1000000000000000000', expect: '1' },
  { name: 'free units', charge: charge({ free_units: '100' }), usage: '150', expect: '2.5' },
  { name: 'free units > Q', charge: charge({ free_units: '100' }), usage: '50', expect: '0' },
  { name: 'minimum', charge: charge({ minimum: '5' }), usage: '10', expect: '5' },
  { name: 'minimum at Q = 0', charge: charge({ minimum: '5' }), usage: '0', expect: '5' },
  { name: 'maximum', charge: charge({ maximum: '1' }), usage: '1000', expect: '1' },
  { name: 'negative Q bills nothing', charge: charge(), usage: '-10', expect: '0' },
]

describe('pricePerUnit', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      expect(pricePerUnit(tc.charge, tc.usage).amount).toBe(tc.expect)
    })
  }
  it('lines', () => {
    expect(pricePerUnit(charge({ free_units: '100', maximum: '2' }), '150').lines).toEqual([
      { description: 'free units', quantity: '100', amount: '0' },
      { description: 'per unit', quantity: '50', unit_price: '0.05', amount: '2.5' },
      { description: 'maximum charge cap', quantity: '1', amount: '-0.5' },
    ])
  })
  it('rejects a non-decimal quantity', () => {
    expect(() => pricePerUnit(charge(), '12,5')).toThrow(/not a plain decimal/)
  })
})
