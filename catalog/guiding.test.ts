import { describe, expect, it } from 'vitest'
import { sampleCatalog } from '../bench/sample-data.js'
import { stageBatch } from '../rating-core/stage.js'
import { GuidingIndex } from './guiding.js'
import type { AccountsDocument, Subscription } from './types.js'

const sub = (id: string, devices: Subscription['devices'] = [], extra: Partial<Subscription> = {}): Subscription => ({
  id,
  plan: 'sase-pro',
  start: '2026-10-01T00:00:00Z',
  status: 'active',
  devices,
  ...extra,
})
const accounts: AccountsDocument = {
  customers: [
    {
      id: 'c-1',
      name: 'One',
      accounts: [
        {
          id: 'a-1',
          currency: 'USD',
          timezone: 'UTC',
          bill_cycle_day: 1,
          subscriptions: [
            // fw-1 moves from s-1 to s-2 on Oct 15 (from inclusive, to exclusive).
            sub('s-1', [{ device_id: 'fw-1', from: '2026-10-01T00:00:00Z', to: '2026-10-15T00:00:00Z' }]),
            sub('s-2', [{ device_id: 'fw-1', from: '2026-10-15T00:00:00Z', to: null }]),
          ],
        },
        { id: 'a-2', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [sub('s-3', [{ device_id: 'fw-3', from: '2026-10-01T00:00:00Z', to: null }])] },
        { id: 'a-3', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [sub('s-4', [], { status: 'dormant' })] },
      ],
    },
  ],
}
const index = new GuidingIndex([sampleCatalog()], accounts)
const at = (iso: string) => Date.parse(iso)

describe('GuidingIndex.guide', () => {
  it('follows device bindings effective at event time: from inclusive, to exclusive', () => {
    const before = index.guide({ device_id: 'fw-1', metric: 'bytes_out' }, at('2026-10-14T23:59:59.999Z'))
    const after = index.guide({ device_id: 'fw-1', metric: 'bytes_out' }, at('2026-10-15T00:00:00Z'))
    expect(before.kind === 'owner' && before.owner.subscription.id).toBe('s-1')
    expect(after.kind === 'owner' && after.owner.subscription.id).toBe('s-2')
  })

  it('rejects an event whose device belongs to another account than the one it names', () => {
    expect(index.guide({ device_id: 'fw-3', account_id: 'a-1', metric: 'bytes_out' }, at('2026-10-20T00:00:00Z'))).toEqual({
      kind: 'reject',
      reason: 'event names account "a-1" but its device belongs to account "a-2"',
    })
  })

  it('rejects a subscription_id that contradicts the device binding', () => {
    const g = index.guide({ device_id: 'fw-3', subscription_id: 's-1', metric: 'bytes_out' }, at('2026-10-05T00:00:00Z'))
    expect(g).toEqual({ kind: 'reject', reason: 'device "fw-3" is bound to subscription "s-3", not "s-1"' })
  })

  it('rejects an account-only event when several subscriptions meter the metric', () => {
    const g = index.guide({ account_id: 'a-1', metric: 'bytes_out' }, at('2026-10-20T00:00:00Z'))
    expect(g.kind).toBe('reject')
    expect(g.kind === 'reject' && g.reason).toMatch(/account "a-1" has 2 subscriptions metering "bytes_out" .*\(s-1, s-2\): send subscription_id/)
  })

  it('guides an account-only event by its dimensions when the meters of its subscriptions filter them apart', () => {
    const catalog = {
      version: 'dir',
      effective_from: '2026-01-01T00:00:00Z',
      currency: 'USD',
      meters: [
        { id: 'out', metric: 'bytes', aggregation: 'sum' as const, filter: { direction: 'out' } },
        { id: 'in', metric: 'bytes', aggregation: 'sum' as const, filter: { direction: 'in' } },
      ],
      plans: ['out', 'in'].map((d) => ({ id: `p-${d}`, billing_period: 'month' as const, charges: [{ id: d, kind: 'usage' as const, meter: d, model: 'per_unit' as const, unit_price: '1' }] })),
    }
    const doc: AccountsDocument = {
      customers: [{ id: 'c', name: 'C', accounts: [{ id: 'a', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [sub('s-out', [], { plan: 'p-out' }), sub('s-in', [], { plan: 'p-in' })] }] }],
    }
    const g = new GuidingIndex([catalog], doc)
    const owner = (dimensions?: Record<string, string>) => {
      const r = g.guide({ account_id: 'a', metric: 'bytes', dimensions }, at('2026-10-05T00:00:00Z'))
      return r.kind === 'owner' ? r.owner.subscription.id : r.reason
    }
    expect(owner({ direction: 'out' })).toBe('s-out')
    expect(owner({ direction: 'in' })).toBe('s-in')
    // As staging guides a record: its dimensions go with it, and the charge it feeds is the subscription's.
    const staged = stageBatch(
      { id: 'b', records: [{ event_id: 'x', source: 'csv:t', event_time: '2026-10-05T00:00:00Z', account_id: 'a', metric: 'bytes', quantity: '7', dimensions: { direction: 'in' } }], rejects: [] },
      g,
      at('2026-10-06T00:00:00Z'),
    )
    expect(staged.records.map((r) => [r.rejectReason, r.charges.map((c) => c.totalsKey.split('\u0000').slice(0, 3))])).toEqual([[undefined, [['s-in', 'p-in', 'in']]]])
    // Neither filter takes it: as ambiguous as before, naming both.
    expect(owner()).toMatch(/account "a" has 2 subscriptions metering "bytes" at .* \(s-out, s-in\): send subscription_id/)
    expect(owner({ direction: 'up' })).toMatch(/\(s-out, s-in\): send subscription_id/)
  })

  it('guides an account-only event to the active subscription, past dormant ones; holds it when all are dormant', () => {
    const doc: AccountsDocument = {
      customers: [
        {
          id: 'c-9',
          name: 'Nine',
          accounts: [
            {
              id: 'a-9',
              currency: 'USD',
              timezone: 'UTC',
              bill_cycle_day: 1,
              subscriptions: [sub('s-act'), sub('s-dor', [], { status: 'dormant' }), sub('s-dor2', [], { status: 'dormant' })],
            },
            { id: 'a-8', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [sub('s-d1', [], { status: 'dormant' }), sub('s-d2', [], { status: 'dormant' })] },
          ],
        },
      ],
    }
    const g = new GuidingIndex([sampleCatalog()], doc)
    const owned = g.guide({ account_id: 'a-9', metric: 'bytes_out' }, at('2026-10-20T00:00:00Z'))
    expect(owned.kind === 'owner' && owned.owner.subscription.id).toBe('s-act')
    expect(g.guide({ account_id: 'a-8', metric: 'bytes_out' }, at('2026-10-20T00:00:00Z'))).toEqual({
      kind: 'suspend',
      reason: 'account "a-8" has only dormant subscriptions metering "bytes_out" at 2026-10-20T00:00:00.000Z (s-d1, s-d2): held until one is activated',
    })
  })

  it('holds usage of an account billed in another currency than the catalog in force prices in', () => {
    const doc: AccountsDocument = {
      customers: [
        {
          id: 'c-7',
          name: 'Seven',
          accounts: [{ id: 'a-eur', currency: 'EUR', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [sub('s-eur', [{ device_id: 'fw-e', from: '2026-10-01T00:00:00Z', to: null }])] }],
        },
      ],
    }
    const usd = sampleCatalog()
    const g = new GuidingIndex([usd], doc)
    for (let i = 0; i < 2; i++) {
      expect(g.guide({ device_id: 'fw-e', metric: 'bytes_out' }, at('2026-10-20T00:00:00Z'))).toEqual({
        kind: 'suspend',
        reason: `account "a-eur" is billed in EUR but catalog version "${usd.version}" prices in ${usd.currency}`,
      })
    }
    const eur = new GuidingIndex([{ ...usd, currency: 'EUR' }], doc).guide({ device_id: 'fw-e', metric: 'bytes_out' }, at('2026-10-20T00:00:00Z'))
    expect(eur.kind === 'owner' && eur.owner.account.id).toBe('a-eur')
  })

  it('suspends what guiding data may own later: unbound device, unknown account or subscription, dormant, before start, no catalog', () => {
    const reason = (ids: Parameters<GuidingIndex['guide']>[0], iso = '2026-10-20T00:00:00Z') => {
      const g = index.guide(ids, at(iso))
      return g.kind === 'suspend' ? g.reason : `not suspended: ${JSON.stringify(g)}`
    }
    expect(reason({ device_id: 'fw-9', metric: 'bytes_out' })).toBe('device "fw-9" has no binding at 2026-10-20T00:00:00.000Z')
    expect(reason({ account_id: 'a-9', metric: 'bytes_out' })).toBe('account "a-9" is not known (yet)')
    expect(reason({ subscription_id: 's-9', metric: 'bytes_out' })).toBe('subscription "s-9" is not known (yet)')
    expect(reason({ subscription_id: 's-4', metric: 'bytes_out' })).toMatch(/subscription "s-4" is dormant: its usage is held until it is active \(`accounts apply` with "status": "active"\)/)
    expect(reason({ subscription_id: 's-3', metric: 'bytes_out' }, '2026-09-30T00:00:00Z')).toBe(
      'subscription "s-3" is not in force at 2026-09-30T00:00:00.000Z',
    )
    const noCatalog = new GuidingIndex([], accounts).guide({ device_id: 'fw-3', metric: 'bytes_out' }, at('2026-10-20T00:00:00Z'))
    expect(noCatalog).toEqual({ kind: 'suspend', reason: 'no catalog version is in force at 2026-10-20T00:00:00.000Z' })
  })
})

describe('stageBatch reject reasons that come from the catalog', () => {
  it('rejects an owned event whose metric no usage charge of its plan prices, naming plan and version', () => {
    const staged = stageBatch(
      {
        id: 'b1',
        records: [{ event_id: 'x1', source: 'csv:t', event_time: '2026-10-20T00:00:00Z', device_id: 'fw-3', metric: 'cpu_temp', quantity: '71', raw: 'x1,...', origin: 'f.csv:2' }],
        rejects: [],
      },
      index,
      at('2026-10-21T00:00:00Z'),
    )
    // Refused, not a reject line yet: the owner rejects it unless it is a duplicate (an event rated before the catalog changed).
    expect(staged.rejectLines).toEqual([])
    expect(staged.records.map((r) => [r.eventId, r.rejectReason, r.charges.length, r.raw, r.origin])).toEqual([
      ['x1', 'metric "cpu_temp" is not priced by any usage charge of plan "sase-pro" in catalog version "2026-11-a"', 0, 'x1,...', 'f.csv:2'],
    ])
  })
})
