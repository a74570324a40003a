import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { validateAccounts, validateCatalog } from '../catalog/index.js'
import { createLogger } from '../common/logger.js'
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
