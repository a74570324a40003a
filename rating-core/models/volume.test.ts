import { describe, expect, it } from 'vitest'
import type { Tier, VolumeCharge } from '../../catalog/types.js'
import { priceVolume } from './volume.js'

const charge = (tiers: Tier[], extra: Partial<VolumeCharge> = {}): VolumeCharge => ({ id: 'v', kind: 'usage', meter: 'm', model: 'volume', tiers, ...extra })

// Stripe, "Set up tiered pricing", volume-based table: 1-5 at 7 USD, 6-10 at 6.5 USD, 11+ at 6 USD.
const stripe = charge([
  { up_to: '5', unit_price: '7' },
  { up_to: '10', unit_price: '6.5' },
  { up_to: null, unit_price: '6' },
])
// Lago docs, volume charge model: every tier has a $10 fixed fee.
const lago = charge([
  { up_to: '10000', unit_price: '0.0010', flat_fee: '10' },
  { up_to: '50000', unit_price: '0.0008', flat_fee: '10' },
  { up_to: '100000', unit_price: '0.0006', flat_fee: '10' },
  { up_to: null, unit_price: '0.0004', flat_fee: '10' },
])

// OpenMeter's volume tier table (see the cases below for the source).
const openmeter = charge([
  { up_to: '5', flat_fee: '100' },
  { up_to: '10', flat_fee: '150' },
  { up_to: '15', unit_price: '10' },
  { up_to: null, unit_price: '5' },
])

const cases: { name: string; charge: VolumeCharge; usage: string; expect: string }[] = [
  { name: 'Stripe volume: 1 font = 7', charge: stripe, usage: '1', expect: '7' },
  { name: 'Stripe volume: 5 fonts = 35', charge: stripe, usage: '5', expect: '35' },
  { name: 'Stripe volume: 6 fonts = 39', charge: stripe, usage: '6', expect: '39' },
  { name: 'Stripe volume: 8 fonts = 52', charge: stripe, usage: '8', expect: '52' },
  { name: 'Stripe volume: 20 fonts = 120', charge: stripe, usage: '20', expect: '120' },
  { name: 'Stripe volume: 25 fonts = 150', charge: stripe, usage: '25', expect: '150' },
  { name: 'Lago volume: 65,000 calls = 65,000 × 0.0006 + 10 = 49', charge: lago, usage: '65000', expect: '49' },
  { name: 'Lago volume: exactly 10,000 stays in tier 1', charge: lago, usage: '10000', expect: '20' },
  { name: 'Lago volume: 10,000.5 moves to tier 2', charge: lago, usage: '10000.5', expect: '18.0004' },
  // Zuplo monetization docs: volume, 15,000 units all at the 10,001+ rate of $0.01.
  { name: 'Zuplo volume: 15,000 units = 150', charge: charge([{ up_to: '1000', unit_price: '0.10' }, { up_to: '10000', unit_price: '0.05' }, { up_to: null, unit_price: '0.01' }]), usage: '15000', expect: '150' },
  // OpenMeter, openmeter/billing/rating/service/rate/tieredvolume_test.go (repo openmeterio/openmeter at 008a1f8),
  // TestTieredVolumeCalculation: tiers up to 5 flat 100, up to 10 flat 150, up to 15 at 10/unit, then 5/unit;
  // inclusive up_to (TestFindTierForQuantity: 5 is tier 1, 6 is tier 2) and Q = 0 in tier 1, as CONTRACT §3.2.
  { name: 'OpenMeter volume: no usage = tier 1 flat 100', charge: openmeter, usage: '0', expect: '100' },
  { name: 'OpenMeter volume: 3, tier 1 mid', charge: openmeter, usage: '3', expect: '100' },
  { name: 'OpenMeter volume: 5, tier 1 top', charge: openmeter, usage: '5', expect: '100' },
  { name: 'OpenMeter volume: 6 is in tier 2 (flat 150)', charge: openmeter, usage: '6', expect: '150' },
  { name: 'OpenMeter volume: 14 × 10, tier 3 almost full', charge: openmeter, usage: '14', expect: '140' },
  { name: 'OpenMeter volume: 15 × 10, tier 3 full', charge: openmeter, usage: '15', expect: '150' },
  { name: 'OpenMeter volume: 16 × 5, tier 3 just passed', charge: openmeter, usage: '16', expect: '80' },
  { name: 'OpenMeter volume: 100 × 5, tier 4', charge: openmeter, usage: '100', expect: '500' },
  { name: 'OpenMeter volume: minimum 150, no usage (100 + 50 minimum)', charge: charge(openmeter.tiers, { minimum: '150' }), usage: '0', expect: '150' },
  { name: 'OpenMeter volume: minimum 150, usage 5 below it', charge: charge(openmeter.tiers, { minimum: '150' }), usage: '5', expect: '150' },
  { name: 'OpenMeter volume: minimum 100, usage 5 equals it', charge: charge(openmeter.tiers, { minimum: '100' }), usage: '5', expect: '100' },
  { name: 'OpenMeter volume: minimum 100, usage 100 over it', charge: charge(openmeter.tiers, { minimum: '100' }), usage: '100', expect: '500' },
  { name: 'OpenMeter volume: maximum 100, usage 5 equals it', charge: charge(openmeter.tiers, { maximum: '100' }), usage: '5', expect: '100' },
  { name: 'OpenMeter volume: maximum 125, usage 7 (150 − 25)', charge: charge(openmeter.tiers, { maximum: '125' }), usage: '7', expect: '125' },
  { name: 'Q = 0 is in the first tier (its flat fee is charged)', charge: lago, usage: '0', expect: '10' },
  { name: 'huge quantity', charge: stripe, usage: '1000000000000000000000000000000', expect: '6000000000000000000000000000000' },
  { name: 'free units before choosing the tier', charge: charge(stripe.tiers, { free_units: '3' }), usage: '8', expect: '35' },
  { name: 'free units > Q', charge: charge(lago.tiers, { free_units: '1000000' }), usage: '5', expect: '10' },
  { name: 'minimum', charge: charge(stripe.tiers, { minimum: '10' }), usage: '1', expect: '10' },
  { name: 'maximum', charge: charge(stripe.tiers, { maximum: '100' }), usage: '25', expect: '100' },
]

describe('priceVolume', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      expect(priceVolume(tc.charge, tc.usage).amount).toBe(tc.expect)
    })
  }
  it('one line for the tier that prices all of Q', () => {
    expect(priceVolume(lago, '65000').lines).toEqual([
      { description: 'tier 3 (50000, 100000]', quantity: '65000', unit_price: '0.0006', flat_fee: '10', amount: '49' },
    ])
  })
})
