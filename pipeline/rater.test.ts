import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { deviceId, sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { validateAccounts, validateCatalog } from '../catalog/index.js'
import { createLogger } from '../common/logger.js'
import type { BatchOutcome } from './rater.js'
import type { Runtime } from './runtime.js'
// The built modules: the pool's worker file is resolved next to rater.js, and only dist has it compiled.
const { Rater, raterOptionsFromEnv } = (await import('../dist/pipeline/rater.js' as string)) as typeof import('./rater.js')
const { openRuntime } = (await import('../dist/pipeline/runtime.js' as string)) as typeof import('./runtime.js')

// Real nats-server (JetStream) and embedded ClickHouse, started here; the pool runs the built worker (dist).
const dir = mkdtempSync(join(tmpdir(), 'rateflow-rater-'))
let rt: Runtime

beforeAll(async () => {
  rt = openRuntime({ dataDir: dir, log: createLogger('test') })
  rt.repo.putCatalog(validateCatalog(sampleCatalog()))
  rt.repo.putAccounts(validateAccounts(sampleAccounts({ customers: 1, devicesPerAccount: 1 })))
})

afterAll(async () => {
  await rt?.close()
  rmSync(dir, { recursive: true, force: true })
})

// `ingest csv --wait` on a file whose header is bad stops the rater right after starting it. stop() used to
// miss the consume() still being set up, and the process then waited forever on an iterator nobody stopped.
it('stop() right after start() returns, however far the consumer got', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  for (const delayMs of [0, 0, 0, 1, 2, 5, 10, 20]) {
    const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
    await rater.start()
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs))
    const stopped = await Promise.race([
      rater.stop().then(() => 'stopped'),
      new Promise((r) => setTimeout(() => r('hung'), 10_000)),
    ])
    expect(stopped, `stop() after ${delayMs} ms`).toBe('stopped')
  }
})

it('rater options come from RATEFLOW_THREADS and RATEFLOW_FLUSH_ROWS; bad values are named, all at once', () => {
  expect(raterOptionsFromEnv({})).toMatchObject({ threads: 1, flushRows: 100_000 })
  expect(raterOptionsFromEnv({ RATEFLOW_THREADS: '2', RATEFLOW_FLUSH_ROWS: '5000' })).toMatchObject({ threads: 2, flushRows: 5000 })
  expect(() => raterOptionsFromEnv({ RATEFLOW_THREADS: '0', RATEFLOW_FLUSH_ROWS: '1.5' })).toThrow(
    /RATEFLOW_THREADS: "0" is not a whole number from 1 to 64\n.*RATEFLOW_FLUSH_ROWS: "1.5" is not a whole number/s,
  )
})

// Pool threads read guiding data when a batch names a fingerprint they have not loaded, as the files are then; the
// rater reads them at most once a second. A catalog version applied between the two reached the pool first, and
// the rater rejected its events: "charge … missing from the rater's catalog snapshot".
it('an event the pool staged under a catalog version this thread has not read yet is rated by that version, not rejected', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
  const outcomes: BatchOutcome[] = []
  const got = new Promise<BatchOutcome>((resolve) =>
    rater.on('outcome', (o: BatchOutcome) => {
      outcomes.push(o)
      if (o.batchId === 'late-version-1') resolve(o)
    }),
  )
  await rater.start()
  try {
    // The rater has just read its guiding data: its next look is a second away. A new version lands meanwhile, and
    // the pool thread, which has read nothing yet, reads it with the first batch.
    ;(rater as unknown as { lastGuidingCheck: number }).lastGuidingCheck = Date.now()
    rt.repo.putCatalog(validateCatalog({ ...sampleCatalog(), version: '2026-11-b', effective_from: '2026-10-01T00:00:00Z' }))
    await queue.publish({
      id: 'late-version-1',
      records: [{ event_id: 'lv-1', source: 'test:late-version', event_time: '2026-10-05T10:00:00Z', device_id: deviceId(1, 1), metric: 'api_calls', quantity: '3' }],
      rejects: [],
    })
    expect(await got).toMatchObject({ read: 1, rated: 1, rejected: 0 })
    const rows = await store.rows<{ catalog_version: string; amount: string }>(
      "SELECT catalog_version, amount FROM rated_usage WHERE source = 'test:late-version'",
    )
    expect(rows).toEqual([{ catalog_version: '2026-11-b', amount: '0.0012' }])
  } finally {
    await rater.stop()
  }
})
