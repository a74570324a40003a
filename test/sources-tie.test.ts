import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { json, killStrayChildren, query, rateflow, storeCommand, withAppliedData } from './helpers/cli.js'

/**
 * Two sources may use one event_id (CONTRACT §2: an event is (source, event_id)): two sites sending seat gauges with
 * ids like `r1`, each its own source. Their readings at one time are two readings, and the period's totals must not
 * depend on which site's file is ingested first. Each `ingest csv --wait` is its own process, so the second one's
 * rater folds the first one's stored rows again before its own (the restart path) as well as live.
 */
const catalog = {
  version: 'v1',
  effective_from: '2026-01-01T00:00:00Z',
  currency: 'USD',
  meters: [
    { id: 'seats', metric: 'seats', aggregation: 'time_weighted_avg' },
    { id: 'last', metric: 'level', aggregation: 'latest' },
  ],
  plans: [
    {
      id: 'p1',
      billing_period: 'month',
      charges: [
        { id: 'seat_fee', kind: 'usage', meter: 'seats', model: 'per_unit', unit_price: '10' },
        { id: 'level_fee', kind: 'usage', meter: 'last', model: 'per_unit', unit_price: '1' },
      ],
    },
  ],
}
const accounts = {
  customers: [{ id: 'cu1', name: 'A', accounts: [{ id: 'a1', currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, subscriptions: [{ id: 's1', plan: 'p1', start: '2026-01-01T00:00:00Z', status: 'active', quantity: '1' }] }] }],
}
const HEADER = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n'
const site = (q: string) => `${HEADER}r1,2026-10-01T00:00:00Z,,a1,,seats,${q}\nl1,2026-10-10T00:00:00Z,,a1,,level,${q}\n`

afterAll(() => {
  killStrayChildren()
})

describe('readings of two sources with one event_id and time', () => {
  it('are both rated, and the period sums are the same whichever source comes first', async () => {
    const sums = async (order: Array<'a' | 'b'>) =>
      withAppliedData('rateflow-tie-', catalog, accounts, async (dir, d) => {
        for (const s of order) {
          const file = join(dir, `site-${s}.csv`)
          writeFileSync(file, site(s === 'a' ? '5' : '7'))
          const counts = await json<{ rated: number; duplicates: number }>(['ingest', 'csv', file, '--source', `csv:site-${s}`, '--wait', ...d])
          expect(counts).toMatchObject({ rated: 2, duplicates: 0 })
        }
        return query<{ charge_id: string; s: string }>(dir, 'SELECT charge_id, toString(sum(amount)) AS s FROM rated_usage GROUP BY charge_id ORDER BY charge_id')
      })
    // site-b's readings sort after site-a's at the same instant and id: the latest level is 7, and 7 seats hold for the
    // whole of October (site-a's 5 from the same instant holds for no time): 7 × 10.
    const expected = [
      { charge_id: 'level_fee', s: '7' },
      { charge_id: 'seat_fee', s: '70' },
    ]
    expect(await sums(['a', 'b'])).toEqual(expected)
    expect(await sums(['b', 'a'])).toEqual(expected)
  }, 120_000)

  it('a checkpoint of an earlier release, its readings without their source, is dropped and the rated rows folded instead', async () => {
    const sums = await withAppliedData('rateflow-tie-old-', catalog, accounts, async (dir, d) => {
      const a = join(dir, 'site-a.csv')
      writeFileSync(a, site('5'))
      expect(await json(['ingest', 'csv', a, '--source', 'csv:site-a', '--wait', ...d])).toMatchObject({ rated: 2 })
      // The clean stop checkpointed the totals; written as an earlier release did: no `src` in `latest`, points of three.
      await storeCommand(
        dir,
        String.raw`ALTER TABLE rating_checkpoints UPDATE state = replaceRegexpAll(replaceRegexpAll(state, ',"src":"[^"]*"', ''), '(\[-?[0-9]+,"[^"]*","[-0-9.e]+"),"[^"]*"\]', '\\1]') WHERE 1 SETTINGS mutations_sync = 2`,
      )
      const states = await query<{ state: string }>(dir, 'SELECT state FROM rating_checkpoints')
      expect(states.length).toBeGreaterThan(0)
      expect(states.some((s) => s.state.includes('src') || s.state.includes('csv:site-a'))).toBe(false)
      const b = join(dir, 'site-b.csv')
      writeFileSync(b, site('7'))
      const r = await rateflow(['ingest', 'csv', b, '--source', 'csv:site-b', '--wait', ...d], { RATEFLOW_LOG: 'info' })
      expect(r.code).toBe(0)
      expect(r.stderr).toContain('checkpoint of the running totals written by an earlier release')
      return query<{ charge_id: string; s: string }>(dir, 'SELECT charge_id, toString(sum(amount)) AS s FROM rated_usage GROUP BY charge_id ORDER BY charge_id')
    })
    // As without the old checkpoint (restored, site-b's readings were taken for site-a's again: 5 and 50).
    expect(sums).toEqual([
      { charge_id: 'level_fee', s: '7' },
      { charge_id: 'seat_fee', s: '70' },
    ])
  }, 120_000)
})
