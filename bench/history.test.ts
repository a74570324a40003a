import { describe, expect, it } from 'vitest'
import { benchHistory } from './history.js'

describe('bench history', () => {
  it('times each read both ways on one synthetic history; the two ways give the same answer (it throws otherwise)', async () => {
    const r = await benchHistory(2_000, 20_000, 1)
    expect(r.reads.map((x) => x.read)).toEqual(['late check, 1,000 ids', 'a new source met'])
    for (const x of r.reads) {
      expect(x.rateflow_ms).toHaveLength(1)
      expect(x.filter_all_ms).toHaveLength(1)
      expect(x.ratio).toBeGreaterThan(0)
    }
  }, 120_000)
})
