import { describe, expect, it } from 'vitest'
import type { PackageCharge } from '../../catalog/types.js'
import { pricePackage } from './package.js'

// Lago docs, package charge model: $5 per 100 units, the first 100 units free.
const lago: PackageCharge = { id: 'k', kind: 'usage', meter: 'm', model: 'package', package_size: '100', package_price: '5', free_units: '100' }
const charge = (extra: Partial<PackageCharge> = {}): PackageCharge => ({ ...lago, ...extra })

// OpenMeter's package price (see the cases below for the source).
const openmeter: PackageCharge = { id: 'k', kind: 'usage', meter: 'm', model: 'package', package_size: '10', package_price: '15' }

const cases: { name: string; charge: PackageCharge; usage: string; expect: string }[] = [
  { name: 'Lago package: 201 units = 0 + 5 + 5 = 10', charge: lago, usage: '201', expect: '10' },
  { name: 'Lago package: 100 units are free', charge: lago, usage: '100', expect: '0' },
  { name: 'Lago package: 101 units start a package', charge: lago, usage: '101', expect: '5' },
  { name: 'Lago package: 200 units fill one package exactly', charge: lago, usage: '200', expect: '5' },
  // OpenMeter, openmeter/billing/rating/service/rate/package_test.go (repo openmeterio/openmeter at 4516800): 15 per package
  // of 10, no free units. TestGetNumberOfPackages: 0 → 0, 1 → 1, 9 → 1, 10 → 1, 11 → 2 packages (a started
  // package is a whole one, as CONTRACT §3.2's ceil). Mid-period split lines bill increments: T(22) − T(17) =
  // 45 − 30 = 15 ("overflow into second package"); with maximum 100, T(110) − T(60) = 100 − 90 = 10.
  { name: 'OpenMeter package: no usage', charge: openmeter, usage: '0', expect: '0' },
  { name: 'OpenMeter package: 1 unit = 1 package', charge: openmeter, usage: '1', expect: '15' },
  { name: 'OpenMeter package: 9 units = 1 package', charge: openmeter, usage: '9', expect: '15' },
  { name: 'OpenMeter package: 10 units = 1 package', charge: openmeter, usage: '10', expect: '15' },
  { name: 'OpenMeter package: 11 units = 2 packages', charge: openmeter, usage: '11', expect: '30' },
  { name: 'OpenMeter package: 17 units (before the split line)', charge: openmeter, usage: '17', expect: '30' },
  { name: 'OpenMeter package: 17 + 5 = 22 units = 3 packages', charge: openmeter, usage: '22', expect: '45' },
  { name: 'OpenMeter package: minimum spend 100 with no usage', charge: { ...openmeter, minimum: '100' }, usage: '0', expect: '100' },
  { name: 'OpenMeter package: maximum 100 not hit at 10 units', charge: { ...openmeter, maximum: '100' }, usage: '10', expect: '15' },
  { name: 'OpenMeter package: 60 units = 6 packages = 90', charge: { ...openmeter, maximum: '100' }, usage: '60', expect: '90' },
  { name: 'OpenMeter package: maximum 100 hit at 60 + 50 units (11 packages = 165)', charge: { ...openmeter, maximum: '100' }, usage: '110', expect: '100' },
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
