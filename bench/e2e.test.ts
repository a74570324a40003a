import { describe, expect, it } from 'vitest'
import { cpuByThread, type ThreadTicks } from './e2e.js'
// The built module for the run: the pool's worker file is resolved next to the rater, and only dist has it compiled.
const { benchE2e } = (await import('../dist/bench/e2e.js' as string)) as typeof import('./e2e.js')

describe('bench e2e', () => {
  it("sorts a process's CPU by kind of thread, counting threads that started or ended during the run, and what no reading saw", () => {
    const snap = (rows: Array<[string, string, number]>) => new Map<string, ThreadTicks>(rows.map(([tid, comm, ticks]) => [tid, { comm, ticks }]))
    const first = snap([['100', 'node', 500], ['101', 'node', 20], ['102', 'ThreadPool', 30], ['103', 'MergeMutate', 0], ['104', 'libuv-worker', 1]])
    // Last readings: 105 (node) and 106 (a query thread) started during the run; 104 and 106 ended, but their last
    // readings stay. 101 was there before: one of Node's helpers, not the staging pool.
    const last = snap([
      ['100', 'node', 700], ['101', 'node', 120], ['102', 'ThreadPool', 80], ['103', 'MergeMutate', 10], ['104', 'libuv-worker', 3],
      ['105', 'node', 300], ['106', 'QueryPipelineEx', 40],
    ])
    // 200 + 100 + 50 + 10 + 2 + 300 + 40 = 702 ticks of 10 ms seen; the process used 7.5 s (750 ticks).
    expect(cpuByThread(first, last, 100, 100_000, 7_500_000)).toEqual({
      main: 20, staging: 30, node_helpers: 10, store_queries: 9, store_merges: 1, other: 0.2, unseen: 4.8,
    })
  })

  it('runs the whole scenario on real services and reports every figure, the counts reconciled', async () => {
    // Long enough (about a second) for the staging pool's thread to be sampled while it lives.
    const r = await benchE2e(20_000)
    expect(r.counts).toEqual({ read: 20_000, rated: 20_000, duplicates: 0, rejected: 0, suspended: 0 })
    for (const v of [r.e2e_events_per_s, r.store_raw_events_per_s, r.jetstream_publish_events_per_s, r.jetstream_consume_events_per_s, r.ratio_e2e_to_store]) {
      expect(v).toBeGreaterThan(0)
    }
    // On Linux the main thread and the staging pool both did work; elsewhere there is no breakdown.
    if (r.cpu_by_thread_us_per_event) {
      expect(r.cpu_by_thread_us_per_event.main).toBeGreaterThan(0)
      expect(Object.keys(r.cpu_by_thread_us_per_event)).toEqual(['main', 'staging', 'node_helpers', 'store_queries', 'store_merges', 'other', 'unseen'])
      expect(r.cpu_by_thread_us_per_event.staging).toBeGreaterThan(0)
    }
  }, 180_000)
})
