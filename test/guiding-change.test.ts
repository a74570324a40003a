import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { AccountsDocument, Catalog } from '../catalog/types.js'
import { cliDataDir, json, query, writeJson } from './helpers/cli.js'

/**
 * Guiding data that changes after usage was rated or held, on the real services (nats-server with JetStream, embedded
 * ClickHouse, the CLI): an event sent again after the change is a duplicate, whatever guiding says of it now (CONTRACT
 * §1: duplicates are counted, never billed, and an event billed once is never reported as not billed); a held event
 * that guiding now refuses stays held, with the reason that holds it now.
 */
const { data, d } = cliDataDir()

type Counts = { read: number; rated: number; duplicates: number; rejected: number; suspended: number }

const catalog: Catalog = {
  version: 'k1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [{ id: 'm', metric: 'api_calls', aggregation: 'sum' }],
  plans: [{ id: 'basic', billing_period: 'month', charges: [{ id: 'calls', kind: 'usage', meter: 'm', model: 'per_unit', unit_price: '1' }] }],
}

const sub = (id: string, devices: Array<{ device_id: string; from: string; to: string | null }> = []) => ({
  id,
  plan: 'basic',
  start: '2026-01-01T00:00:00Z',
  status: 'active' as const,
  devices,
})
const account = (id: string, subscriptions: ReturnType<typeof sub>[]) => ({ id, currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions })
const accounts = (...accs: ReturnType<typeof account>[]): AccountsDocument => ({ customers: [{ id: 'c', name: 'C', accounts: accs }] })

const HEADER = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity'

function csv(name: string, rows: string[]): string {
  const f = join(data, name)
  writeFileSync(f, [HEADER, ...rows].join('\n') + '\n')
  return f
}

describe('guiding data that changes after usage was rated or held', () => {
  it('an event rated before the change and sent again after it is a duplicate, not a reject nor held', async () => {
    await json(['catalog', 'apply', writeJson(join(data, 'catalog.json'), catalog), ...d])
    await json(['accounts', 'apply', writeJson(join(data, 'acc1.json'), accounts(account('a', [sub('s1', [{ device_id: 'dv', from: '2026-01-01T00:00:00Z', to: null }])]))), ...d])
    const u = csv('u.csv', ['r1,2026-03-05T00:00:00Z,,a,,api_calls,5', 'r2,2026-03-06T00:00:00Z,dv,,,api_calls,7'])
    expect(await json<Counts>(['ingest', 'csv', u, '--source', 'csv:rr', '--wait', ...d])).toEqual({ read: 2, rated: 2, duplicates: 0, rejected: 0, suspended: 0 })
    // Now account "a" has two subscriptions (an account-only event no longer says which), and dv's binding ended in February.
    const changed = accounts(account('a', [sub('s1', [{ device_id: 'dv', from: '2026-01-01T00:00:00Z', to: '2026-02-01T00:00:00Z' }]), sub('s2')]))
    await json(['accounts', 'apply', writeJson(join(data, 'acc2.json'), changed), ...d])
    expect(await json<Counts>(['ingest', 'csv', u, '--source', 'csv:rr', '--wait', ...d])).toEqual({ read: 2, rated: 0, duplicates: 2, rejected: 0, suspended: 0 })
    expect(await query(data, "SELECT raw, reason FROM rejected_usage FINAL WHERE source = 'csv:rr'")).toEqual([])
    expect(await query(data, "SELECT event_id FROM suspended_usage FINAL WHERE source = 'csv:rr'")).toEqual([])
    expect(await query(data, "SELECT event_id, subscription_id, toString(amount) AS amount FROM rated_usage WHERE source = 'csv:rr' ORDER BY event_id")).toEqual([
      { event_id: 'r1', subscription_id: 's1', amount: '5' },
      { event_id: 'r2', subscription_id: 's1', amount: '7' },
    ])
    // A new event that guiding refuses is still a reject, and its key stays free: sent again once it names its
    // subscription, it is rated.
    const n = csv('n.csv', ['r3,2026-03-07T00:00:00Z,,a,,api_calls,1'])
    expect(await json<Counts>(['ingest', 'csv', n, '--source', 'csv:rr', '--wait', ...d])).toEqual({ read: 1, rated: 0, duplicates: 0, rejected: 1, suspended: 0 })
    const fixed = csv('n-fixed.csv', ['r3,2026-03-07T00:00:00Z,,a,s2,api_calls,1'])
    expect(await json<Counts>(['ingest', 'csv', fixed, '--source', 'csv:rr', '--wait', ...d])).toEqual({ read: 1, rated: 1, duplicates: 0, rejected: 0, suspended: 0 })
  })

  it('a held event that guiding refuses after a change stays held, with the reason that holds it now and what releases it', async () => {
    // Account "b" is not known yet: held.
    const h = csv('h.csv', ['h1,2026-03-05T00:00:00Z,,b,,api_calls,5'])
    expect(await json<Counts>(['ingest', 'csv', h, '--source', 'csv:held', '--wait', ...d])).toMatchObject({ read: 1, suspended: 1 })
    const held = () => query<{ status: string; reason: string }>(data, "SELECT toString(status) AS status, reason FROM suspended_usage FINAL WHERE source = 'csv:held'")
    expect(await held()).toEqual([{ status: 'held', reason: expect.stringMatching(/account "b"/) }])
    // Now "b" exists with two subscriptions: an event naming only the account cannot be owned. It stays held (rejecting
    // it would lose usage sent once), and says so.
    const both = accounts(account('a', [sub('s1'), sub('s2')]), account('b', [sub('sb1'), sub('sb2')]))
    await json(['accounts', 'apply', writeJson(join(data, 'acc3.json'), both), ...d])
    // Guiding words it for an event just sent ("send subscription_id"); a held one sent again is a duplicate, so the
    // reason says what does work.
    expect(await held()).toEqual([
      {
        status: 'held',
        reason: expect.stringMatching(
          /account "b" has 2 subscriptions.*send subscription_id \(held: this event is stored already, so sending it again counts as a duplicate; change the accounts or catalog data that refuse it, and the next release rates it\)$/,
        ),
      },
    ])
    expect(await query(data, "SELECT raw FROM rejected_usage FINAL WHERE source = 'csv:held'")).toEqual([])
    const again = csv('h2.csv', ['h1,2026-03-05T00:00:00Z,,b,sb1,api_calls,5'])
    expect(await json<Counts>(['ingest', 'csv', again, '--source', 'csv:held', '--wait', ...d])).toMatchObject({ read: 1, duplicates: 1 })
    // As it says: one owner, and it is rated.
    const one = accounts(account('a', [sub('s1'), sub('s2')]), account('b', [sub('sb1'), { ...sub('sb2'), end: '2026-02-01T00:00:00Z' }]))
    expect(await json(['accounts', 'apply', writeJson(join(data, 'acc4.json'), one), ...d])).toMatchObject({ released: 1 })
    expect(await held()).toEqual([{ status: 'released', reason: expect.any(String) }])
  })
})
