import { describe, expect, it } from 'vitest'
import type { PackageCharge } from '../../catalog/types.js'
import { pricePackage } from './package.js'

// Lago docs, package charge model: $5 per 100 units, the first 100 units free.
const lago: PackageCharge = { id: 'k', kind: 'usage', meter: 'm', model: 'package', package_size: '100', package_price: '5', free_units: '100' }
const charge = (extra: Partial<PackageCharge> = {}): PackageCharge => ({ ...lago, ...extra })

const cases: { name: string; charge: PackageCharge; usage: string; expect: string }[] = [
  { name: 'Lago package: 201 units = 0 + 5 + 5 = 10', charge: lago, usage: '201', expect: '10' },
  { name: 'Lago package: 100 units are free', charge: lago, usage: '100', expect: '0' },
  { name: 'Lago package: 101 units start a package', charge: lago, usage: '101', expect: '5' },
  { name: 'Lago package: 200 units fill one package exactly', charge: lago, usage: '200', expect: '5' },
  { name: 'Q = 0', charge: charge({ free_units: undefined }), usage: '0', expect: '0' },
  { name: 'no free units: 1 unit is a package', charge: charge({ free_units: undefined }), usage: '1', expect: '5' },
  { name: 'decimal quantity and size', charge: charge({ free_units: undefined, package_size: '0.5' }), usage: '1.01', expect: '15' },
  { name: 'huge quantity', charge: charge({ free_units: undefined }), usage: '1000000000000000000000000000000', expect: '50000000000000000000000000000' },
  { name: 'minimum', charge: charge({ minimum: '7' }), usage: '150', expect: '7' },
  { name: 'maximum', charge: charge({ maximum: '20' }), usage: '100000', expect: '20' },
]

describe('pricePackage', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      expect(pricePackage(tc.charge, tc.usage).amount).toBe(tc.expect)
    })
  }
  it('lines', () => {
    expect(pricePackage(lago, '201').lines).toEqual([
      { description: 'free units', quantity: '100', amount: '0' },
      { description: 'packages of 100', quantity: '2', unit_price: '5', amount: '10' },
    ])
  })
})
