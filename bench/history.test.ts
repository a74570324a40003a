import { describe, expect, it } from 'vitest'
import { benchHistory } from './history.js'

describe('bench history', () => {
  it('times each read three ways on one synthetic history; the three ways give the same answer (it throws otherwise)', async () => {
    const r = await benchHistory(2_000, 20_000, 1)
    expect(r.reads.map((x) => x.read)).toEqual(['late check, 1,000 ids', 'a new source met', "a known source's keys"])
    for (const x of r.reads) {
      expect(x.rateflow_ms).toHaveLength(1)
      expect(x.scan_flushes_ms).toHaveLength(1)
      expect(x.filter_all_ms).toHaveLength(1)
      expect(x.ratio).toBeGreaterThan(0)
      expect(x.ratio_scan).toBeGreaterThan(0)
    }
  }, 120_000)
})
