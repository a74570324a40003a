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
