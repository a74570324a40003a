import { describe, expect, it } from 'vitest'
import { ValidationError } from '../common/errors.js'
import type { AccountsDocument, Catalog } from './types.js'
import { timeRatedGaps, validateCatalog, validateCatalogVersionOrder, versionWarnings } from './validate-catalog.js'

/** The CONTRACT §3 example, completed with one charge of every kind and model. */
function goodCatalog(): Record<string, any> {
  return {
    version: '2026-11-a',
    effective_from: '2026-01-01T00:00:00Z',
    currency: 'USD',
    meters: [
      { id: 'egress_gb', metric: 'bytes_out', aggregation: 'sum', scale: '0.000000001', filter: { direction: 'out' }, group_by: ['region'] },
      { id: 'seats', metric: 'seats', aggregation: 'time_weighted_avg' },
      { id: 'users', metric: 'login', aggregation: 'unique_count', dimension: 'user' },
      { id: 'txn', metric: 'txn_amount', aggregation: 'sum' },
      { id: 'calls', metric: 'session_seconds', aggregation: 'sum' },
    ],
    schedules: [
      { id: 'day', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '18:00' },
      { id: 'evening', weekdays: [1, 2, 3, 4, 5], from: '18:00', to: '24:00' },
      { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
    ],
    plans: [
      {
        id: 'sase-pro',
        billing_period: 'month',
        minimum_commitment: '500',
        charges: [
          { id: 'base', kind: 'recurring', amount: '99', billing: 'in_advance', proration: 'daily', revrec: { pattern: 'ratable' }, ssp: '120' },
          { id: 'appliance', kind: 'one_time', amount: '1200', revrec: { pattern: 'point_in_time', trigger: 'delivery' } },
          { id: 'egress', kind: 'usage', meter: 'egress_gb', model: 'per_unit', unit_price: '0.05', free_units: '100', minimum: '1', maximum: '1000' },
          {
            id: 'seats',
            kind: 'usage',
            meter: 'seats',
            model: 'graduated',
            tiers: [
              { up_to: '5', unit_price: '7', flat_fee: '10' },
              { up_to: '10', unit_price: '6.5' },
              { up_to: null, unit_price: '6' },
            ],
          },
          { id: 'users-vol', kind: 'usage', meter: 'users', model: 'volume', tiers: [{ up_to: '10', unit_price: '2' }, { up_to: null, flat_fee: '15' }] },
          { id: 'pkg', kind: 'usage', meter: 'egress_gb', model: 'package', package_size: '100', package_price: '5', free_units: '50' },
          { id: 'card', kind: 'usage', meter: 'txn', model: 'percentage', rate: '1.2', fixed_fee_per_event: '0.3', per_event_min: '0.5', per_event_max: '5', free_units: '1000' },
          { id: 'gp', kind: 'usage', meter: 'txn', model: 'graduated_percentage', tiers: [{ up_to: '1000', rate: '2', flat_fee: '1' }, { up_to: null, rate: '1' }] },
          {
            id: 'voice',
            kind: 'usage',
            meter: 'calls',
            model: 'time_rated',
            rates: [
              {
                schedule: 'day',
                connect_fee: '1',
                steps: [
                  { from: '0', unit_price: '1', per: '1', increment: '60' },
                  { from: '60', unit_price: '1', per: '1', increment: '1' },
                ],
              },
              { schedule: 'evening', steps: [{ from: '0', unit_price: '0.5', per: '60', increment: '1' }] },
              { schedule: 'weekend', steps: [{ from: '0', unit_price: '0', per: '1', increment: '1' }] },
            ],
            max_cost_per_event: '10',
            max_cost_strategy: 'free',
            rounding: { decimals: 2, mode: 'up' },
          },
        ],
      },
    ],
  }
}

function problemsOf(doc: unknown): { path: string; message: string }[] {
  try {
    validateCatalog(doc)
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError)
    return [...(e as ValidationError).problems]
  }
  return []
}

function paths(doc: unknown): string[] {
  return problemsOf(doc).map((p) => p.path)
}

describe('validateCatalog', () => {
  it('accepts the complete example and returns it typed', () => {
    const doc = goodCatalog()
    const cat: Catalog = validateCatalog(doc)
    expect(cat.plans[0]?.charges).toHaveLength(9)
  })

  it('takes an effective_from of a year below 100 as written, its leap days included (Date.UTC read it as 19xx)', () => {
    for (const t of ['0026-01-01T00:00:00Z', '0000-02-29T00:00:00Z']) {
      const doc = goodCatalog()
      doc.effective_from = t
      expect(paths(doc)).toEqual([])
    }
  })

  it('rejects a non-object document at $', () => {
    expect(paths(42)).toEqual(['$'])
    expect(paths([])).toEqual(['$'])
  })

  it('lists every problem, not the first one, each with its JSON path', () => {
    const doc = goodCatalog()
    doc.currency = 'usd'
    doc.effective_from = '2026-01-01T00:00:00' // no offset
    doc.meters[0].aggregation = 'avg'
    doc.plans[0].charges[3].tiers[2].up_to = '4'
    doc.plans[0].charges[2].unit_price = 0.05
    const ps = paths(doc)
    expect(ps).toEqual(
      expect.arrayContaining([
        '$.currency',
        '$.effective_from',
        '$.meters[0].aggregation',
        '$.plans[0].charges[3].tiers[2].up_to',
        '$.plans[0].charges[2].unit_price',
      ]),
    )
    expect(ps.length).toBeGreaterThanOrEqual(5)
  })

  it('ValidationError message names every path and the error code is BAD_INPUT', () => {
    const doc = goodCatalog()
    doc.currency = 'EURO'
    doc.version = ''
    try {
      validateCatalog(doc)
      expect.unreachable()
    } catch (e) {
      expect((e as ValidationError).code).toBe('BAD_INPUT')
      expect((e as Error).message).toContain('$.currency')
      expect((e as Error).message).toContain('$.version')
    }
  })

  const cases: { name: string; edit: (d: any) => void; path: string; message?: RegExp }[] = [
    { name: 'unknown top-level field', edit: (d) => (d.colour = 'red'), path: '$.colour', message: /unknown field/ },
    { name: 'unknown charge field (misspelt free_units)', edit: (d) => (d.plans[0].charges[2].free_unit = '1'), path: '$.plans[0].charges[2].free_unit' },
    { name: 'field of another model', edit: (d) => (d.plans[0].charges[2].tiers = []), path: '$.plans[0].charges[2].tiers' },
    { name: 'unknown tier field', edit: (d) => (d.plans[0].charges[3].tiers[0].price = '1'), path: '$.plans[0].charges[3].tiers[0].price' },
    { name: 'missing version', edit: (d) => delete d.version, path: '$.version', message: /required/ },
    { name: 'missing plans', edit: (d) => delete d.plans, path: '$.plans' },
    { name: 'impossible date', edit: (d) => (d.effective_from = '2026-02-30T00:00:00Z'), path: '$.effective_from' },
    { name: 'impossible date of a year below 100', edit: (d) => (d.effective_from = '0025-02-29T00:00:00Z'), path: '$.effective_from' },
    { name: 'offset form accepted? no: bad offset', edit: (d) => (d.effective_from = '2026-01-01T00:00:00+25:00'), path: '$.effective_from' },
    { name: 'an offset without its colon, named', edit: (d) => (d.effective_from = '2020-01-01T05:30:00+0530'), path: '$.effective_from', message: /the offset must be Z or ±HH:MM, got "\+0530"/ },
    { name: 'an hours-only offset, named', edit: (d) => (d.effective_from = '2020-01-01T05:30:00-05'), path: '$.effective_from', message: /the offset must be Z or ±HH:MM, got "-05"/ },
    { name: 'a space for the T and microseconds, both named', edit: (d) => (d.effective_from = '2020-01-01 05:30:00.123456Z'), path: '$.effective_from', message: /a "T" must join the date and the time; at most 3 fraction digits \(milliseconds\), got 6/ },
    { name: 'decimal as JSON number', edit: (d) => (d.plans[0].charges[0].amount = 99), path: '$.plans[0].charges[0].amount', message: /JSON number/ },
    { name: 'decimal with exponent', edit: (d) => (d.plans[0].charges[0].amount = '1e3'), path: '$.plans[0].charges[0].amount' },
    { name: 'negative price', edit: (d) => (d.plans[0].charges[2].unit_price = '-1'), path: '$.plans[0].charges[2].unit_price', message: /negative/ },
    { name: '19 fractional digits', edit: (d) => (d.plans[0].charges[2].unit_price = '0.1234567890123456789'), path: '$.plans[0].charges[2].unit_price', message: /18/ },
    { name: 'zero scale', edit: (d) => (d.meters[0].scale = '0'), path: '$.meters[0].scale' },
    { name: 'duplicate meter id', edit: (d) => d.meters.push({ id: 'seats', metric: 'x', aggregation: 'sum' }), path: '$.meters[5].id', message: /duplicate/ },
    { name: 'duplicate plan id', edit: (d) => d.plans.push({ ...d.plans[0] }), path: '$.plans[1].id' },
    { name: 'duplicate charge id in plan', edit: (d) => d.plans[0].charges.push({ id: 'base', kind: 'one_time', amount: '1' }), path: '$.plans[0].charges[9].id' },
    { name: 'duplicate schedule id', edit: (d) => d.schedules.push({ id: 'day', weekdays: [1], from: '00:00', to: '01:00' }), path: '$.schedules[3].id' },
    { name: 'usage meter missing', edit: (d) => (d.plans[0].charges[2].meter = 'nope'), path: '$.plans[0].charges[2].meter', message: /no meter/ },
    { name: 'tier up_to not ascending', edit: (d) => (d.plans[0].charges[3].tiers[1].up_to = '5'), path: '$.plans[0].charges[3].tiers[1].up_to', message: /ascend/ },
    { name: 'null up_to before the last', edit: (d) => (d.plans[0].charges[3].tiers[0].up_to = null), path: '$.plans[0].charges[3].tiers[0].up_to', message: /only the last/ },
    { name: 'last tier bounded', edit: (d) => (d.plans[0].charges[3].tiers[2].up_to = '100'), path: '$.plans[0].charges[3].tiers[2].up_to', message: /unbounded/ },
    { name: 'tier without price or fee', edit: (d) => (d.plans[0].charges[3].tiers[1] = { up_to: '10' }), path: '$.plans[0].charges[3].tiers[1]' },
    { name: 'graduated_percentage tier with unit_price', edit: (d) => (d.plans[0].charges[7].tiers[0].unit_price = '1'), path: '$.plans[0].charges[7].tiers[0].unit_price' },
    { name: 'empty tiers', edit: (d) => (d.plans[0].charges[3].tiers = []), path: '$.plans[0].charges[3].tiers' },
    { name: 'weekday 0', edit: (d) => (d.schedules[0].weekdays = [0, 1]), path: '$.schedules[0].weekdays[0]' },
    { name: 'weekday 8', edit: (d) => (d.schedules[2].weekdays = [6, 8]), path: '$.schedules[2].weekdays[1]' },
    { name: 'from 24:00', edit: (d) => (d.schedules[1].from = '24:00'), path: '$.schedules[1].from' },
    { name: 'from after to', edit: (d) => (d.schedules[0].to = '00:00'), path: '$.schedules[0].to' },
    { name: 'bad HH:MM', edit: (d) => (d.schedules[0].to = '18:60'), path: '$.schedules[0].to' },
    { name: 'rate references missing schedule', edit: (d) => (d.plans[0].charges[8].rates[1].schedule = 'night'), path: '$.plans[0].charges[8].rates[1].schedule', message: /no schedule/ },
    { name: 'first step not at 0', edit: (d) => (d.plans[0].charges[8].rates[0].steps[0].from = '1'), path: '$.plans[0].charges[8].rates[0].steps[0].from' },
    { name: 'steps not ascending', edit: (d) => (d.plans[0].charges[8].rates[0].steps[1].from = '0'), path: '$.plans[0].charges[8].rates[0].steps[1].from' },
    { name: 'increment 0', edit: (d) => (d.plans[0].charges[8].rates[0].steps[0].increment = '0'), path: '$.plans[0].charges[8].rates[0].steps[0].increment', message: /greater than 0/ },
    { name: 'per 0', edit: (d) => (d.plans[0].charges[8].rates[0].steps[1].per = '0'), path: '$.plans[0].charges[8].rates[0].steps[1].per' },
    { name: 'rounding decimals 10', edit: (d) => (d.plans[0].charges[8].rounding.decimals = 10), path: '$.plans[0].charges[8].rounding.decimals' },
    { name: 'rounding decimals 1.5', edit: (d) => (d.plans[0].charges[8].rounding.decimals = 1.5), path: '$.plans[0].charges[8].rounding.decimals' },
    { name: 'rounding mode ceiling', edit: (d) => (d.plans[0].charges[8].rounding.mode = 'ceiling'), path: '$.plans[0].charges[8].rounding.mode' },
    { name: 'max_cost_strategy other than free', edit: (d) => (d.plans[0].charges[8].max_cost_strategy = 'cap'), path: '$.plans[0].charges[8].max_cost_strategy' },
    { name: 'time_rated minimum above maximum', edit: (d) => Object.assign(d.plans[0].charges[8], { minimum: '5', maximum: '1' }), path: '$.plans[0].charges[8].minimum' },
    { name: 'time_rated free_units negative', edit: (d) => (d.plans[0].charges[8].free_units = '-60'), path: '$.plans[0].charges[8].free_units' },
    { name: 'overlapping schedules in one charge', edit: (d) => (d.schedules[1].from = '17:00'), path: '$.plans[0].charges[8].rates[1].schedule', message: /overlaps/ },
    { name: 'same schedule twice in one charge', edit: (d) => (d.plans[0].charges[8].rates[2].schedule = 'day'), path: '$.plans[0].charges[8].rates[2].schedule' },
    { name: 'recurring billing enum', edit: (d) => (d.plans[0].charges[0].billing = 'monthly'), path: '$.plans[0].charges[0].billing' },
    { name: 'recurring proration enum', edit: (d) => (d.plans[0].charges[0].proration = 'hourly'), path: '$.plans[0].charges[0].proration' },
    { name: 'recurring proration missing', edit: (d) => delete d.plans[0].charges[0].proration, path: '$.plans[0].charges[0].proration' },
    { name: 'revrec pattern enum', edit: (d) => (d.plans[0].charges[0].revrec.pattern = 'monthly'), path: '$.plans[0].charges[0].revrec.pattern' },
    { name: 'revrec trigger enum', edit: (d) => (d.plans[0].charges[1].revrec.trigger = 'shipment'), path: '$.plans[0].charges[1].revrec.trigger' },
    { name: 'minimum above maximum', edit: (d) => (d.plans[0].charges[2].minimum = '2000'), path: '$.plans[0].charges[2].minimum' },
    { name: 'per_event_min above per_event_max', edit: (d) => (d.plans[0].charges[6].per_event_min = '6'), path: '$.plans[0].charges[6].per_event_min' },
    { name: 'unique_count without dimension', edit: (d) => delete d.meters[2].dimension, path: '$.meters[2].dimension', message: /required/ },
    { name: 'dimension on a sum meter', edit: (d) => (d.meters[0].dimension = 'x'), path: '$.meters[0].dimension' },
    { name: 'billing_period week', edit: (d) => (d.plans[0].billing_period = 'week'), path: '$.plans[0].billing_period' },
    { name: 'package size 0', edit: (d) => (d.plans[0].charges[5].package_size = '0'), path: '$.plans[0].charges[5].package_size' },
    { name: 'percentage on a non-sum meter', edit: (d) => (d.plans[0].charges[6].meter = 'seats'), path: '$.plans[0].charges[6].meter' },
    { name: 'model unknown', edit: (d) => (d.plans[0].charges[2].model = 'flat'), path: '$.plans[0].charges[2].model' },
    { name: 'filter value not a string', edit: (d) => (d.meters[0].filter.direction = 1), path: '$.meters[0].filter.direction' },
    { name: 'group_by duplicate', edit: (d) => (d.meters[0].group_by = ['region', 'region']), path: '$.meters[0].group_by[1]' },
    // A version id is its file's name: one the file system cannot hold failed the apply with exit 1.
    { name: 'a version id too long for a file name', edit: (d) => (d.version = '価格表二〇二六年十一月版改訂第二版東京大阪名古屋福岡札幌仙台'), path: '$.version', message: /too long: at most 240 characters once percent-encoded/ },
    { name: 'a version id with a lone surrogate', edit: (d) => (d.version = 'v\ud800'), path: '$.version', message: /lone UTF-16 surrogate/ },
    // The pricer takes no decimal over 80 characters, the store no amount over 29 integer digits.
    { name: 'a price of 30 integer digits', edit: (d) => (d.plans[0].charges[2].unit_price = '1' + '0'.repeat(29)), path: '$.plans[0].charges[2].unit_price', message: /at most 29 integer digits/ },
    { name: 'a tier bound of 91 characters', edit: (d) => (d.plans[0].charges[3].tiers[0].up_to = '1' + '0'.repeat(90)), path: '$.plans[0].charges[3].tiers[0].up_to', message: /at most 29 integer digits/ },
    // Times are compared in milliseconds everywhere: 10:00:00.0001 took an event of 10:00:00.000 as on or after it.
    { name: 'effective_from finer than a millisecond', edit: (d) => (d.effective_from = '2026-01-01T00:00:00.0001Z'), path: '$.effective_from' },
  ]
  for (const tc of cases) {
    it(`reports ${tc.name} at ${tc.path}`, () => {
      const doc = goodCatalog()
      tc.edit(doc)
      const ps = problemsOf(doc)
      const hit = ps.find((p) => p.path === tc.path)
      expect(hit, JSON.stringify(ps)).toBeDefined()
      if (tc.message) expect(hit!.message).toMatch(tc.message)
    })
  }

  it('a price of 29 integer digits with leading zeros is fine; an effective_from of milliseconds is', () => {
    const doc = goodCatalog()
    doc.plans[0].charges[2].unit_price = '000' + '9'.repeat(29) + '.5'
    doc.effective_from = '2026-01-01T00:00:00.123Z'
    expect(problemsOf(doc)).toEqual([])
  })

  it('a rate naming a schedule with problems of its own is not told the schedule is missing', () => {
    const doc = goodCatalog()
    doc.schedules[1].to = '17:00' // before its from: the schedule's own problem
    const ps = problemsOf(doc)
    expect(ps.map((p) => p.path)).toContain('$.schedules[1].to')
    expect(ps.filter((p) => /no schedule with id/.test(p.message))).toEqual([])
  })

  it('tiers, rates and steps are required, non-empty arrays: each problem named at its path', () => {
    const doc = goodCatalog()
    const byId = (id: string) => (doc.plans[0].charges as Record<string, any>[]).find((ch) => ch.id === id)!
    delete byId('seats').tiers
    byId('users-vol').tiers = []
    byId('gp').tiers = 'all'
    byId('voice').rates[1].steps = []
    const at = (i: number) => `$.plans[0].charges[${i}]`
    const index = (id: string) => (doc.plans[0].charges as Record<string, any>[]).findIndex((ch) => ch.id === id)
    expect(problemsOf(doc)).toEqual([
      { path: `${at(index('seats'))}.tiers`, message: 'required (a non-empty array of tiers)' },
      { path: `${at(index('users-vol'))}.tiers`, message: 'must have at least one tier' },
      { path: `${at(index('gp'))}.tiers`, message: 'must be an array, got "all"' },
      { path: `${at(index('voice'))}.rates[1].steps`, message: 'must have at least one step' },
    ])
    const noRates = goodCatalog()
    delete (noRates.plans[0].charges as Record<string, any>[]).find((ch) => ch.id === 'voice')!.rates
    expect(problemsOf(noRates)).toEqual([{ path: `${at(index('voice'))}.rates`, message: 'required (a non-empty array of rates)' }])
  })

  it('accepts an offset other than Z and a first tier up_to "0" (a base fee)', () => {
    const doc = goodCatalog()
    doc.effective_from = '2026-01-01T00:00:00.000+01:00'
    doc.plans[0].charges[3].tiers.unshift({ up_to: '0', flat_fee: '20' })
    expect(paths(doc)).toEqual([])
  })
})

describe('validateCatalogVersionOrder', () => {
  const v1 = validateCatalog(goodCatalog())
  const v2 = validateCatalog({ ...goodCatalog(), version: '2026-12-a', effective_from: '2026-12-01T00:00:00Z' })

  it('a first version is the latest', () => {
    expect(validateCatalogVersionOrder([], v1)).toBe('latest')
  })
  it('a later version is the latest', () => {
    expect(validateCatalogVersionOrder([v1], v2)).toBe('latest')
  })
  it('a version before every stored one is the earliest', () => {
    const early = validateCatalog({ ...goodCatalog(), version: 'early', effective_from: '2026-01-01T00:00:00.000+01:00' })
    expect(validateCatalogVersionOrder([v2, v1], early)).toBe('earliest')
  })
  it('re-applying identical content (any key order) is unchanged', () => {
    const reordered = JSON.parse(JSON.stringify(v1, Object.keys(v1).reverse())) as Catalog
    const copy = { ...reordered, meters: v1.meters, schedules: v1.schedules, plans: v1.plans }
    expect(validateCatalogVersionOrder([v1, v2], copy)).toBe('unchanged')
  })
  it('same version id with different content is a problem at $.version', () => {
    const changed = validateCatalog({ ...goodCatalog(), currency: 'EUR' })
    expect(() => validateCatalogVersionOrder([v1], changed)).toThrow(/already stored with different content/)
  })
  it('a new version at or between stored effective_froms is a problem at $.effective_from', () => {
    for (const at of ['2026-12-01T00:00:00Z', '2026-11-15T00:00:00Z', v1.effective_from]) {
      const back = validateCatalog({ ...goodCatalog(), version: 'old', effective_from: at })
      try {
        validateCatalogVersionOrder([v1, v2], back)
        expect.unreachable()
      } catch (e) {
        expect((e as ValidationError).problems.map((p) => p.path)).toEqual(['$.effective_from'])
      }
    }
  })
})

describe('versionWarnings', () => {
  const v = (version: string, from: string, plans: Array<[string, 'month' | 'quarter' | 'year']>): Catalog =>
    validateCatalog({ ...goodCatalog(), version, effective_from: from, plans: plans.map(([id, billing_period]) => ({ ...goodCatalog().plans[0], id, billing_period })) })
  const subs = (list: Array<{ id: string; plan: string; start: string; end?: string }>): AccountsDocument => ({
    customers: [{ id: 'c', name: 'C', accounts: [{ id: 'a', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: list.map((x) => ({ ...x, status: 'active' as const })) }] }],
  })
  const v1 = v('v1', '2026-01-01T00:00:00Z', [['p', 'month'], ['q', 'month']])
  const v3 = v('v3', '2026-12-01T00:00:00Z', [['p', 'month'], ['q', 'month']])

  it('names a plan the new version lacks only for subscriptions alive while it is in force', () => {
    const next = v('v2', '2026-06-01T00:00:00Z', [['p', 'month']])
    const accounts = subs([
      { id: 'ended', plan: 'q', start: '2026-01-01T00:00:00Z', end: '2026-06-01T00:00:00Z' },
      { id: 'later', plan: 'q', start: '2026-12-01T00:00:00Z' },
      { id: 'alive', plan: 'q', start: '2026-01-01T00:00:00Z' },
      { id: 'fine', plan: 'p', start: '2026-01-01T00:00:00Z' },
    ])
    const w = versionWarnings([v1, v3], next, accounts)
    expect(w.map((x) => x.path)).toEqual(['$.plans'])
    expect(w[0]!.message).toContain('plan "q" is not in version "v2", and subscription "alive" (account "a") is on it: their usage from 2026-06-01T00:00:00Z to 2026-12-01T00:00:00Z is held')
  })

  it('compares billing periods with the version before, or for an earliest version with the one after', () => {
    const later = v('v4', '2027-01-01T00:00:00Z', [['p', 'quarter'], ['q', 'month']])
    const w = versionWarnings([v1, v3], later, subs([]))
    expect(w.map((x) => x.path)).toEqual(['$.plans[0].billing_period'])
    expect(w[0]!.message).toContain('plan "p" is billed by month in version "v3" and by quarter in version "v4" from 2027-01-01T00:00:00Z')
    const earliest = v('v0', '2025-01-01T00:00:00Z', [['p', 'month'], ['q', 'year']])
    expect(versionWarnings([v1, v3], earliest, subs([]))[0]!.message).toContain('plan "q" is billed by year in version "v0" and by month in version "v1" from 2026-01-01T00:00:00Z')
    expect(versionWarnings([v1], v3, subs([]))).toEqual([])
  })
})

describe('timeRatedGaps', () => {
  it('names each stretch of the week a time_rated charge has no rate for; none when the week is covered', () => {
    expect(timeRatedGaps(validateCatalog(goodCatalog()))).toEqual([])
    // A session starting in such a stretch is that event's reject ("no rate's schedule covers …"), found as usage comes.
    const doc = goodCatalog()
    doc.schedules[0].to = '17:00'
    doc.schedules[1].from = '18:00'
    expect(timeRatedGaps(validateCatalog(doc))).toEqual([
      {
        path: '$.plans[0].charges[8].rates',
        message:
          'no rate covers weekday 1 17:00–18:00, weekday 2 17:00–18:00, weekday 3 17:00–18:00, weekday 4 17:00–18:00, weekday 5 17:00–18:00 (in the account\'s time zone): a session starting then cannot be priced and is rejected; a rate with unit_price "0" makes a time free',
      },
    ])
  })
})
