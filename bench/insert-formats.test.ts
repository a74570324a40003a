import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../common/logger.js'

// The compiled modules: the rater the benchmark runs starts pool threads from dist/ (plain JS).
const { benchInsertFormats, benchRowBuilding, INSERT_FORMATS } = (await import('../dist/bench/insert-formats.js' as string)) as typeof import('./insert-formats.js')
const { openRuntime } = (await import('../dist/pipeline/runtime.js' as string)) as typeof import('../pipeline/runtime.js')

describe('bench insert-formats', () => {
  it("inserts the run's rows in every format (it checks each stored every row) and reports each against TabSeparated", async () => {
    const res = await benchInsertFormats(2_000, 1)
    expect(res.map((r) => r.format)).toEqual([...INSERT_FORMATS])
    expect(res[0]!.cpu_ratio_vs_tsv).toBe(1)
    for (const r of res) {
      expect(r.bytes_per_event).toBeGreaterThan(100)
      expect(r.cpu_us_per_event_median).toBeGreaterThan(0)
    }
  }, 120_000)

  it('builds usage_events rows both ways, which ClickHouse reads as the same rows (the benchmark checks and throws otherwise)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rateflow-bench-test-'))
    const rt = openRuntime({ dataDir: join(dir, 'data'), log: createLogger('test', 'error') })
    try {
      const res = await benchRowBuilding(await rt.store(), 3_000, 1)
      expect(res.map((r) => r.way)).toEqual(['TabSeparated, joined, UTF-8', 'RowBinary'])
      expect(res[1]!.bytes_per_event).toBeLessThan(res[0]!.bytes_per_event)
    } finally {
      await rt.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
