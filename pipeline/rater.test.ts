import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { deviceId, sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { validateAccounts, validateCatalog } from '../catalog/index.js'
import { createLogger } from '../common/logger.js'
import type { BatchOutcome } from './rater.js'
import type { Runtime } from './runtime.js'
import type { Store } from './store.js'
// The built modules: the pool's worker file is resolved next to rater.js, and only dist has it compiled.
const { DEFAULT_RATER, Rater, checkpointDue, eachPage, raterOptionsFromEnv } = (await import('../dist/pipeline/rater.js' as string)) as typeof import('./rater.js')
const { openRuntime } = (await import('../dist/pipeline/runtime.js' as string)) as typeof import('./runtime.js')

// Real nats-server (JetStream) and embedded ClickHouse, started here; the pool runs the built worker (dist).
const dir = mkdtempSync(join(tmpdir(), 'rateflow-rater-'))
let rt: Runtime

beforeAll(async () => {
  rt = openRuntime({ dataDir: dir, log: createLogger('test') })
  rt.repo.putCatalog(validateCatalog(sampleCatalog()))
  rt.repo.putAccounts(validateAccounts(sampleAccounts({ customers: 1, devicesPerAccount: 1 })))
})

/**
 * A rater on this file's runtime, not started, that keeps every batch's outcome by batch id; `outcome(id)`
 * waits up to 5 s for the batch's and gives it (undefined if none came).
 */
async function recordingRater() {
  const store = await rt.store()
  const queue = await rt.queue()
  const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
  const seen = new Map<string, BatchOutcome>()
  rater.on('outcome', (o: BatchOutcome) => seen.set(o.batchId, o))
  const outcome = async (id: string): Promise<BatchOutcome | undefined> => {
    for (let i = 0; i < 200 && !seen.has(id); i++) await new Promise((r) => setTimeout(r, 25))
    return seen.get(id)
  }
  return { store, queue, rater, outcome }
}

/** A rater on this file's runtime, started, and the outcome of the batch `batchId` once it is committed. */
async function startedRater(batchId: string): Promise<{ rater: InstanceType<typeof Rater>; outcome: Promise<BatchOutcome> }> {
  const rater = new Rater({ store: await rt.store(), queue: await rt.queue(), ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
  const outcome = new Promise<BatchOutcome>((resolve) => rater.on('outcome', (o: BatchOutcome) => o.batchId === batchId && resolve(o)))
  await rater.start()
  return { rater, outcome }
}

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

it('rater options come from RATEFLOW_THREADS, RATEFLOW_FLUSH_ROWS, RATEFLOW_LOAD_PAGE_ROWS, RATEFLOW_CHECKPOINT_ROWS and RATEFLOW_DEDUPE_HORIZON_HOURS; bad values are named, all at once', () => {
  expect(raterOptionsFromEnv({})).toMatchObject({ threads: 1, flushRows: 100_000, loadPageRows: 500_000, checkpointRows: 100_000, dedupeHorizonMs: 7 * 24 * 3_600_000 })
  expect(
    raterOptionsFromEnv({
      RATEFLOW_THREADS: '2', RATEFLOW_FLUSH_ROWS: '5000', RATEFLOW_LOAD_PAGE_ROWS: '997', RATEFLOW_CHECKPOINT_ROWS: '1', RATEFLOW_DEDUPE_HORIZON_HOURS: '24',
    }),
  ).toMatchObject({ threads: 2, flushRows: 5000, loadPageRows: 997, checkpointRows: 1, dedupeHorizonMs: 86_400_000 })
  expect(() =>
    raterOptionsFromEnv({
      RATEFLOW_THREADS: '0', RATEFLOW_FLUSH_ROWS: '1.5', RATEFLOW_LOAD_PAGE_ROWS: 'all', RATEFLOW_CHECKPOINT_ROWS: '-3', RATEFLOW_DEDUPE_HORIZON_HOURS: '0',
    }),
  ).toThrow(
    /RATEFLOW_THREADS: must be a whole number from 1 to 64, got "0"\n.*RATEFLOW_FLUSH_ROWS: must be a whole number .*, got "1.5"\n.*RATEFLOW_LOAD_PAGE_ROWS: must be a whole number .*, got "all"\n.*RATEFLOW_CHECKPOINT_ROWS: must be a whole number .*, got "-3"\n.*RATEFLOW_DEDUPE_HORIZON_HOURS: must be a whole number from 1 to 87600, got "0"/s,
  )
  // Digits only, as for every whole-number knob: `1e3` and `0x10` were taken as 1000 and 16 here and refused by query's.
  expect(() => raterOptionsFromEnv({ RATEFLOW_FLUSH_ROWS: '1e3', RATEFLOW_THREADS: '0x2' })).toThrow(/RATEFLOW_THREADS: .*got "0x2"\n.*RATEFLOW_FLUSH_ROWS: .*got "1e3"/s)
  expect(raterOptionsFromEnv({ RATEFLOW_FLUSH_ROWS: ' 5000 ' })).toMatchObject({ flushRows: 5000 })
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
    // the pool thread reads it with the first batch: that batch names a fingerprint the thread has not loaded (the
    // thread read the files when start() started it, which may be before or after this test writes them).
    ;(rater as unknown as { lastGuidingCheck: number }).lastGuidingCheck = Date.now()
    ;(rater as unknown as { fingerprint: string }).fingerprint = 'as read before 2026-11-b'
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

// Guiding data applied while a rater runs: `accounts apply` and `catalog apply` write the files and return. The rater
// looked at them at most once a second, so usage published right after an apply returned was guided and priced on
// the old data for good: a device's usage billed to the account it had just left, an event priced by the version before.
it('usage published after guiding data changed is guided and priced on the new data, however soon after', async () => {
  const { store, queue, rater, outcome } = await recordingRater()
  const record = (id: string, time: string) => ({ event_id: id, source: 'test:moved', event_time: time, device_id: 'fw-moving', metric: 'api_calls', quantity: '1000' })
  const original = rt.repo.accounts()
  const catalogs = rt.repo.catalogs()
  // fw-moving belongs to the first account's subscription from October 1st.
  const accounts = structuredClone(original)
  const home = accounts.customers[0]!.accounts[0]!
  home.subscriptions[0]!.devices.push({ device_id: 'fw-moving', from: '2026-10-01T00:00:00Z', to: null })
  rt.repo.putAccounts(validateAccounts(accounts))
  await rater.start()
  try {
    await queue.publish({ id: 'moved-0', records: [record('m-0', '2026-12-02T10:00:00Z')], rejects: [] })
    expect(await outcome('moved-0')).toMatchObject({ rated: 1 })
    // It moves to an account of its own from December 1st, and a catalog version takes effect then; the rater has just
    // looked at the files (its batch), so a look once a second comes too late.
    const plan = home.subscriptions[0]!.plan
    const sub = home.subscriptions[0]!
    sub.devices = sub.devices.map((b) => (b.device_id === 'fw-moving' ? { ...b, to: '2026-12-01T00:00:00Z' } : b))
    accounts.customers.push({
      id: 'c-moved',
      name: 'Moved',
      accounts: [
        {
          ...home,
          id: 'a-moved',
          parent_account: null,
          subscriptions: [{ id: 's-moved', plan, start: '2026-10-01T00:00:00Z', status: 'active', quantity: '1', devices: [{ device_id: 'fw-moving', from: '2026-12-01T00:00:00Z', to: null }] }],
        },
      ],
    })
    const latest = catalogs[catalogs.length - 1]!
    rt.repo.putAccounts(validateAccounts(accounts))
    rt.repo.putCatalog(validateCatalog({ ...latest, version: 'moved-v2', effective_from: '2026-12-01T00:00:00Z' }))
    await queue.publish({ id: 'moved-1', records: [record('m-1', '2026-12-02T11:00:00Z')], rejects: [] })
    expect(await outcome('moved-1')).toMatchObject({ rated: 1 })
    const rows = await store.rows<{ event_id: string; account_id: string; subscription_id: string; catalog_version: string }>(
      "SELECT event_id, account_id, subscription_id, catalog_version FROM rated_usage WHERE source = 'test:moved' ORDER BY event_id",
    )
    expect(rows.map((r) => [r.event_id, r.account_id, r.subscription_id, r.catalog_version])).toEqual([
      ['m-0', home.id, sub.id, latest.version],
      ['m-1', 'a-moved', 's-moved', 'moved-v2'],
    ])
  } finally {
    await rater.stop()
  }
})

// A batch id is any text a message's id can be (another tool's Nats-Msg-Id, say): the flush's intent, its commit row and
// committed_batches must name it as it is. The commit row escaped its Array field twice: a quote failed the commit.
it("commits a batch whose id holds a quote, a backslash and a tab, naming it as it is in every table", async () => {
  const id = "other-tool:o'brien\\x\tend"
  const { rater, outcome } = await startedRater(id)
  try {
    const queue = await rt.queue()
    await queue.publish({ id, records: [{ event_id: 'q-1', source: 'test:odd-batch', event_time: '2026-10-05T10:00:00Z', device_id: deviceId(1, 1), metric: 'api_calls', quantity: '1' }], rejects: [] })
    expect(await outcome).toMatchObject({ read: 1, rated: 1 })
    const store = await rt.store()
    const named = async (sql: string) => (await store.rows<{ n: string }>(sql, { id }))[0]!.n
    expect(await named('SELECT count() AS n FROM flushes WHERE has(batches, {id:String})')).toBe('1')
    expect(await named('SELECT count() AS n FROM committed_batches WHERE batch_id = {id:String}')).toBe('1')
    expect(await named('SELECT count() AS n FROM rated_usage WHERE batch_id = {id:String}')).toBe('1')
  } finally {
    await rater.stop()
  }
})

// An event guiding refuses is checked against the dedupe index, not added to it: adding and deleting its key left an
// empty generation of the index per refused future-dated event (a device with a wrong clock), and every later add
// probed them all (100,000 adds: 3,980 ms after 500 such events, against 57).
it('refused events leave the dedupe index as it was', async () => {
  const { rater, outcome } = await startedRater('refused-future-1')
  try {
    const index = (rater as unknown as { accepted: { generationCount: number } }).accepted
    const before = index.generationCount
    const records = Array.from({ length: 50 }, (_, i) => ({
      event_id: `rf-${i}`, source: 'test:refused', event_time: new Date(Date.UTC(2031, 0, 1 + 10 * i)).toISOString(), device_id: deviceId(1, 1), metric: 'cpu_temp', quantity: '1',
    }))
    await (await rt.queue()).publish({ id: 'refused-future-1', records, rejects: [] })
    expect(await outcome).toMatchObject({ read: 50, rejected: 50, duplicates: 0 })
    expect(index.generationCount).toBe(before)
  } finally {
    await rater.stop()
  }
})

// The stream or the rater's consumer deleted by hand while a rater runs: the rater went on waiting, without a word,
// for someone to make them again, and publishes failed ("no responders") until a restart. Both are made again now.
it('rates on after its consumer, or the whole stream, was deleted while it ran', async () => {
  const { rater } = await startedRater('none')
  const queue = await rt.queue()
  const jsm = await jetstreamManager(queue.nc)
  const outcomeOf = (id: string) => new Promise<BatchOutcome>((resolve) => rater.on('outcome', (o: BatchOutcome) => o.batchId === id && resolve(o)))
  const batch = (id: string) => ({ id, records: [{ event_id: id, source: 'test:gone', event_time: '2026-10-05T10:00:00Z', device_id: deviceId(1, 1), metric: 'api_calls', quantity: '1' }], rejects: [] })
  try {
    await new Promise((r) => setTimeout(r, 500))
    await jsm.consumers.delete('USAGE', 'rater')
    const first = outcomeOf('gone-consumer')
    await queue.publish(batch('gone-consumer'))
    expect(await within(30_000, first)).toMatchObject({ read: 1, rated: 1 })
    await jsm.streams.delete('USAGE')
    const second = outcomeOf('gone-stream')
    await queue.publish(batch('gone-stream'))
    expect(await within(30_000, second)).toMatchObject({ read: 1, rated: 1 })
  } finally {
    await rater.stop()
  }
}, 90_000)

/** `p`, or a rejection after `ms`. */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`nothing after ${ms} ms`)), ms).unref())])
}

// A release read every held row at once and staged them as one batch: months of usage held for an account not
// loaded yet would sit in memory whole. It goes page by page now, each page committed before the next is read.
it('releases held usage page by page once guiding data owns it, leaving what it still cannot own held', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log }, { ...DEFAULT_RATER, releasePageRows: 4 })
  const outcome = new Promise<BatchOutcome>((resolve) => rater.on('outcome', (o: BatchOutcome) => o.batchId === 'held-1' && resolve(o)))
  await rater.start()
  try {
    const ids = ['e-01', 'e-02', 'e-03', 'e-04', 'e-05', 'e-06', 'e-07', 'e-08', 'e-09', 'e-10']
    const record = (id: string, device: string) => ({
      event_id: id, source: 'test:release', event_time: '2026-10-06T08:00:00Z', device_id: device, metric: 'api_calls', quantity: '1',
    })
    // e-05b sorts between e-05 and e-06: a device nobody binds, in the middle of the second page.
    await queue.publish({ id: 'held-1', records: [...ids.map((id) => record(id, 'fw-late')), record('e-05b', 'fw-never')], rejects: [] })
    expect(await outcome).toMatchObject({ read: 11, suspended: 11 })

    const accounts = rt.repo.accounts()
    accounts.customers[0]!.accounts[0]!.subscriptions[0]!.devices.push({ device_id: 'fw-late', from: '2026-10-01T00:00:00Z', to: null })
    rt.repo.putAccounts(validateAccounts(accounts))
    // The running rater notices the change by itself (within a second or two) and releases.
    const rated = async () =>
      (await store.rows<{ batch_id: string; n: string }>(
        "SELECT batch_id, count() AS n FROM rated_usage WHERE source = 'test:release' GROUP BY batch_id ORDER BY batch_id",
      ))
    for (let i = 0; i < 100 && (await rated()).reduce((s, r) => s + Number(r.n), 0) < ids.length; i++) await new Promise((r) => setTimeout(r, 100))
    // Three pages of at most four held rows: 4 + 3 (e-05b stays held) + 3 rated rows.
    expect((await rated()).map((r) => r.batch_id.replace(/^release-\d+-/, 'page '))).toEqual(['page 1', 'page 2', 'page 3'])
    expect((await rated()).map((r) => Number(r.n))).toEqual([4, 3, 3])
    const held = await store.rows<{ event_id: string; status: string }>(
      "SELECT event_id, toString(status) AS status FROM suspended_usage FINAL WHERE source = 'test:release' ORDER BY event_id",
    )
    expect(held.filter((h) => h.status === 'held').map((h) => h.event_id)).toEqual(['e-05b'])
    expect(held.filter((h) => h.status === 'released')).toHaveLength(ids.length)
  } finally {
    await rater.stop()
  }
})

// `ingest csv --wait` stops its rater once its own batches are rated. A stop ends a release between pages, so an
// `accounts apply` beside it (which leaves the release to this rater) left most of the usage it owned held.
it('settleReleases() returns once held usage the new guiding data owns is released whole, so a stop right after it cuts none', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log }, { ...DEFAULT_RATER, releasePageRows: 2 })
  const outcome = new Promise<BatchOutcome>((resolve) => rater.on('outcome', (o: BatchOutcome) => o.batchId === 'settle-held' && resolve(o)))
  await rater.start()
  const held = async () => Number((await store.rows<{ n: string }>("SELECT count() AS n FROM suspended_usage FINAL WHERE source = 'test:settle' AND status = 'held'"))[0]!.n)
  try {
    const record = (id: string) => ({ event_id: id, source: 'test:settle', event_time: '2026-10-06T08:00:00Z', device_id: 'fw-settle', metric: 'api_calls', quantity: '1' })
    await queue.publish({ id: 'settle-held', records: ['s-1', 's-2', 's-3', 's-4', 's-5', 's-6', 's-7'].map(record), rejects: [] })
    expect(await outcome).toMatchObject({ suspended: 7 })
    const accounts = rt.repo.accounts()
    accounts.customers[0]!.accounts[0]!.subscriptions[0]!.devices.push({ device_id: 'fw-settle', from: '2026-10-01T00:00:00Z', to: null })
    rt.repo.putAccounts(validateAccounts(accounts))
    await rater.settleReleases()
  } finally {
    await rater.stop()
  }
  // Four pages of at most two rows, all committed before the stop.
  expect(await held()).toBe(0)
  expect(Number((await store.rows<{ n: string }>("SELECT count() AS n FROM rated_usage WHERE source = 'test:settle'"))[0]!.n)).toBe(7)
})

it('settleReleases() takes no more batches and returns while other producers keep the stream busy', async () => {
  // A release runs when the rater is idle: batches of other processes flowing in held it off, and `ingest --wait` with it.
  const store = await rt.store()
  const queue = await rt.queue()
  const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
  await rater.start()
  let flowing = true
  const flow = (async () => {
    // Batches of 2,000 events as fast as they are taken: the rater is never idle while they come.
    for (let i = 0; flowing; i++) {
      const records = Array.from({ length: 2000 }, (_, k) => ({ event_id: `i-${i}-${k}`, source: 'test:intake', event_time: '2026-10-06T08:00:00Z', device_id: deviceId(1, 1), metric: 'api_calls', quantity: '1' }))
      await queue.publish({ id: `intake-${i}`, records, rejects: [] })
    }
  })()
  try {
    await new Promise((r) => setTimeout(r, 1500))
    // Guiding data changes: a release is asked for, and settleReleases waits for it.
    const accounts = rt.repo.accounts()
    accounts.customers[0]!.accounts[0]!.subscriptions[0]!.devices.push({ device_id: 'fw-intake', from: '2026-10-01T00:00:00Z', to: null })
    rt.repo.putAccounts(validateAccounts(accounts))
    const settled = await Promise.race([rater.settleReleases().then(() => 'settled'), new Promise((r) => setTimeout(() => r('still waiting'), 20_000))])
    expect(settled).toBe('settled')
  } finally {
    flowing = false
    await flow
    await rater.stop()
    // The batches it left in the stream are no other test's to rate.
    await (await jetstreamManager(queue.nc)).streams.purge('USAGE')
  }
}, 60_000)

// Ending a staging thread while it still loads its code is a fatal V8 error in Node 20, and with chDB's signal
// handlers in the process the abort hung it: a `catalog apply` on a busy machine never returned. A release with
// nothing held (every `catalog apply` / `accounts apply` without a running rater) now starts no thread at all, and
// a pool that was started is ended only once the tasks handed to it have settled.
it('releases held usage after a change the fetch loop noticed first, while new usage flows', async () => {
  const { store, queue, rater, outcome } = await recordingRater()
  await rater.start()
  try {
    const record = (id: string) => ({ event_id: id, source: 'test:flowing', event_time: '2026-10-06T08:00:00Z', device_id: 'fw-flow', metric: 'api_calls', quantity: '1' })
    await queue.publish({ id: 'flow-held', records: [record('h-1'), record('h-2')], rejects: [] })
    expect(await outcome('flow-held')).toMatchObject({ suspended: 2 })
    const accounts = rt.repo.accounts()
    accounts.customers[0]!.accounts[0]!.subscriptions[0]!.devices.push({ device_id: 'fw-flow', from: '2026-10-01T00:00:00Z', to: null })
    // Usage keeps arriving, a batch every 20 ms for 3 s, so the fetch loop is the one that sees the change.
    await new Promise((r) => setTimeout(r, 1100))
    rt.repo.putAccounts(validateAccounts(accounts))
    for (let i = 0; i < 150; i++) {
      await queue.publish({ id: `flow-${i}`, records: [record(`n-${i}`)], rejects: [] })
      await new Promise((r) => setTimeout(r, 20))
    }
    const held = async () => Number((await store.rows<{ n: string }>("SELECT count() AS n FROM suspended_usage FINAL WHERE source = 'test:flowing' AND status = 'held'"))[0]!.n)
    const rated = async () => Number((await store.rows<{ n: string }>("SELECT count() AS n FROM rated_usage WHERE source = 'test:flowing'"))[0]!.n)
    // Every event rated in the end: the two held before the change, and the 150 after it (a few of those may be
    // staged on the old data, held, and released in turn).
    for (let i = 0; i < 100 && ((await held()) > 0 || (await rated()) < 152); i++) await new Promise((r) => setTimeout(r, 100))
    expect([await held(), await rated()]).toEqual([0, 152])
  } finally {
    await rater.stop()
  }
}, 60_000)

it('a release-only rater with nothing held starts no staging thread; one with held rows starts one and ends it after its task', async () => {
  // piscina creates its threads through this module's Worker, read at each creation: count them.
  const threads = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads')
  const Original = threads.Worker
  let created = 0
  threads.Worker = class extends Original {
    constructor(...args: ConstructorParameters<typeof Original>) {
      super(...args)
      created++
    }
  }
  try {
    const store = await rt.store()
    const held = async () =>
      Number((await store.rows<{ n: string }>("SELECT count() AS n FROM suspended_usage FINAL WHERE status = 'held'"))[0]!.n)
    expect(await held()).toBe(1) // e-05b of the test before, on a device nobody binds
    for (let i = 0; i < 3; i++) await Rater.releaseOnly({ store, repo: rt.repo, dataDir: dir, log: rt.log })
    // The held row is read and staged, so each release starts a thread, and ends it once its task has settled.
    expect(created).toBe(3)
    await store.command("ALTER TABLE suspended_usage DELETE WHERE event_id = 'e-05b' SETTINGS mutations_sync = 1")
    expect(await held()).toBe(0)
    created = 0
    for (let i = 0; i < 3; i++) expect(await Rater.releaseOnly({ store, repo: rt.repo, dataDir: dir, log: rt.log })).toBe(0)
    expect(created).toBe(0)
  } finally {
    threads.Worker = Original
  }
})

// A rater stalled past its lease's lapse (a long pause, a network split) may have been replaced, and the new
// rater's recovery deletes the rows of the flush the stalled one is about to commit. It must not commit then.
it('does not commit a flush when its lease may have lapsed: the rater fails, and no flushes row names the batch', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
  const failed = new Promise<Error>((resolve) => rater.on('error', (err: Error) => resolve(err)))
  await rater.start()
  // As if the last renewal were a minute ago (the renewals' timer has not fired in that time).
  ;(rater as unknown as { lease: { renewedAt: number } }).lease.renewedAt = performance.now() - 60_000
  await queue.publish({
    id: 'stale-lease-1',
    records: [{ event_id: 'sl-1', source: 'test:stale-lease', event_time: '2026-10-05T10:00:00Z', device_id: deviceId(1, 1), metric: 'api_calls', quantity: '1' }],
    rejects: [],
  })
  expect((await failed).message).toMatch(/not committing: the rater lease on the USAGE stream may have lapsed/)
  await expect(rater.stop()).rejects.toThrow(/may have lapsed/)
  const committed = await store.rows<{ n: string }>("SELECT count() AS n FROM flushes WHERE has(batches, 'stale-lease-1')")
  expect(Number(committed[0]!.n)).toBe(0)
  // Nor did it write the flush's rows: they could have landed beside the next rater's rows of the same keys.
  const written = await store.rows<{ n: string }>("SELECT count() AS n FROM usage_events WHERE batch_id = 'stale-lease-1'")
  expect(Number(written[0]!.n)).toBe(0)
  // The batch was not acked: the next rater (a fresh lease) rates it.
  const next = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
  const outcome = new Promise<BatchOutcome>((resolve) => next.on('outcome', (o: BatchOutcome) => o.batchId === 'stale-lease-1' && resolve(o)))
  await next.start()
  try {
    expect(await outcome).toMatchObject({ read: 1, rated: 1 })
  } finally {
    await next.stop()
  }
})

// `run` and `ingest --wait` stop a rater whose start() threw. A start that failed part way through folding the stored
// rated rows holds totals short of the rows not folded yet: stop() must not record them as a checkpoint.
it('records no checkpoint of its totals when its start failed part way through folding the stored rows', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const { rater: first, outcome: rated3 } = await startedRater('partial-fold-1')
  try {
    const record = (id: string) => ({ event_id: id, source: 'test:partial-fold', event_time: '2026-10-07T10:00:00Z', device_id: deviceId(1, 1), metric: 'api_calls', quantity: '2' })
    await queue.publish({ id: 'partial-fold-1', records: [record('pf-1'), record('pf-2'), record('pf-3')], rejects: [] })
    expect(await rated3).toMatchObject({ rated: 3 })
  } finally {
    await first.stop()
  }
  // No checkpoint: the next start folds every stored rated row, one row a page.
  await store.command('TRUNCATE TABLE rating_checkpoints')
  const [rated] = await store.rows<{ n: string }>('SELECT count() AS n FROM rated_usage')
  expect(Number(rated!.n)).toBeGreaterThan(2)
  let pages = 0
  const failing = Object.create(store, {
    rows: {
      value: async (sql: string, params?: Record<string, unknown>) => {
        if (sql.includes('FROM rated_usage AS k') && ++pages === 2) throw new Error('the store went away')
        return store.rows(sql, params)
      },
    },
  }) as typeof store
  const rater = new Rater({ store: failing, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log }, { ...DEFAULT_RATER, loadPageRows: 1 })
  await expect(rater.start()).rejects.toThrow(/the store went away/)
  await rater.stop()
  expect(await store.rows('SELECT flush_id FROM rating_checkpoints')).toEqual([])
  // A start that folds everything does record one when it stops.
  const whole = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log })
  await whole.start()
  await whole.stop()
  expect(await store.rows<{ rows: string }>('SELECT count() AS rows FROM rating_checkpoints')).not.toEqual([{ rows: '0' }])
})

// A stalled rater that lost the stream may still insert rows it will never commit; their batches come to the new
// rater again. The new rater reads a source's keys when its first batch comes, which may be after such rows landed:
// it must take only committed keys, or the redelivered events would be dropped as duplicates.
it("does not take a row no flush committed for a key: that event is rated, not a duplicate", async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const { rater, outcome } = await startedRater('after-orphan-1')
  try {
    // The stalled rater's row: in usage_events, its batch named by no `flushes` row. An hour ago: inside the dedupe
    // horizon, so the rater reads this source's keys into memory when its batch comes.
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString()
    await store.insertTsv(
      'usage_events',
      `test:orphan\to-1\t${hourAgo.replace('T', ' ').replace('Z', '')}\t${deviceId(1, 1)}\t\t\tapi_calls\t1\t{}\t${hourAgo.replace('T', ' ').replace('Z', '')}\torphan-batch-1\n`,
    )
    await queue.publish({
      id: 'after-orphan-1',
      records: [{ event_id: 'o-1', source: 'test:orphan', event_time: hourAgo, device_id: deviceId(1, 1), metric: 'api_calls', quantity: '1' }],
      rejects: [],
    })
    expect(await outcome).toMatchObject({ read: 1, rated: 1, duplicates: 0 })
  } finally {
    await rater.stop()
  }
})

it('a checkpoint is due after checkpointRows rated rows, but no sooner than there are totals or than its last text cost', () => {
  expect(checkpointDue(100_000, 400, 40_000)).toBe(100_000)
  // More totals than rows between checkpoints: a row per total.
  expect(checkpointDue(100_000, 250_000, 0)).toBe(250_000)
  // Totals that keep every reading (time_weighted_avg) or value (unique_count): 300 MB of state is due every 1,000,000 rows.
  expect(checkpointDue(100_000, 400, 300_000_000)).toBe(1_000_000)
  expect(checkpointDue(1, 0, 0)).toBe(1)
})

// A rater that runs for months holds only the keys inside the late-arrival horizon. An event before it may repeat a
// key the index dropped, or one committed before the rater started and never loaded: the store's committed keys
// decide. Each half fails when late events are not checked against the store (their duplicates are rated again).
it('events before the dedupe horizon are still duplicates once their keys left memory, in the same rater and after a restart', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const options = { ...DEFAULT_RATER, dedupeHorizonMs: 3_600_000 }
  let clock = Date.parse('2026-10-08T10:30:00Z')
  const at = '2026-10-08T10:00:00Z'
  const rec = (id: string) => ({ event_id: id, source: 'test:horizon', event_time: at, device_id: deviceId(1, 1), metric: 'api_calls', quantity: '1' })
  const outcomes = new Map<string, BatchOutcome>()
  const waiters = new Map<string, (o: BatchOutcome) => void>()
  const outcomeOf = (id: string) => new Promise<BatchOutcome>((resolve) => (outcomes.has(id) ? resolve(outcomes.get(id)!) : waiters.set(id, resolve)))
  const newRater = () => {
    const r = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log, now: () => clock }, options)
    r.on('outcome', (o: BatchOutcome) => {
      outcomes.set(o.batchId, o)
      waiters.get(o.batchId)?.(o)
    })
    return r
  }
  const first = newRater()
  await first.start()
  try {
    await queue.publish({ id: 'horizon-1', records: [rec('hz-1'), rec('hz-2'), rec('hz-3')], rejects: [] })
    expect(await outcomeOf('horizon-1')).toMatchObject({ read: 3, rated: 3, duplicates: 0 })
    // Three and a half hours on: the keys accepted at 10:30 are past the 1-hour horizon and dropped from memory.
    clock = Date.parse('2026-10-08T14:00:00Z')
    await queue.publish({ id: 'horizon-2', records: [rec('hz-1'), rec('hz-4'), rec('hz-4')], rejects: [] })
    expect(await outcomeOf('horizon-2')).toMatchObject({ read: 3, rated: 1, duplicates: 2 })
  } finally {
    await first.stop()
  }
  // A new rater loads no key of this source (all are before its horizon) and finds them in the store. Only committed
  // rows count: hz-6's row, which no flush committed (a stalled rater's), does not make hz-6 a duplicate.
  const second = newRater()
  await second.start()
  try {
    await store.insertTsv(
      'usage_events',
      `test:horizon\thz-6\t2026-10-08 10:00:00.000\t${deviceId(1, 1)}\t\t\tapi_calls\t1\t{}\t2026-10-08 10:00:01.000\thorizon-orphan\n`,
    )
    await queue.publish({ id: 'horizon-3', records: [rec('hz-2'), rec('hz-4'), rec('hz-5'), rec('hz-6')], rejects: [] })
    expect(await outcomeOf('horizon-3')).toMatchObject({ read: 4, rated: 2, duplicates: 2 })
  } finally {
    await second.stop()
  }
  const [n] = await store.rows<{ n: string }>(`SELECT count() AS n FROM rated_usage WHERE source = 'test:horizon'`)
  expect(n!.n).toBe('6')
})

// Every row a batch keeps is written exactly, whatever else the batch holds: a duplicate inside the batch and one of an
// earlier batch, a held event, quantities and amounts of 20 and more digits, and non-ASCII text in an event id and a
// dimension (its group key).
it('writes every kept row exactly, around duplicates, held events, long quantities and amounts, and non-ASCII text', async () => {
  const { rater, outcome } = await startedRater('rows-2')
  const store = await rt.store()
  const queue = await rt.queue()
  try {
    const at = '2026-10-07T09:00:00Z'
    const ev = (event_id: string, quantity: string, extra: Record<string, unknown> = {}) => ({
      event_id, source: 'test:rows', event_time: at, device_id: deviceId(1, 1), metric: 'api_calls', quantity, ...extra,
    })
    const first = new Promise<BatchOutcome>((resolve) => rater.on('outcome', (o: BatchOutcome) => o.batchId === 'rows-1' && resolve(o)))
    await queue.publish({
      id: 'rows-1',
      records: [
        ev('r-1', '3'),
        ev('r-1', '3'),
        ev('r-2', '123456789012345678.5'),
        ev('r-3', '1', { device_id: 'fw-nobody' }),
        ev('r-4', '5'),
      ],
      rejects: [],
    })
    expect(await first).toMatchObject({ read: 5, rated: 3, duplicates: 1, suspended: 1 })
    await queue.publish({
      id: 'rows-2',
      records: [
        ev('r-4', '5'),
        ev('r-ü', '2000000000', { metric: 'bytes_out', dimensions: { region: 'zürich' } }),
        ev('r-5', '98765432109876543210'),
        ev('r-6', '7'),
      ],
      rejects: [],
    })
    expect(await outcome).toMatchObject({ read: 4, rated: 3, duplicates: 1, suspended: 0 })
    const rated = await store.rows<{ event_id: string; group_key: string; quantity: string; amount: string }>(
      "SELECT event_id, group_key, toString(quantity) AS quantity, toString(amount) AS amount FROM rated_usage WHERE source = 'test:rows' ORDER BY event_id",
    )
    expect(rated).toEqual([
      { event_id: 'r-1', group_key: '', quantity: '3', amount: '0.0012' },
      { event_id: 'r-2', group_key: '', quantity: '123456789012345678.5', amount: '49382715604938.2714' },
      { event_id: 'r-4', group_key: '', quantity: '5', amount: '0.002' },
      { event_id: 'r-5', group_key: '', quantity: '98765432109876543210', amount: '39506172843950617.284' },
      { event_id: 'r-6', group_key: '', quantity: '7', amount: '0.0028' },
      { event_id: 'r-ü', group_key: '["zürich"]', quantity: '2', amount: '0.16' },
    ])
    const usage = await store.rows<{ event_id: string; quantity: string; dimensions: Record<string, string> }>(
      "SELECT event_id, toString(quantity) AS quantity, dimensions FROM usage_events WHERE source = 'test:rows' ORDER BY event_id",
    )
    expect(usage.map((u) => [u.event_id, u.quantity])).toEqual([
      ['r-1', '3'], ['r-2', '123456789012345678.5'], ['r-3', '1'], ['r-4', '5'], ['r-5', '98765432109876543210'], ['r-6', '7'], ['r-ü', '2000000000'],
    ])
    expect(usage.find((u) => u.event_id === 'r-ü')!.dimensions).toEqual({ region: 'zürich' })
  } finally {
    await rater.stop()
  }
})

/** Publishes one api_calls event of `source` as batch `id` (the event id too) and returns its outcome once committed. */
async function rateOne(rater: InstanceType<typeof Rater>, id: string, source: string): Promise<BatchOutcome> {
  const done = new Promise<BatchOutcome>((resolve) => rater.on('outcome', (o: BatchOutcome) => o.batchId === id && resolve(o)))
  await (await rt.queue()).publish({
    id,
    records: [{ event_id: id, source, event_time: '2026-10-08T10:00:00Z', device_id: deviceId(1, 1), metric: 'api_calls', quantity: '1' }],
    rejects: [],
  })
  return done
}

// A committed flush's intent is needed by nothing, and a `rateflow run` that ran for months left millions for its next
// start to read and drop. The rater now deletes its committed flushes' intents as it goes, keeping the newest.
it('deletes the intents of the flushes it committed as it goes, keeping the newest', async () => {
  const store = await rt.store()
  const queue = await rt.queue()
  const intents = async () => Number((await store.rows<{ n: string }>('SELECT count() AS n FROM flush_intents'))[0]!.n)
  const before = await intents()
  const rater = new Rater({ store, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log }, { ...DEFAULT_RATER, flushRows: 1, pruneIntentsAfter: 3 })
  await rater.start()
  try {
    for (let i = 1; i <= 5; i++) expect(await rateOne(rater, `prune-${i}`, 'test:prune')).toMatchObject({ rated: 1 })
    // Five flushes with rows: pruned after the third (one left) and after the fifth (one left).
    expect(await intents()).toBe(before + 1)
    const [newest] = await store.rows<{ flush_id: string }>('SELECT flush_id FROM flushes ORDER BY committed_at DESC LIMIT 1')
    expect(await store.rows('SELECT flush_id FROM flush_intents WHERE flush_id = {f:String}', { f: newest!.flush_id })).toHaveLength(1)
    expect(Number((await store.rows<{ n: string }>("SELECT count() AS n FROM rated_usage WHERE source = 'test:prune'"))[0]!.n)).toBe(5)
  } finally {
    await rater.stop()
  }
})

it('goes on rating when deleting committed intents fails: the flushes stand, the intents stay for the next start', async () => {
  const real = await rt.store()
  const queue = await rt.queue()
  const failing = { ...real, command: async (sql: string) => (sql.startsWith('DELETE FROM flush_intents') ? Promise.reject(new Error('store busy')) : real.command(sql)) }
  const intents = async () => Number((await real.rows<{ n: string }>('SELECT count() AS n FROM flush_intents'))[0]!.n)
  const before = await intents()
  const rater = new Rater({ store: failing, queue, ownsQueue: true, repo: rt.repo, dataDir: dir, log: rt.log }, { ...DEFAULT_RATER, flushRows: 1, pruneIntentsAfter: 2 })
  await rater.start()
  try {
    for (let i = 1; i <= 3; i++) expect(await rateOne(rater, `prune-fails-${i}`, 'test:prune-fails')).toMatchObject({ rated: 1 })
    expect(await intents()).toBe(before + 3)
  } finally {
    await rater.stop()
  }
})

it('eachPage stops between pages when told to (a stopping rater ends a release there; each page is committed)', async () => {
  const asked: string[] = []
  const store = {
    rows: async (sql: string) => {
      asked.push(sql)
      return [{ id: `r${asked.length}a` }, { id: `r${asked.length}b` }]
    },
  } as unknown as Store
  const seen: string[] = []
  let stopping = false
  await eachPage<{ id: string }>(store, 2, ['id'], ['String'], (where, limit) => `SELECT id FROM t AS k WHERE ${where} ORDER BY id ${limit}`, (rows) => {
    seen.push(...rows.map((r) => r.id))
    if (seen.length >= 4) stopping = true
  }, {}, () => stopping)
  // Full pages every time: without the stop it would never end.
  expect(seen).toEqual(['r1a', 'r1b', 'r2a', 'r2b'])
  expect(asked).toHaveLength(2)
})
