import { describe, expect, it } from 'vitest'
// The compiled module: the rater it runs starts pool threads from dist/ (plain JS).
const { benchInsertFormats, INSERT_FORMATS } = (await import('../dist/bench/insert-formats.js' as string)) as typeof import('./insert-formats.js')

describe('bench insert-formats', () => {
  it('inserts the run\'s rows in every format (it checks each stored every row) and reports each against TabSeparated', async () => {
    const res = await benchInsertFormats(2_000, 1)
    expect(res.map((r) => r.format)).toEqual([...INSERT_FORMATS])
    expect(res[0]!.cpu_ratio_vs_tsv).toBe(1)
    for (const r of res) {
      expect(r.bytes_per_event).toBeGreaterThan(100)
      expect(r.cpu_us_per_event_median).toBeGreaterThan(0)
    }
  }, 120_000)
})
