import { describe, expect, it } from 'vitest'

// The compiled module: the raters the benchmark runs start pool threads from dist/ (plain JS).
const { benchStartup } = (await import('../dist/bench/startup.js' as string)) as typeof import('./startup.js')

describe('bench startup', () => {
  it('times both ways of starting and of reading keys on one history (it checks every ingest rated all and every read got every key)', async () => {
    const r = await benchStartup(3_000, 1)
    expect(r.starts.map((s) => s.way)).toEqual(['from the latest checkpoint', 'folding all history (no checkpoint)'])
    for (const s of r.starts) expect(s.start_ms).toHaveLength(1)
    // The history's keys and one small file's per round and way.
    expect(r.keys.map((k) => k.keys)).toEqual([3_000 + 2 * 1_000, 3_000 + 2 * 1_000])
    expect(r.start_ratio_checkpoint_to_full_fold).toBeGreaterThan(0)
  }, 120_000)
})
