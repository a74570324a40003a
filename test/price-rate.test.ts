import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Catalog } from '../catalog/types.js'
import { killStrayChildren, rateflow, tempDir, writeJson, type CliResult } from './helpers/cli.js'

/**
 * `rateflow price` and `rateflow rate` (CONTRACT §1) as a user runs them: the built CLI in a child process,
 * a catalog file, JSON on stdout. Every expected figure is a worked example published by someone else
 * (named beside it) or worked out by hand in a comment; none comes from the code under test.
 */
const tmp = tempDir('rateflow-price-')
const catalogFile = join(tmp.dir, 'catalog.json')

// CGRateS RT_20CNT at peak (see cgrates_voice below).
const RT_20CNT = {
  schedule: 'peak',
  connect_fee: '0.4',
  steps: [
    { from: '0', unit_price: '0.2', per: '60', increment: '60' },
    { from: '60', unit_price: '0.1', per: '60', increment: '30' },
  ],
}

// This catalog's off-peak rates: 0.05 per 60 s in 1 s increments (every moment of the week needs a rate).
const OFF_PEAK = ['night', 'morning', 'weekend'].map((schedule) => ({ schedule, steps: [{ from: '0', unit_price: '0.05', per: '60', increment: '1' }] }))

const catalog: Catalog = {
  version: 'published-examples',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [
    { id: 'units', metric: 'units', aggregation: 'sum' },
    { id: 'peak_units', metric: 'units', aggregation: 'max' },
    { id: 'txn', metric: 'txn_amount', aggregation: 'sum' },
    { id: 'seconds', metric: 'call_seconds', aggregation: 'sum' },
  ],
  schedules: [
    // CGRateS tutorial timings: peak Monday–Friday 08:00–19:00, off-peak the rest of the week.
    { id: 'peak', weekdays: [1, 2, 3, 4, 5], from: '08:00', to: '19:00' },
    { id: 'night', weekdays: [1, 2, 3, 4, 5], from: '19:00', to: '24:00' },
    { id: 'morning', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '08:00' },
    { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
    { id: 'always', weekdays: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '24:00' },
  ],
  plans: [
    {
      id: 'published',
      billing_period: 'month',
      charges: [
        { id: 'platform', kind: 'recurring', amount: '300', billing: 'in_advance', proration: 'daily' },
        // Stripe, "Set up tiered pricing" (docs.stripe.com/products-prices/pricing-models#tiered-pricing): fonts
        // 1–5 at 7 USD, 6–10 at 6.5 USD, 11+ at 6 USD, graduated and volume.
        {
          id: 'stripe_graduated',
          kind: 'usage',
          meter: 'units',
          model: 'graduated',
          tiers: [
            { up_to: '5', unit_price: '7' },
            { up_to: '10', unit_price: '6.5' },
            { up_to: null, unit_price: '6' },
          ],
        },
        {
          id: 'stripe_volume',
          kind: 'usage',
          meter: 'units',
          model: 'volume',
          tiers: [
            { up_to: '5', unit_price: '7' },
            { up_to: '10', unit_price: '6.5' },
            { up_to: null, unit_price: '6' },
          ],
        },
        // The Stripe tiers again on a `max` meter: --events are aggregated the way the meter aggregates.
        {
          id: 'stripe_peak',
          kind: 'usage',
          meter: 'peak_units',
          model: 'graduated',
          tiers: [
            { up_to: '5', unit_price: '7' },
            { up_to: '10', unit_price: '6.5' },
            { up_to: null, unit_price: '6' },
          ],
        },
        // Lago docs, volume charge model (getlago.com/docs/guide/plans/charges/charge-models/volume).
        {
          id: 'lago_volume',
          kind: 'usage',
          meter: 'units',
          model: 'volume',
          tiers: [
            { up_to: '10000', unit_price: '0.0010', flat_fee: '10' },
            { up_to: '50000', unit_price: '0.0008', flat_fee: '10' },
            { up_to: '100000', unit_price: '0.0006', flat_fee: '10' },
            { up_to: null, unit_price: '0.0004', flat_fee: '10' },
          ],
        },
        // Lago docs, package charge model: $5 per 100 units, the first 100 free.
        { id: 'lago_package', kind: 'usage', meter: 'units', model: 'package', package_size: '100', package_price: '5', free_units: '100' },
        // Zuplo monetization docs, per-unit (zuplo.com/docs/articles/monetization/pricing-models): $0.001 per call.
        { id: 'zuplo_per_unit', kind: 'usage', meter: 'units', model: 'per_unit', unit_price: '0.001' },
        // Lago docs, percentage charge model: 1.2 % and $0.10 per transaction.
        { id: 'lago_percentage', kind: 'usage', meter: 'txn', model: 'percentage', rate: '1.2', fixed_fee_per_event: '0.10' },
        // Lago's Stripe template: card payments 2.9 % + $0.30; the per-event floor and cap are this catalog's.
        {
          id: 'card_fee',
          kind: 'usage',
          meter: 'txn',
          model: 'percentage',
          rate: '2.9',
          fixed_fee_per_event: '0.30',
          per_event_min: '0.50',
          per_event_max: '10',
        },
        // Lago docs, graduated percentage: 0–1,000 at 1 % + $200, 1,001–10,000 at 2 % + $300, 10,001+ at 3 % + $400.
        {
          id: 'lago_graduated_percentage',
          kind: 'usage',
          meter: 'txn',
          model: 'graduated_percentage',
          tiers: [
            { up_to: '1000', rate: '1', flat_fee: '200' },
            { up_to: '10000', rate: '2', flat_fee: '300' },
            { up_to: null, rate: '3', flat_fee: '400' },
          ],
        },
        // OpenMeter, openmeter/billing/rating/service/rate/tieredgraduated_test.go (openmeterio/openmeter):
        // up to 5 flat 100, up to 10 flat 50, up to 15 at 5/unit, then 1/unit.
        {
          id: 'openmeter_graduated',
          kind: 'usage',
          meter: 'units',
          model: 'graduated',
          tiers: [
            { up_to: '5', unit_price: '0', flat_fee: '100' },
            { up_to: '10', flat_fee: '50' },
            { up_to: '15', unit_price: '5' },
            { up_to: null, unit_price: '1' },
          ],
        },
        // CGRateS RT_20CNT (cgrates/cgrates docs/readthedocs/tariffPlanManagement.rst, "6.3 Calculate Cost"):
        // connect fee 0.4; 0.2 per 60 s in 60 s increments for the first minute, then 0.1 per 60 s in 30 s
        // increments; rounding *up to 4 decimals. Off-peak is this catalog's: 0.05 per 60 s, 1 s increments.
        {
          id: 'cgrates_voice',
          kind: 'usage',
          meter: 'seconds',
          model: 'time_rated',
          rates: [RT_20CNT, ...OFF_PEAK],
          rounding: { decimals: 4, mode: 'up' },
          max_cost_per_event: '2',
          max_cost_strategy: 'free',
        },
        // CGRateS RT_20CNT at peak as above, with this catalog's period terms (CONTRACT §3.1 allows them on any usage
        // charge): the first 30 s of the period's sessions free, and the period's total capped at 0.5.
        {
          id: 'bundle_voice',
          kind: 'usage',
          meter: 'seconds',
          model: 'time_rated',
          rates: [RT_20CNT, ...OFF_PEAK],
          rounding: { decimals: 4, mode: 'up' },
          free_units: '30',
          minimum: '0',
          maximum: '0.5',
        },
        // MagnusBilling wiki, "Call Price Calculation" (github.com/magnussolution/magnusbilling/wiki/EN--price_calculation):
        // 0.05 per 60 s, initial block 30 s, increment 6 s. Comparable because 30 is a multiple of 6 (MagnusBilling
        // rounds the whole duration up to the increment; here the seconds after the first block are).
        {
          id: 'magnus_voice',
          kind: 'usage',
          meter: 'seconds',
          model: 'time_rated',
          rates: [
            {
              schedule: 'always',
              steps: [
                { from: '0', unit_price: '0.05', per: '60', increment: '30' },
                { from: '30', unit_price: '0.05', per: '60', increment: '6' },
              ],
            },
          ],
        },
      ],
    },
  ],
}

type Quote = { amount: string; currency: string; lines: Array<{ description: string; quantity: string; amount: string; unit_price?: string; flat_fee?: string }> }

const base = ['--catalog', catalogFile, '--plan', 'published']
const price = (charge: string, ...rest: string[]) => ['price', ...base, '--charge', charge, ...rest]
const rate = (charge: string, start: string, seconds: string, ...rest: string[]) => ['rate', ...base, '--charge', charge, '--start', start, '--quantity', seconds, ...rest]

// Every command runs once, a few at a time, before the checks: each is a Node start-up (~0.4 s) and the
// machine has two cores. No child outlives beforeAll, so killing strays after each test harms nothing.
const commands = {
  stripeGraduated8: price('stripe_graduated', '--quantity', '8'),
  stripeVolume8: price('stripe_volume', '--quantity', '8'),
  stripePeakEvents: price('stripe_peak', '--events', '3,8,5'),
  lagoVolume: price('lago_volume', '--quantity', '65000'),
  lagoPackage: price('lago_package', '--quantity', '201'),
  zuploPerUnit: price('zuplo_per_unit', '--quantity', '100000'),
  lagoPercentage: price('lago_percentage', '--events', '1000,250'),
  cardFeeRate: rate('card_fee', '2026-10-05T12:00:00Z', '100'),
  lagoGraduatedPercentage: price('lago_graduated_percentage', '--events', '500,550,4000'),
  openmeter22: price('openmeter_graduated', '--quantity', '22'),
  cgrates85: rate('cgrates_voice', '2014-08-04T13:00:00Z', '85'),
  cgratesSplit: rate('cgrates_voice', '2026-10-05T18:59:00+02:00', '150', '--timezone', 'Europe/Berlin'),
  magnus45: rate('magnus_voice', '2026-10-05T09:00:00Z', '45'),
  bundle85: rate('bundle_voice', '2014-08-04T13:00:00Z', '85'),
  bundle20: rate('bundle_voice', '2014-08-04T13:00:00Z', '20'),
  // Exit 2.
  unknownPlan: ['price', '--catalog', catalogFile, '--plan', 'gold', '--charge', 'stripe_graduated', '--quantity', '1'],
  unknownChargeRate: rate('fonts', '2026-10-05T09:00:00Z', '1'),
  badQuantity: price('stripe_graduated', '--quantity', '12kB'),
  startWithoutOffset: rate('cgrates_voice', '2026-10-02T17:59:00', '120'),
  // A unique_count meter's values as the rater compares them: " u4" is not "u4", "-x" is a value, '' counts none.
  uniqueText: ['price', '--catalog', join(tmp.dir, 'uniq.json'), '--plan', 'p', '--charge', 'users', '--events', 'u1,u2,u3,u4, u4,-x,'],
  startImpossible: rate('cgrates_voice', '2026-02-30T10:00:00Z', '120'),
  negativeQuantity: price('stripe_graduated', '--quantity=-5'),
  timeRatedViaPrice: price('cgrates_voice', '--quantity', '60'),
  notJson: ['price', '--catalog', join(tmp.dir, 'not-json.json'), '--plan', 'published', '--charge', 'x', '--quantity', '1'],
  invalidCatalog: ['price', '--catalog', join(tmp.dir, 'invalid.json'), '--plan', 'published', '--charge', 'stripe_graduated', '--quantity', '1'],
} satisfies Record<string, string[]>

const results = {} as Record<keyof typeof commands, CliResult>

beforeAll(async () => {
  writeJson(catalogFile, catalog)
  writeFileSync(join(tmp.dir, 'not-json.json'), '{"version": "v1",\n "plans": [{"id": "published"},]}')
  writeJson(join(tmp.dir, 'uniq.json'), {
    version: 'u1', effective_from: '2026-01-01T00:00:00Z', currency: 'USD',
    meters: [{ id: 'users', metric: 'login', aggregation: 'unique_count', dimension: 'user' }],
    plans: [{ id: 'p', billing_period: 'month', charges: [{ id: 'users', kind: 'usage', meter: 'users', model: 'per_unit', unit_price: '4', free_units: '3' }] }],
  })
  const invalid = structuredClone(catalog) as unknown as Record<string, any>
  invalid.currency = 'usd'
  invalid.plans[0].charges[1].tiers[1].unit_price = 6.5
  invalid.plans[0].charges[1].tiers[2].up_to = '3'
  invalid.plans[0].charges[5].meter = 'nope'
  writeJson(join(tmp.dir, 'invalid.json'), invalid)
  const entries = Object.entries(commands) as Array<[keyof typeof commands, string[]]>
  const parallel = 4
  for (let i = 0; i < entries.length; i += parallel) {
    await Promise.all(entries.slice(i, i + parallel).map(async ([name, args]) => (results[name] = await rateflow(args))))
  }
}, 120_000)
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmp.cleanup())

function quote(name: keyof typeof commands): Quote {
  const r = results[name]
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
  return JSON.parse(r.stdout) as Quote
}

function refused(name: keyof typeof commands): string {
  const r = results[name]
  expect(r.stdout).toBe('')
  expect(r.code).toBe(2)
  return r.stderr
}

describe('rateflow price: JSON {amount, currency, lines} per published example', () => {
  it('graduated, Stripe: 8 fonts = 5 × 7 + 3 × 6.5 = 54.5, one line per tier reached', () => {
    expect(quote('stripeGraduated8')).toEqual({
      amount: '54.5',
      currency: 'USD',
      lines: [
        { description: 'tier 1 (0, 5]', quantity: '5', unit_price: '7', amount: '35' },
        { description: 'tier 2 (5, 10]', quantity: '3', unit_price: '6.5', amount: '19.5' },
      ],
    })
  })

  it('volume, Stripe: 8 fonts all at the 6–10 price = 8 × 6.5 = 52, one line', () => {
    expect(quote('stripeVolume8')).toEqual({
      amount: '52',
      currency: 'USD',
      lines: [{ description: 'tier 2 (5, 10]', quantity: '8', unit_price: '6.5', amount: '52' }],
    })
  })

  it('--events are aggregated by the charge meter: a max meter prices max(3, 8, 5) = 8 fonts = 54.5', () => {
    expect(quote('stripePeakEvents').amount).toBe('54.5')
  })

  it('volume, Lago: 65,000 calls = 65,000 × 0.0006 + 10 = 49 in the third tier', () => {
    expect(quote('lagoVolume')).toEqual({
      amount: '49',
      currency: 'USD',
      lines: [{ description: 'tier 3 (50000, 100000]', quantity: '65000', unit_price: '0.0006', flat_fee: '10', amount: '49' }],
    })
  })

  it('package, Lago: 201 units, 100 free, $5 per started 100 = 2 packages = 10', () => {
    expect(quote('lagoPackage')).toEqual({
      amount: '10',
      currency: 'USD',
      lines: [
        { description: 'free units', quantity: '100', amount: '0' },
        { description: 'packages of 100', quantity: '2', unit_price: '5', amount: '10' },
      ],
    })
  })

  it('per_unit, Zuplo: 100,000 calls × 0.001 = 100', () => {
    expect(quote('zuploPerUnit')).toEqual({
      amount: '100',
      currency: 'USD',
      lines: [{ description: 'per unit', quantity: '100000', unit_price: '0.001', amount: '100' }],
    })
  })

  it('percentage, Lago: 1.2 % + $0.10 on $1,000 and $250 = 12.10 + 3.10 = 15.2, one line per event', () => {
    const q = quote('lagoPercentage')
    expect(q.amount).toBe('15.2')
    expect(q.lines.map((l) => [l.quantity, l.amount])).toEqual([
      ['1000', '12.1'],
      ['250', '3.1'],
    ])
  })

  it('graduated_percentage, Lago: $500 + $550 + $4,000 = 5,050 → 1,000 × 1 % + 200 + 4,050 × 2 % + 300 = 591', () => {
    expect(quote('lagoGraduatedPercentage')).toEqual({
      amount: '591',
      currency: 'USD',
      lines: [
        { description: 'tier 1 (0, 1000]', quantity: '1000', unit_price: '0.01', flat_fee: '200', amount: '210' },
        { description: 'tier 2 (1000, 10000]', quantity: '4050', unit_price: '0.02', flat_fee: '300', amount: '381' },
      ],
    })
  })

  it('graduated, OpenMeter: 22 = flat 100 + flat 50 + 5 × 5 + 7 × 1 = 182', () => {
    expect(quote('openmeter22')).toEqual({
      amount: '182',
      currency: 'USD',
      lines: [
        { description: 'tier 1 (0, 5]', quantity: '5', unit_price: '0', flat_fee: '100', amount: '100' },
        { description: 'tier 2 (5, 10]', quantity: '5', flat_fee: '50', amount: '50' },
        { description: 'tier 3 (10, 15]', quantity: '5', unit_price: '5', amount: '25' },
        { description: 'tier 4 (15, ∞]', quantity: '7', unit_price: '1', amount: '7' },
      ],
    })
  })
})

describe('rateflow rate: one event, JSON with a line per step', () => {
  it('percentage event, Lago Stripe template: 2.9 % of 100 + 0.30 = 3.2', () => {
    expect(quote('cardFeeRate')).toMatchObject({ amount: '3.2', currency: 'USD', lines: [{ quantity: '100', amount: '3.2' }] })
  })

  it('time_rated, CGRateS RT_20CNT: 1m25s at peak = connect 0.4 + 60 s × 0.2/60 + 30 s × 0.1/60 = 0.65', () => {
    // CGRateS reports Usage 90 s (60 + one 30 s increment for the last 25 s), Cost 0.25 and ConnectFee 0.4;
    // "call cost (sum of ConnectFee and Cost fields)" = 0.65. 2014-08-04 13:00 UTC is a Monday, peak.
    expect(quote('cgrates85')).toEqual({
      amount: '0.65',
      currency: 'USD',
      lines: [
        { description: 'connect fee (peak)', quantity: '1', unit_price: '0.4', amount: '0.4' },
        { description: 'peak: 60 s from 0 s at 0.2 per 60 s in 60 s increments', quantity: '60', amount: '0.2' },
        { description: 'peak: 30 s from 60 s at 0.1 per 60 s in 30 s increments', quantity: '30', amount: '0.05' },
      ],
    })
  })

  it('time_rated split at a schedule boundary of the account time zone: connect fee once, steps session-relative', () => {
    // Monday 2026-10-05 18:59 in Berlin (CEST, 16:59 UTC), 150 s. Peak ends at 19:00 local after 60 s:
    //   connect fee of the first part's rate (peak)            0.4
    //   peak, step from 0 s: one 60 s increment × 0.2/60       0.2
    //   night from 60 s on: 90 s × 0.05/60 in 1 s increments  0.075
    // = 0.675 (4 decimals already: rounding up changes nothing). Rated in UTC the call would be peak throughout.
    expect(quote('cgratesSplit')).toEqual({
      amount: '0.675',
      currency: 'USD',
      lines: [
        { description: 'connect fee (peak)', quantity: '1', unit_price: '0.4', amount: '0.4' },
        { description: 'peak: 60 s from 0 s at 0.2 per 60 s in 60 s increments', quantity: '60', amount: '0.2' },
        { description: 'night: 90 s from 60 s at 0.05 per 60 s in 1 s increments', quantity: '90', amount: '0.075' },
      ],
    })
  })

  it('time_rated, MagnusBilling: 45 s with a 30 s first block and 6 s increments bills 48 s × 0.05/60 = 0.04', () => {
    const q = quote('magnus45')
    expect(q.amount).toBe('0.04')
    expect(q.lines.map((l) => [l.quantity, l.amount])).toEqual([
      ['30', '0.025'],
      ['18', '0.015'],
    ])
  })
})

describe('rateflow rate of a time_rated charge with free_units, minimum and maximum: the session as its period\'s only one', () => {
  it('85 s with 30 s free: the first 30 billed s free (connect 0.4 + 30 s × 0.2/60 + 30 s × 0.1/60 = 0.55), capped by the maximum at 0.5', () => {
    expect(quote('bundle85')).toEqual({
      amount: '0.5',
      currency: 'USD',
      lines: [
        { description: 'connect fee (peak)', quantity: '1', unit_price: '0.4', amount: '0.4' },
        { description: 'peak: 60 s from 0 s at 0.2 per 60 s in 60 s increments, 30 s of them free (free_units)', quantity: '30', amount: '0.1' },
        { description: 'peak: 30 s from 60 s at 0.1 per 60 s in 30 s increments', quantity: '30', amount: '0.05' },
        { description: 'maximum charge cap', quantity: '1', amount: '-0.05' },
      ],
    })
  })

  it('20 s inside the free 30 s: nothing, not even the connect fee', () => {
    expect(quote('bundle20')).toEqual({
      amount: '0',
      currency: 'USD',
      lines: [{ description: 'free_units: all 20 s of the session', quantity: '20', amount: '0' }],
    })
  })
})

describe('price on a unique_count meter', () => {
  it('counts the values as text, as the rater does: u1, u2, u3, u4, " u4", "-x" are 6 users, 3 above the free 3 at 4 = 12', () => {
    const r = results.uniqueText
    expect([r.code, r.stderr]).toEqual([0, ''])
    expect(JSON.parse(r.stdout)).toMatchObject({ amount: '12' })
  })
})

describe('price and rate refuse bad input with exit 2 and say what is wrong', () => {
  it('an unknown plan, naming the plans there are', () => {
    expect(refused('unknownPlan')).toMatch(/no plan "gold" in catalog published-examples \(plans: published\)/)
  })

  it('an unknown charge, naming the charges of the plan', () => {
    expect(refused('unknownChargeRate')).toMatch(/no charge "fonts" in plan "published" \(charges: platform, stripe_graduated, /)
  })

  it('a quantity that is not a decimal, or is negative', () => {
    expect(refused('badQuantity')).toMatch(/quantity: not a plain decimal string: "12kB"/)
    expect(refused('negativeQuantity')).toMatch(/--quantity "-5" is negative/)
  })

  it("a start that is no ISO-8601 time with offset (it was read in the machine's zone, and 2026-02-30 as 2 March)", () => {
    expect(refused('startWithoutOffset')).toMatch(/start "2026-10-02T17:59:00" is not an ISO-8601 time with offset, e\.g\. 2026-10-02T17:59:00Z/)
    expect(refused('startImpossible')).toMatch(/start "2026-02-30T10:00:00Z" is not an ISO-8601 time with offset/)
  })

  it('a charge the command does not price, pointing to the command that does', () => {
    expect(refused('timeRatedViaPrice')).toMatch(/charge "cgrates_voice" is time_rated: .*rateflow rate --start TIME --quantity SECONDS/)
  })

  it('a catalog file that is not JSON, or is invalid (every problem with its JSON path)', () => {
    expect(refused('notJson')).toMatch(/not-json\.json: not valid JSON at line 2, column 32: Unexpected token '\]'/)
    const invalid = refused('invalidCatalog')
    expect(invalid).toMatch(/catalog: 5 problems/)
    expect(invalid).toMatch(/\$\.currency: must be three upper-case letters/)
    expect(invalid).toMatch(/\$\.plans\[0\]\.charges\[1\]\.tiers\[1\]\.unit_price: must be a decimal string such as "6.5", not a JSON number/)
    expect(invalid).toMatch(/\$\.plans\[0\]\.charges\[1\]\.tiers\[2\]\.up_to: tiers must ascend/)
    expect(invalid).toMatch(/\$\.plans\[0\]\.charges\[1\]\.tiers\[2\]\.up_to: the last tier must be unbounded/)
    expect(invalid).toMatch(/\$\.plans\[0\]\.charges\[5\]\.meter: no meter with id "nope"/)
  })
})
