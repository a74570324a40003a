import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { GraduatedCharge, Tier } from '../../catalog/types.js'
import { fmtNano, mul, parseDec, toNano } from '../decimal.js'
import { priceGraduated } from './graduated.js'

const charge = (tiers: Tier[], extra: Partial<GraduatedCharge> = {}): GraduatedCharge => ({ id: 'g', kind: 'usage', meter: 'm', model: 'graduated', tiers, ...extra })

// Stripe, "Set up tiered pricing" (docs.stripe.com/subscriptions/pricing-models/tiered-pricing):
// fonts 1-5 at 7 USD, 6-10 at 6.5 USD, 11+ at 6 USD.
const stripe = charge([
  { up_to: '5', unit_price: '7' },
  { up_to: '10', unit_price: '6.5' },
  { up_to: null, unit_price: '6' },
])

// OpenMeter's two graduated tier tables (see the cases below for the source).
const openmeterCalc = charge([
  { up_to: '5', flat_fee: '100' },
  { up_to: '10', flat_fee: '50' },
  { up_to: '15', unit_price: '10' },
  { up_to: null, unit_price: '5' },
])
const openmeterLines = charge([
  { up_to: '5', unit_price: '0', flat_fee: '100' },
  { up_to: '10', flat_fee: '50' },
  { up_to: '15', unit_price: '5' },
  { up_to: null, unit_price: '1' },
])

const cases: { name: string; charge: GraduatedCharge; usage: string; expect: string }[] = [
  { name: 'Stripe graduated: 1 font', charge: stripe, usage: '1', expect: '7' },
  { name: 'Stripe graduated: 5 fonts (edge of tier 1)', charge: stripe, usage: '5', expect: '35' },
  { name: 'Stripe graduated: 6 fonts = 5×7 + 1×6.5', charge: stripe, usage: '6', expect: '41.5' },
  { name: 'Stripe graduated: 8 fonts = 5×7 + 3×6.5', charge: stripe, usage: '8', expect: '54.5' },
  { name: 'Stripe graduated: 20 fonts = 35 + 32.5 + 10×6', charge: stripe, usage: '20', expect: '127.5' },
  { name: 'Stripe graduated: 25 fonts = 35 + 32.5 + 15×6', charge: stripe, usage: '25', expect: '157.5' },
  {
    // Lago docs, graduated charge model: $1 for the first 100 units, $0.50 for the next 100, $0.10 after.
    name: 'Lago graduated: 250 calls = 100×1 + 100×0.5 + 50×0.1',
    charge: charge([
      { up_to: '100', unit_price: '1' },
      { up_to: '200', unit_price: '0.5' },
      { up_to: null, unit_price: '0.1' },
    ]),
    usage: '250',
    expect: '155',
  },
  {
    // Zuplo monetization docs, graduated: 0-1,000 at $0.10, 1,001-10,000 at $0.05, 10,001+ at $0.01.
    name: 'Zuplo graduated: 15,000 units = $600',
    charge: charge([
      { up_to: '1000', unit_price: '0.10' },
      { up_to: '10000', unit_price: '0.05' },
      { up_to: null, unit_price: '0.01' },
    ]),
    usage: '15000',
    expect: '600',
  },
  {
    // Autumn docs, graduated pricing: first 1,000 at $0.01, next 9,000 at $0.008, then $0.005.
    name: 'Autumn graduated: 15,000 requests = $107',
    charge: charge([
      { up_to: '1000', unit_price: '0.01' },
      { up_to: '10000', unit_price: '0.008' },
      { up_to: null, unit_price: '0.005' },
    ]),
    usage: '15000',
    expect: '107',
  },
  // OpenMeter, openmeter/billing/rating/service/rate/tieredgraduated_test.go (repo openmeterio/openmeter at 4066f16),
  // TestTieredPriceCalculator: tiers up to 5 flat 100, up to 10 flat 50, up to 15 at 10/unit, then 5/unit.
  // OpenMeter's up_to is inclusive and a tier's flat price is charged once the tier is reached, the first
  // tier's even at 0 ("totals, no usage") — the bounds and fees of CONTRACT §3.2, so the totals carry over.
  { name: 'OpenMeter graduated totals: no usage bills the first tier flat fee', charge: openmeterCalc, usage: '0', expect: '100' },
  { name: 'OpenMeter graduated totals: 3 in tier 1', charge: openmeterCalc, usage: '3', expect: '100' },
  { name: 'OpenMeter graduated totals: 5, top of tier 1', charge: openmeterCalc, usage: '5', expect: '100' },
  { name: 'OpenMeter graduated totals: 5.001 reaches tier 2 = 100 + 50', charge: openmeterCalc, usage: '5.001', expect: '150' },
  { name: 'OpenMeter graduated totals: 7 in tier 2', charge: openmeterCalc, usage: '7', expect: '150' },
  { name: 'OpenMeter graduated totals: 12 = 100 + 50 + 2×10', charge: openmeterCalc, usage: '12', expect: '170' },
  { name: 'OpenMeter graduated totals: 22 = 100 + 50 + 5×10 + 7×5', charge: openmeterCalc, usage: '22', expect: '235' },
  // Same file, TestTieredGraduatedCalculation: tiers up to 5 flat 100 (unit 0), up to 10 flat 50, up to 15 at
  // 5/unit, then 1/unit. "single period multiple tier usage" at 22: 100 + 50 + 5×5 + 7×1. Its mid-period split
  // lines bill the increment T(22) − T(12) = 182 − 160 = 22 ("mid period, multiple tier usage": 3×5 + 7×1) and
  // T(8) − T(7) = 0 ("mid price, flat only => no lines") — the increments rated events carry here.
  { name: 'OpenMeter graduated: 22 = 100 + 50 + 5×5 + 7×1', charge: openmeterLines, usage: '22', expect: '182' },
  { name: 'OpenMeter graduated: 12 = 100 + 50 + 2×5 (T before the 10 units of the split line)', charge: openmeterLines, usage: '12', expect: '160' },
  { name: 'OpenMeter graduated: 7 and 8 both cost 150 (flat-only tier: no increment)', charge: openmeterLines, usage: '8', expect: '150' },
  { name: 'OpenMeter graduated: maximum spend 170 at 22 (160 billed + 10 after the cap)', charge: charge(openmeterLines.tiers, { maximum: '170' }), usage: '22', expect: '170' },
  { name: 'OpenMeter graduated: minimum spend 1000 with no usage (100 flat + 900 minimum)', charge: charge(openmeterLines.tiers, { minimum: '1000' }), usage: '0', expect: '1000' },
  { name: 'Q = 0 charges the first tier flat fee', charge: charge([{ up_to: '10', unit_price: '1', flat_fee: '20' }, { up_to: null, unit_price: '0.5', flat_fee: '5' }]), usage: '0', expect: '20' },
  { name: 'exactly at tier edge: next tier flat fee not reached', charge: charge([{ up_to: '10', unit_price: '1', flat_fee: '20' }, { up_to: null, unit_price: '0.5', flat_fee: '5' }]), usage: '10', expect: '30' },
  { name: 'just above the edge reaches tier 2 and its flat fee', charge: charge([{ up_to: '10', unit_price: '1', flat_fee: '20' }, { up_to: null, unit_price: '0.5', flat_fee: '5' }]), usage: '10.001', expect: '35.0005' },
  { name: 'decimal quantity', charge: stripe, usage: '5.5', expect: '38.25' },
  { name: 'huge quantity 1e30 stays exact', charge: stripe, usage: '1000000000000000000000000000000', expect: '6000000000000000000000000000007.5' },
  { name: 'free units come off first', charge: charge(stripe.tiers, { free_units: '2' }), usage: '8', expect: '41.5' },
  { name: 'free units above Q: first tier flat fee only', charge: charge([{ up_to: '5', unit_price: '7', flat_fee: '1' }, { up_to: null, unit_price: '6' }], { free_units: '100' }), usage: '8', expect: '1' },
  { name: 'minimum clamps up', charge: charge(stripe.tiers, { minimum: '50' }), usage: '1', expect: '50' },
  { name: 'maximum clamps down', charge: charge(stripe.tiers, { maximum: '100' }), usage: '25', expect: '100' },
  { name: 'negative Q bills as 0', charge: stripe, usage: '-3', expect: '0' },
  { name: 'a first tier up_to 0 is a base fee', charge: charge([{ up_to: '0', flat_fee: '9' }, { up_to: null, unit_price: '1' }]), usage: '3', expect: '12' },
  { name: 'sub-nano share rounds half-even per line', charge: charge([{ up_to: null, unit_price: '0.0000000005' }]), usage: '1', expect: '0' },
  { name: 'sub-nano share rounds half-even per line (odd)', charge: charge([{ up_to: null, unit_price: '0.0000000005' }]), usage: '3', expect: '0.000000002' },
  {
    // 2 × 0.0125000004 = 0.0250000008 whichever tier holds the units: rounding each tier's 0.0125000004 apart
    // gave 0.025, half a cent on an invoice's half-even rounding away from the model's 0.025000001.
    name: 'the total is the exact sum over tiers rounded once, not the sum of rounded tiers',
    charge: charge([{ up_to: '1', unit_price: '0.0125000004' }, { up_to: null, unit_price: '0.0125000004' }]),
    usage: '2',
    expect: '0.025000001',
  },
]

describe('priceGraduated', () => {
  for (const tc of cases) {
    it(tc.name, () => {
      const r = priceGraduated(tc.charge, tc.usage)
      expect(r.amount).toBe(tc.expect)
    })
  }

  it('lines: one per tier reached, each with its share, and they add up', () => {
    const r = priceGraduated(stripe, '8')
    expect(r.lines).toEqual([
      { description: 'tier 1 (0, 5]', quantity: '5', unit_price: '7', amount: '35' },
      { description: 'tier 2 (5, 10]', quantity: '3', unit_price: '6.5', amount: '19.5' },
    ])
  })

  it('clamp shows as an adjustment line', () => {
    const r = priceGraduated(charge(stripe.tiers, { minimum: '50' }), '1')
    expect(r.lines.at(-1)).toEqual({ description: 'minimum charge adjustment', quantity: '1', amount: '43' })
  })

  it('property: tiers of one unit price and no fees price Q as per_unit would, rounded once', () => {
    // Prices with up to 12 decimals and quantities with up to 9: the tiers cut Q into parts whose products have
    // more than 9 decimals, so a rounding per tier would show.
    const dec = (digits: number) => fc.tuple(fc.integer({ min: 0, max: 999 }), fc.bigInt({ min: 0n, max: 10n ** BigInt(digits) - 1n })).map(([i, f]) => `${i}.${f.toString().padStart(digits, '0')}`)
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 900 }), { maxLength: 4 }), dec(12), dec(9), (ups, price, q) => {
        const tiers: Tier[] = [...ups.sort((a, b) => a - b).map((u) => `${u}.5`), null].map((up_to) => ({ up_to, unit_price: price }))
        expect(priceGraduated(charge(tiers), q).amount).toBe(fmtNano(toNano(mul(parseDec(q), parseDec(price)))))
      }),
    )
  })

  it('property: total is non-decreasing in Q', () => {
    const tiersArb = fc
      .tuple(fc.uniqueArray(fc.integer({ min: 1, max: 1000 }), { maxLength: 4 }), fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 5, maxLength: 5 }))
      .map(([ups, prices]): Tier[] => [...ups.sort((a, b) => a - b).map(String), null].map((up_to, k) => ({ up_to, unit_price: (prices[k]! / 1000).toFixed(3), flat_fee: k % 2 ? '1.5' : undefined })).map((t) => (t.flat_fee === undefined ? { up_to: t.up_to, unit_price: t.unit_price } : t)))
    fc.assert(
      fc.property(tiersArb, fc.integer({ min: 0, max: 2_000_000 }), fc.integer({ min: 0, max: 2_000_000 }), (tiers, a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a]
        const c = charge(tiers)
        const x = priceGraduated(c, (lo / 1000).toFixed(3)).amount
        const y = priceGraduated(c, (hi / 1000).toFixed(3)).amount
        expect(Number(x) <= Number(y)).toBe(true) // test-only comparison of two exact outputs
      }),
    )
  })
})
