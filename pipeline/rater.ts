import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import type { Consumer, JsMsg } from '@nats-io/jetstream'
import { GuidingIndex } from '../catalog/guiding.js'
import { billingPeriod } from '../catalog/periods.js'
import type { CatalogRepository } from '../catalog/repository.js'
import type { Logger } from '../common/logger.js'
import { namedInteger } from '../common/env.js'
import { ErrorCode, RateflowError, ValidationError, type Problem } from '../common/errors.js'
import { isoUtc } from '../common/time.js'
import type { UsageBatch, WireRecord } from '../rating-core/record.js'
import { chargeRef, rejectLine, stagedReject, totalsKey, type StagedBatch, type StagedRecord } from '../rating-core/stage.js'
import { chargeTable, RunningTotals, type ResolvedCharge } from '../rating-core/running-totals.js'
import { meterStateOf, type MeterState } from '../rating-core/usage-rater.js'
import { compareUtf8, detached } from '../common/strings.js'
import { HorizonIndex } from '../rating-core/dedupe-horizon.js'
import { USAGE_STREAM, type Queue } from './queue.js'
import type { StageTask } from './rating-worker.js'
import { decodeStaged, type StagedWire } from './staged-wire.js'
import { committedBatches, committedBatchLines, PRUNE_INTENTS, RELEASE_BATCH_PREFIX, type CommittedLookup, type Store } from './store.js'
import { DEFAULT_LEASE_TTL_MS, RaterLease } from './rater-lease.js'
import { chString, chTime, chTimeMs, fromTsv, tsv, tsvArray, tsvMap } from './tsv.js'

/** What became of one batch's inputs. Conservation: read = rated + duplicates + rejected + suspended. */
export interface BatchOutcome {
  readonly batchId: string
  readonly read: number
  readonly rated: number
  readonly duplicates: number
  readonly rejected: number
  readonly suspended: number
}

export interface RaterOptions {
  /** Worker threads staging batches. */
  readonly threads: number
  /** Batches staged ahead of the one being applied (bounds memory). */
  readonly stageAhead: number
  /** Flush when this many rows are buffered… */
  readonly flushRows: number
  /** …or when nothing more is ready to apply. */
  readonly pollMs: number
  /** Held rows a release reads, stages and commits at a time (bounds its memory however much usage waits). */
  readonly releasePageRows: number
  /** Stored rows start() reads at a time to rebuild the dedupe index and the running totals. */
  readonly loadPageRows: number
  /**
   * A flush writes a checkpoint of the running totals once this many rated rows were folded since the last one
   * (and never before as many as there are totals: a checkpoint costs a row per total, so that bounds its cost to
   * one row per rated row). stop() writes one too. A start folds only the rows committed after the latest.
   */
  readonly checkpointRows: number
  /**
   * The late-arrival horizon of dedupe, ms: keys are held in memory while their event time (or their acceptance,
   * when later) is within it; an event older than it is checked against the store's committed keys instead
   * (rating-core/dedupe-horizon.ts). Bounds the memory of a rater that runs for months.
   */
  readonly dedupeHorizonMs: number
  /**
   * Once this many flushes committed by this rater have intents, those intents but the newest are deleted (a committed
   * flush's intent is needed by nothing): a `rateflow run` that runs for months does not pile them up for its next
   * start to read and drop (store.ts recover()).
   */
  readonly pruneIntentsAfter: number
}
export const DEFAULT_RATER: Readonly<RaterOptions> = Object.freeze({
  threads: 1,
  stageAhead: 16,
  flushRows: 100_000,
  pollMs: 1000,
  releasePageRows: 10_000,
  loadPageRows: 500_000,
  checkpointRows: 100_000,
  dedupeHorizonMs: 7 * 24 * 3_600_000,
  pruneIntentsAfter: PRUNE_INTENTS,
})

/**
 * Rater options from the environment, over the defaults: RATEFLOW_THREADS (1–64 pool threads),
 * RATEFLOW_FLUSH_ROWS (rows buffered before a flush, ≥ 1), RATEFLOW_LOAD_PAGE_ROWS (stored rows read at a time
 * when the rater starts, ≥ 1), RATEFLOW_CHECKPOINT_ROWS (rated rows between checkpoints of the running totals,
 * ≥ 1) and RATEFLOW_DEDUPE_HORIZON_HOURS (the late-arrival horizon of dedupe, 1 to 87,600 hours; default 168, a
 * week). Bad values throw a ValidationError naming each.
 */
export function raterOptionsFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): RaterOptions {
  const problems: Problem[] = []
  const int = (name: string, min: number, max: number, fallback: number): number => namedInteger(env, name, { min, max }, fallback, problems)
  const options: RaterOptions = {
    ...DEFAULT_RATER,
    threads: int('RATEFLOW_THREADS', 1, 64, DEFAULT_RATER.threads),
    flushRows: int('RATEFLOW_FLUSH_ROWS', 1, 10_000_000, DEFAULT_RATER.flushRows),
    loadPageRows: int('RATEFLOW_LOAD_PAGE_ROWS', 1, 10_000_000, DEFAULT_RATER.loadPageRows),
    checkpointRows: int('RATEFLOW_CHECKPOINT_ROWS', 1, 1_000_000_000, DEFAULT_RATER.checkpointRows),
    dedupeHorizonMs: int('RATEFLOW_DEDUPE_HORIZON_HOURS', 1, 87_600, DEFAULT_RATER.dedupeHorizonMs / 3_600_000) * 3_600_000,
  }
  if (problems.length) throw new ValidationError('environment', problems)
  return options
}

/** What a rater works with. `queue` is absent for a release-only rater (`releaseOnly`). */
export interface RaterDeps {
  store: Store
  queue?: Queue
  /** The queue is this process's own local nats-server (its data directory's lock): any lease found there is a killed predecessor's. */
  ownsQueue?: boolean
  repo: CatalogRepository
  dataDir: string
  log: Logger
  /** The clock of the dedupe horizon, epoch ms (Date.now; tests move it). */
  now?: () => number
}

interface Pending {
  msg?: JsMsg
  /** The worker's answer, still encoded: decoded just before it is applied (see stage()). */
  staged: Promise<StagedWire>
  release?: Map<string, HeldRow>
}

/** A stored rated_usage row, with its event's quantity and dimensions from usage_events, as rebuildTotals reads it. */
interface StoredRated {
  event_id: string
  source: string
  subscription_id: string
  charge_id: string
  plan_id: string
  catalog_version: string
  group_key: string
  period_start: string
  event_time: string
  quantity: string
  dims: Record<string, string>
}

interface HeldRow {
  source: string
  event_id: string
  event_time: string
  device_id: string
  account_id: string
  subscription_id: string
  metric: string
  quantity: string
  dimensions: Record<string, string>
  raw: string
  origin: string
  reason: string
  received_at: string
}

/**
 * The rater: the single owner of rating state for the partitions it consumes (today: all accounts).
 *
 * Per batch, in delivery order:
 *   1. a pool worker stages it (pure: validate, guide, match charges, TSV text);
 *   2. here: dedupe on (source, event_id) against the index of accepted keys (committed, in flight or in the
 *      buffer; an accepted key joins it at once), then fold each charge's running period total (invariant 4)
 *      — both need every earlier batch, so they run in order;
 *   3. flush: insert its intent (flush_intents: the batches it is about to write), rated_usage, rejected_usage,
 *      suspended_usage, then usage_events, then (every `checkpointRows` rated rows, and at stop) a checkpoint of
 *      the running totals, then the `flushes` row naming the batches — that row is the commit;
 *   4. ack the batches' JetStream messages;
 *   5. emit outcomes.
 * A crash before 3 ends: nothing committed, `store.recover()` deletes the partial rows at start (and the start drops
 * the flush's checkpoint), JetStream redelivers. A crash between 3 and 4: the batches come again and their keys are
 * committed → duplicates. A failed insert stops the rater (crash-only): state in memory is rebuilt from the store on
 * restart (the key index from usage_events; the totals from the latest committed checkpoint and the rated rows
 * committed after it), so keys and totals may run ahead of the commits while it runs.
 */
export class Rater extends EventEmitter {
  /** The right to rate the USAGE stream (rater-lease.ts), held from start() to stop() when there is a queue. */
  private lease: RaterLease | undefined
  /** The staging threads: started by start(), or by the first batch a release stages (see closePool). */
  private pool: Piscina<StageTask, StagedWire> | undefined
  /** Staging tasks not settled yet: the pool is destroyed only once none is left. */
  private readonly tasks = new Set<Promise<StagedWire>>()
  /**
   * Dedupe index: keys of every accepted record (committed, in a flush in flight, or buffered) of the sources in
   * `keysLoaded`, as long as they are inside the late-arrival horizon (dedupe-horizon.ts). A source's committed keys
   * inside it are read from the store when the rater first meets the source (loadKeysOf), before any of its records
   * is deduped: a key is (source, event_id), so no other source's keys can make one of its events a duplicate.
   * Events before the horizon are checked against the store's committed keys (lateDuplicates).
   */
  private readonly accepted: HorizonIndex
  /** Sources whose keys were read, each with whether the store held rows of it before the horizon then (committed or not). */
  private readonly keysLoaded = new Map<string, { olderKeys: boolean }>()
  private readonly now: () => number
  /** When the dedupe index last dropped keys past the horizon (ms of `now`). */
  private lastEvict = 0
  /** Events before the horizon checked against the store, and how many of them it held (duplicates): for the log. */
  private lateChecked = 0
  private lateFound = 0
  private charges = new Map<string, ResolvedCharge>()
  /**
   * Some charge's total depends on the order its events are folded in (percentage or time_rated with free units: the
   * allowance goes to the events folded first). A batch's events are then folded in the order a start's rebuild folds stored rows
   * (rated_at, event_time, event_id, source), so a crash and rerun give the same amounts as one run.
   */
  private foldInStoredOrder = false
  /** The last batch stamp (received_at / rated_at, ms): strictly increasing, so no two batches share one. */
  private lastStampMs = 0
  /**
   * Set while a release runs: the fetch loop waits for it before stamping a batch. A batch stamped before a release
   * page but applied after it would be folded after the page by this rater and before it by a start's rebuild.
   */
  private releasing: Promise<unknown> | undefined
  // A charge a pool thread staged but this thread's snapshot lacks: guiding data changed after this thread last
  // read it; read it again now (only if the files did change), rather than reject the event.
  private readonly totals = new RunningTotals(
    this.charges,
    () => this.reloadGuiding(),
    (subscriptionId) => this.guiding.subscriptionOwner(subscriptionId)?.endMs ?? Infinity,
  )
  private guiding!: GuidingIndex
  private fingerprint = ''
  private queueOfWork: Pending[] = []
  private wake: (() => void) | undefined
  private stopping = false
  /** Set by settleReleases: no more batches are taken from the stream. */
  private intakeClosed = false
  /** Stopping, or done with intake (settleReleases): the fetch loop takes no more batches, and gives back any it gets. */
  private get takesNoBatches(): boolean {
    return this.stopping || this.intakeClosed
  }
  private loop: Promise<void> | undefined
  /** The flush being committed (resolved when none); flushes chain on it to commit in order. */
  private committing: Promise<void> = Promise.resolve()
  /** Flushes handed off and not yet committed (or failed). */
  private inFlight = 0
  private fetcher: Promise<void> | undefined
  private messages: Awaited<ReturnType<Consumer['consume']>> | undefined
  private buffered = emptyBuffer()
  private failure: unknown
  private releaseRequested = false
  /** Rated rows folded into the totals since the last checkpoint was taken (a start's fold of stored rows included). */
  private rowsSinceCheckpoint = 0
  /** The totals hold every committed row (rebuildTotals finished): only then may a checkpoint record them. */
  private totalsComplete = false
  /** The size of the last checkpoint's text: the next is due no sooner than as many rated rows' text was written. */
  private lastCheckpointChars = 0
  /** The flush of the latest committed checkpoint: its partition is dropped once a newer one commits. */
  private checkpointId: string | undefined
  /** Flushes this rater committed whose intents are still stored, oldest first. */
  private committedIntents: string[] = []
  /** committed_at of the last `flushes` row, ms: each commit's is later, so "committed after a checkpoint" is exact. */
  private lastCommitMs = 0

  constructor(
    private readonly deps: RaterDeps,
    private readonly options: RaterOptions = DEFAULT_RATER,
  ) {
    super()
    this.accepted = new HorizonIndex(options.dedupeHorizonMs)
    this.now = deps.now ?? Date.now
  }

  /** Recovers the store, rebuilds state, releases suspended usage that can now be guided, starts consuming. */
  async start(): Promise<void> {
    const { store, log } = this.deps
    // First, before recovery deletes rows of uncommitted flushes: another rater's flush in flight is one of them.
    await this.takeLease()
    this.reloadGuiding(true)
    // The staging threads start now and load their code and guiding data while the store is read below. An empty
    // batch is their first task: stop() then waits for it, so no thread is ended while it is still loading.
    const empty: UsageBatch = { id: 'start', records: [], rejects: [] }
    for (let i = 0; i < this.options.threads; i++) {
      void this.stage({ batch: empty, dataDir: this.deps.dataDir, fingerprint: this.fingerprint, receivedAtMs: Date.now() }).catch(() => undefined)
    }
    const t0 = performance.now()
    const rolledBack = await store.recover()
    if (rolledBack > 0) log.warn({ rolledBack }, 'deleted rows of flushes that never committed; their batches are redelivered')
    await this.seedStamps()
    const t1 = performance.now()
    const rebuilt = await this.rebuildTotals()
    const t2 = performance.now()
    // The dedupe keys are read per source, when its first batch arrives (loadKeysOf).
    log.info({ recoverMs: Math.round(t1 - t0), totals: this.totals.size, ...rebuilt, totalsMs: Math.round(t2 - t1) }, 'rater state rebuilt from the store')
    this.releaseRequested = true
    // The lease makes this the stream's only rater: its predecessor's unacked batches come again now, in order.
    if (this.lease) await this.deps.queue?.resetConsumer()
    this.loop = this.applyLoop().catch((err) => this.fail(err))
    this.fetcher = this.fetchLoop().catch((err) => this.fail(err))
  }

  /**
   * Rates suspended usage that guiding data can now own, without consuming the queue: what
   * `accounts apply` / `catalog apply` do when no `rateflow run` owns the data directory. `options` are the
   * RATEFLOW_* knobs (raterOptionsFromEnv), but for the threads.
   */
  static async releaseOnly(deps: RaterDeps, options: RaterOptions = DEFAULT_RATER): Promise<number> {
    // One staging thread: a release stages a page at a time.
    const rater = new Rater(deps, { ...options, threads: 1 })
    try {
      // With a queue (a shared store or queue), only while no rater holds the stream: it releases by itself.
      await rater.takeLease()
      await deps.store.recover()
      await rater.seedStamps()
      rater.reloadGuiding(true)
      await rater.rebuildTotals()
      const released = await rater.releaseSuspended()
      await rater.checkpoint()
      if (rater.failure !== undefined) throw rater.failure
      return released
    } finally {
      await rater.closePool()
      await rater.lease?.release()
    }
  }

  private async takeLease(): Promise<void> {
    const { queue, ownsQueue, dataDir } = this.deps
    if (!queue) return
    // A rater that runs its own nats-server owns the data directory (its lock): a lease left by a killed
    // predecessor there is taken over at once.
    this.lease = await RaterLease.acquire(queue.nc, dataDir, {
      ttlMs: DEFAULT_LEASE_TTL_MS,
      force: ownsQueue === true,
      onLost: (err) => this.fail(err),
      onRenewFailed: (err) => this.deps.log.warn({ err: err.message }, 'could not renew the rater lease; trying again'),
    })
  }

  /** Stops consuming, applies and flushes what was fetched, and releases the pool. */
  async stop(): Promise<void> {
    this.stopping = true
    this.messages?.stop()
    await this.fetcher
    this.kick()
    await this.loop
    await this.committing
    // Every batch applied is committed now: a checkpoint of the totals lets the next start skip folding them.
    await this.checkpoint()
    await this.closePool()
    await this.lease?.release()
    if (this.failure !== undefined) throw this.failure
  }

  /**
   * Ends the staging threads, once every task handed to them has settled. Why wait: ending a worker thread while
   * it is still loading its modules is a fatal V8 error in Node 20 (Module::IsGraphAsync): a `catalog apply` on a
   * busy machine aborted (and hung, until the store made abort() end the process: store.ts endOnAbort). A thread that
   * has answered a task has loaded its code.
   */
  private async closePool(): Promise<void> {
    const pool = this.pool
    if (pool === undefined) return
    await Promise.allSettled([...this.tasks])
    this.pool = undefined
    await pool.destroy()
  }

  /**
   * Takes no more batches from the stream (those fetched are applied), then resolves once no release of held usage is
   * asked for or running, after reading the guiding data once more (a change asks for one), or when the rater stops or
   * fails. `ingest csv --wait` waits for it before it stops: a stop ends a release between pages, and an `accounts
   * apply` beside it, which leaves the release to this process, left the rest of the usage it owns held until some
   * later rater started. Intake ends first because a release runs when the rater is idle: other processes' batches
   * flowing in would hold it off, and the command, for as long as they came.
   */
  async settleReleases(): Promise<void> {
    this.intakeClosed = true
    this.messages?.stop()
    await this.fetcher
    this.reloadGuiding()
    this.kick()
    while ((this.releaseRequested || this.releasing !== undefined) && this.failure === undefined && !this.stopping) {
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** Asks for a release of suspended usage on the next idle moment (after guiding data changed). */
  requestRelease(): void {
    this.releaseRequested = true
    this.kick()
  }

  private fail(err: unknown): void {
    if (this.failure === undefined) {
      this.failure = err
      this.deps.log.error({ err }, 'rater stopped')
      this.emit('error', err)
    }
    this.stopping = true
    this.messages?.stop()
    this.kick()
  }

  /**
   * Stages a batch on the pool and returns the worker's compact answer (see staged-wire.ts), to be decoded
   * just before it is applied. Why not at once: up to `stageAhead` answers wait here, and as objects (a record,
   * its charges and their strings per event) they lived long enough to be copied by the young-generation
   * collector and promoted; encoded, each is one string and one Int32Array, and the objects die young.
   */
  private stage(task: StageTask, transferList: ArrayBuffer[] = []): Promise<StagedWire> {
    this.pool ??= new Piscina<StageTask, StagedWire>({
      filename: fileURLToPath(new URL('./rating-worker.js', import.meta.url)),
      minThreads: this.options.threads,
      maxThreads: this.options.threads,
      // Every fetched batch goes to a worker at once, not when the worker's previous answer has reached this thread:
      // with one task at a time, a worker slept in Atomics.wait after each batch and was woken for the next, ~0.45 ms
      // of its CPU per batch outside staging (0.63–0.76 s per 500 batches against 0.23–0.32 s; 4 alternating runs of
      // 500,000 events). Tasks still run one after the other in each worker, and answers are applied in order.
      concurrentTasksPerWorker: this.options.stageAhead,
    })
    const task$ = this.pool.run(task, { transferList })
    this.tasks.add(task$)
    const settled = () => this.tasks.delete(task$)
    task$.then(settled, settled)
    return task$
  }

  /**
   * Starts the stamps above every suspended_usage version and every flush's commit time stored. Stamps follow the
   * clock, and after a restart with the clock set back (a VM restored, an NTP step) they fell below stored ones: a
   * held event's row and its release are one key of ReplacingMergeTree(version), so a release stamped below its held row
   * lost to it, the event read as held again, and the next release rated it a second time; and a batch's stamp is its
   * rated_at, by which a start's rebuild folds stored rows, so batches stamped below earlier ones were folded before
   * them, and the totals of order-dependent charges (free units with a maximum) priced later events differently. A
   * batch is committed after it is stamped, so its flush's commit time bounds its rated_at (both read cheaply: the
   * flushes table has a row per flush, suspended_usage a few per held event). The latest commit time also starts the
   * commit times (commit(): each strictly later than the one before).
   */
  private async seedStamps(): Promise<void> {
    const [row] = await this.deps.store.rows<{ version: string; committed: string }>(
      `SELECT toString((SELECT toInt64(max(version)) FROM suspended_usage)) AS version,
              toString((SELECT toUnixTimestamp64Milli(max(committed_at)) FROM flushes)) AS committed`,
    )
    const committed = Number(row?.committed ?? 0)
    this.lastCommitMs = Math.max(this.lastCommitMs, committed)
    this.lastStampMs = Math.max(this.lastStampMs, Number(row?.version ?? 0), committed)
  }

  /**
   * A batch's stamp: now, or 1 ms after the last one. A start's rebuild folds stored rows by rated_at first, so two
   * batches of one millisecond would be folded interleaved by event time where they were rated one after the other.
   */
  private stamp(): number {
    this.lastStampMs = Math.max(Date.now(), this.lastStampMs + 1)
    return this.lastStampMs
  }

  private kick(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  private async fetchLoop(): Promise<void> {
    if (!this.deps.queue) throw new Error('rater started without a queue')
    // consume() can end by itself (heartbeats missed on a loaded machine, a consumer recreated): pull again
    // until told to stop, or `ingest --wait` would wait for batches nobody fetches.
    while (!this.takesNoBatches) {
      const consumer = await this.deps.queue.consumer()
      if (this.takesNoBatches) return
      // Ends when the stream or this consumer is gone (deleted by hand while running): the loop then asks for the
      // consumer again, which makes both anew. By default consume() waited, without a word, for someone else to.
      this.messages = await consumer.consume({ max_messages: this.options.stageAhead, expires: 5_000, abort_on_missing_resource: true })
      // stop() may have run while consume() was being set up: it stopped no iterator then, so stop this one.
      if (this.takesNoBatches) this.messages.stop()
      try {
        await this.takeMessages(this.messages)
      } catch (err) {
        if (this.takesNoBatches) return
        this.deps.log.warn({ err }, 'JetStream consume failed (stream or consumer gone?); pulling again')
        await new Promise((r) => setTimeout(r, 200))
        continue
      }
      if (!this.takesNoBatches) this.deps.log.warn('JetStream consume ended; pulling again')
    }
  }

  /** Hands each fetched message to the pool, in order, until the iterator ends (or throws). */
  private async takeMessages(messages: AsyncIterable<JsMsg>): Promise<void> {
    for await (const msg of messages) {
      if (this.takesNoBatches) {
        msg.nak()
        continue
      }
      this.checkGuiding()
      while (this.releasing !== undefined) await this.releasing
      // A copy: NATS reads several messages into one shared buffer, and transferring that buffer
      // would detach the other messages' bytes.
      const bytes = new Uint8Array(msg.data)
      this.queueOfWork.push({
        msg,
        staged: this.stage(
          {
            bytes,
            dataDir: this.deps.dataDir,
            fingerprint: this.fingerprint,
            receivedAtMs: this.stamp(),
            origin: `stream ${USAGE_STREAM} message ${msg.seq}`,
            messageId: msg.headers?.get('Nats-Msg-Id') || `${USAGE_STREAM}:${msg.seq}`,
          },
          [bytes.buffer as ArrayBuffer],
        ),
      })
      this.kick()
      while (this.queueOfWork.length >= this.options.stageAhead && !this.stopping) {
        await new Promise((r) => setTimeout(r, 1))
      }
    }
  }

  private async applyLoop(): Promise<void> {
    for (;;) {
      if (this.failure !== undefined) return
      const next = this.queueOfWork.shift()
      if (next) {
        const staged = decodeStaged(await next.staged)
        await this.loadKeysOf(staged)
        const now = this.now()
        this.maybeEvict(now)
        this.apply(staged, next, now, next.release ? undefined : await this.lateDuplicates(staged, now))
        if (this.buffered.rows >= this.options.flushRows) await this.flush()
        continue
      }
      if (this.buffered.msgs.length > 0 || this.buffered.outcomes.length > 0) {
        // Nothing ready: commit what we have, so latency stays low when the input is slow. While a commit is
        // in flight, wait for it instead (woken when it ends or work arrives): a hand-off now would block on it
        // anyway, and the short gaps between pulls made many small flushes, which cost more per row (measured:
        // 30,000-row flushes 36–44k events/s end to end against 52k at 100,000).
        if (this.inFlight === 0) {
          await this.flush()
          continue
        }
      } else {
        this.maybeReloadGuiding()
        if (this.releaseRequested) {
          this.releaseRequested = false
          await this.releaseSuspended()
          continue
        }
        if (this.stopping) return
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve
        setTimeout(resolve, this.options.pollMs).unref()
      })
    }
  }

  /**
   * `now`: the dedupe horizon's clock for this batch. `late`: the keys (source\0event_id) of this batch's events
   * before the horizon that the store holds committed already (duplicates the index no longer holds).
   */
  private apply(staged: StagedBatch, pending: Pending, now: number, late?: ReadonlySet<string>): void {
    const b = this.buffered
    // This batch's rows, one string per table, flattened into the buffer at the end: the buffer then holds a
    // few hundred flat strings per flush, not a rope of every row that keeps every batch's wire text alive.
    let ratedRows = ''
    let rejectedRows = ''
    let suspendedRows = ''
    let usage = ''
    let duplicates = 0
    let rated = 0
    let suspended = 0
    let rejected = 0
    const rejectedHere = staged.rejectLines.length
    for (const line of staged.rejectLines) rejectedRows += line
    // 1. In arrival order: dedupe (the first of two events with one key wins), then held and refused events. 2. The accepted ones
    // folded into the totals, in arrival order, or in the order a rebuild folds stored rows (foldInStoredOrder).
    const toRate: StagedRecord[] = []
    // The version of rows this batch rewrites in suspended_usage (ReplacingMergeTree(version)): a stamp, above the
    // stamp every earlier batch, the held row's own included, was given (Date.now() could be below it: stamps run
    // ahead of the clock when more than one batch a millisecond comes, and the held row would then win over its release).
    let version: number | undefined
    // A released record that stays held: its row written again when the reason that holds it now is another.
    const stillHeld = (release: Map<string, HeldRow>, rec: StagedRecord, reason: string): void => {
      const h = release.get(recordKey(rec.source, rec.eventId))!
      if (reason === h.reason) return
      suspendedRows += heldLine({ ...h, reason }, 'held', staged.batchId, (version ??= this.stamp()))
      b.rows++
    }
    for (const rec of staged.records) {
      if (pending.release) {
        // A release: the record is committed already (it was suspended); rate it or leave it held. Still held for
        // another reason than the stored one (a device now bound to an account the catalog cannot price, say): the
        // held row is written again with the reason that holds it now, so suspended_usage says what to fix.
        // Refused by guiding now (an account that has two subscriptions since, say): held too, as rejecting it would lose
        // usage the input sent once; its reason says what to fix. Guiding words a refusal for an event just sent ("send
        // subscription_id"), which a held one cannot follow: sent again, it is a duplicate of itself.
        const reason = rec.suspendReason ?? (rec.rejectReason === undefined ? undefined : rec.rejectReason + HELD_REFUSAL)
        if (reason !== undefined) {
          stillHeld(pending.release, rec, reason)
          continue
        }
      } else {
        const isLate = late !== undefined && late.has(recordKey(rec.source, rec.eventId))
        if (rec.rejectReason !== undefined) {
          // Refused by guiding: a duplicate when its key was taken (an event rated before the guiding data changed),
          // else a reject whose key stays free for the event sent again once guiding owns it. Asked, not added: an add
          // made a generation of the index for the event's time (one per future-dated refused event), left empty.
          if (isLate || this.accepted.has(rec.source, rec.eventId)) duplicates++
          else {
            rejectedRows += rejectLine(stagedReject(rec, rec.rejectReason), rec.receivedAt, staged.batchId, rec.eventId)
            rejected++
          }
          continue
        }
        // One probe: the key joins the index here, and leaves it again if the event turns out a reject.
        if (isLate || !this.accepted.add(rec.source, rec.eventId, rec.eventMs, now)) {
          duplicates++
          continue
        }
      }
      if (rec.suspendLine !== undefined) {
        usage += rec.usageLine
        suspendedRows += rec.suspendLine
        suspended++
        b.rows++
        continue
      }
      toRate.push(rec)
    }
    if (this.foldInStoredOrder && toRate.length > 1) toRate.sort(inStoredOrder)
    for (const rec of toRate) {
      // Fold every charge first: a model that cannot price the event (e.g. a time_rated moment no schedule
      // covers) makes it a reject, and no running total moves for it.
      const lines = this.totals.foldEvent(rec.charges, rec.source)
      if (typeof lines !== 'string') {
        const reason = `cannot be priced: ${lines.message}`
        if (!pending.release) {
          this.accepted.delete(rec.source, rec.eventId)
          rejectedRows += rejectLine(stagedReject(rec, reason), rec.receivedAt, staged.batchId, rec.eventId)
          rejected++
        } else {
          // Owned now, but its charge cannot price it (a time_rated moment no schedule covers): it stays held, and its
          // row says so instead of the reason that held it before (a binding that is there now).
          stillHeld(pending.release, rec, reason)
        }
        continue
      }
      if (!pending.release) {
        usage += rec.usageLine
      } else {
        suspendedRows += heldLine(pending.release.get(recordKey(rec.source, rec.eventId))!, 'released', staged.batchId, (version ??= this.stamp()))
      }
      ratedRows += lines
      b.rows += rec.charges.length
      this.rowsSinceCheckpoint += rec.charges.length
      rated++
    }
    if (ratedRows !== '') b.rated.push(detached(ratedRows))
    if (rejectedRows !== '') b.rejected.push(detached(rejectedRows))
    if (suspendedRows !== '') b.suspended.push(detached(suspendedRows))
    if (usage !== '') b.usage.push(detached(usage))
    b.rows += rejectedHere + 1
    if (pending.msg) b.msgs.push(pending.msg)
    b.batches.push(staged.batchId)
    const outcome: BatchOutcome = pending.release
      ? { batchId: staged.batchId, read: 0, rated, duplicates: 0, rejected: 0, suspended: 0 }
      : { batchId: staged.batchId, read: staged.read, rated, duplicates, rejected: rejectedHere + rejected, suspended }
    b.outcomes.push(outcome)
  }

  /**
   * Hands the buffer to the store and returns once the flush BEFORE it has committed: staging and applying
   * go on while this one is written. At most one flush is in flight and flushes commit in order.
   *
   * Steps and guarantee:
   * 1. The buffer's dedupe keys joined `accepted` when they were applied, so a duplicate applied while the
   *    flush is in flight counts as a duplicate. If the commit fails the rater fails; a restart reloads keys
   *    from the store.
   * 2. commit(): data rows, then the `flushes` row (the commit), then the JetStream acks. A crash before the
   *    `flushes` row leaves rows that `recover()` deletes; a crash after it redelivers batches whose events
   *    are then duplicates.
   * 3. After a failed commit no later flush commits: its rows were folded on totals the failed one moved.
   * 4. When one is due (or `checkpoint` is set), the totals are recorded here, at the hand-off: they hold exactly the
   *    rows of this flush and of every flush before it, which is what the checkpoint claims once this flush commits.
   */
  private async flush(checkpoint = false): Promise<void> {
    const b = this.buffered
    this.buffered = emptyBuffer()
    const due = checkpointDue(this.options.checkpointRows, this.totals.size, this.lastCheckpointChars)
    if (this.totalsComplete && this.rowsSinceCheckpoint > 0 && (checkpoint || this.rowsSinceCheckpoint >= due)) {
      b.checkpoint = this.checkpointLines(b.flushId)
      b.checkpointChars = b.checkpoint.reduce((n, c) => n + c.length, 0)
      this.lastCheckpointChars = b.checkpointChars
      this.rowsSinceCheckpoint = 0
    }
    const previous = this.committing
    this.inFlight++
    this.committing = previous.then(async () => {
      try {
        if (this.failure === undefined) await this.commit(b)
      } catch (err) {
        this.fail(err)
      } finally {
        this.inFlight--
        this.kick()
      }
    })
    await previous
  }

  private async commit(b: ReturnType<typeof emptyBuffer>): Promise<void> {
    const { store } = this.deps
    const started = performance.now()
    // Checked before writing too, not only before the commit row: a rater that may have lost the stream writes no
    // rows at all, so its rows cannot land beside the next rater's committed rows of the same keys.
    await this.checkLease()
    // Order matters: the intent first (recover() finds a torn flush's rows by it); usage_events (the dedupe source)
    // after the rows derived from it; `flushes` last (commit). Both big tables get each key at most once per flush
    // (the dedupe index): unique keys, no replacing pass.
    const batches = tsvArray(b.batches)
    const hasRows = b.rated.length > 0 || b.rejected.length > 0 || b.suspended.length > 0 || b.usage.length > 0
    if (hasRows) {
      await store.insertTsv('flush_intents', `${tsv(b.flushId)}\t${chTime(isoUtc(Date.now()))}\t${batches}\n`)
    }
    if (b.rated.length) await store.insertTsv('rated_usage', b.rated, UNIQUE_KEYS)
    if (b.rejected.length) await store.insertTsv('rejected_usage', b.rejected)
    if (b.suspended.length) await store.insertTsv('suspended_usage', b.suspended)
    if (b.usage.length) await store.insertTsv('usage_events', b.usage, UNIQUE_KEYS)
    if (b.checkpoint) await store.insertTsv('rating_checkpoints', b.checkpoint)
    // Which flush commits each batch, looked up by batch id (store.ts committedBatches). Written only with rows, under
    // the intent: recover() deletes these of a flush that never committed. A flush with no rows needs none: only the
    // batches of stored rows are ever asked about.
    if (hasRows) await store.insertTsv('committed_batches', committedBatchLines(b.flushId, b.batches))
    crashPoint('before-commit')
    // The commit is the act that needs the stream's lease: if it may have lapsed, another rater may have taken
    // the stream and deleted this flush's rows in its recovery. Fail instead; a restart recovers.
    await this.checkLease()
    const sum = (k: keyof BatchOutcome) => b.outcomes.reduce((s, o) => s + (o[k] as number), 0)
    // Strictly later than every flush before it, even within one millisecond or after the clock stepped back; and not
    // before any stamp issued yet (they run ahead of the clock by 1 ms a batch while it is behind the store), so that a
    // start's seedStamps, reading the latest commit time, starts above every rated_at stored.
    this.lastCommitMs = Math.max(Date.now(), this.lastCommitMs + 1, this.lastStampMs)
    const released = b.outcomes.filter((o) => o.read === 0).reduce((s, o) => s + o.rated, 0)
    // `batches` is an Array field, written once as such (tsvArray): escaping it again as text doubled its backslashes.
    const counts = [sum('rated'), sum('duplicates'), sum('rejected'), sum('suspended'), released].join('\t')
    await store.insertTsv('flushes', `${tsv(b.flushId)}\t${chTime(isoUtc(this.lastCommitMs))}\t${batches}\t${counts}\n`)
    crashPoint('after-commit')
    for (const m of b.msgs) m.ack()
    if (hasRows) {
      this.committedIntents.push(b.flushId)
      if (this.committedIntents.length >= this.options.pruneIntentsAfter) await this.pruneIntents()
    }
    if (b.checkpoint) {
      // The older checkpoint is garbage now; if this drop does not happen, the next start drops it.
      const older = this.checkpointId
      this.checkpointId = b.flushId
      if (older !== undefined) await this.dropCheckpoint(older)
    }
    this.deps.log.info(
      {
        batches: b.batches.length,
        rows: b.rows,
        ms: Math.round(performance.now() - started),
        ...(b.checkpoint ? { checkpointChars: b.checkpointChars } : {}),
        // Since the rater started: events before the dedupe horizon checked against the store, and duplicates found so.
        ...(this.lateChecked > 0 ? { lateChecked: this.lateChecked, lateDuplicates: this.lateFound } : {}),
      },
      'flush committed',
    )
    for (const o of b.outcomes) this.emit('outcome', o)
  }

  /**
   * Deletes the intents of the flushes this rater committed, but the newest: it stays, so the store still shows it writes
   * intents (recover() scans a store with none as one written before them). Runs in the commit chain, after a commit:
   * no flush of this rater is torn then, and a torn flush of another rater has an intent this list does not name.
   */
  private async pruneIntents(): Promise<void> {
    const done = this.committedIntents.slice(0, -1)
    if (done.length === 0) return
    this.committedIntents = this.committedIntents.slice(-1)
    try {
      await this.deps.store.command(`DELETE FROM flush_intents WHERE flush_id IN (${done.map(chString).join(', ')}) SETTINGS mutations_sync = 2`)
    } catch (err) {
      // Housekeeping, not the commit: the flush stands, and the next start drops what is left.
      this.deps.log.warn({ err: (err as Error).message, intents: done.length }, 'could not delete committed flushes\' intents; the next start will')
    }
  }

  /**
   * Throws when the stream's lease may have lapsed (another rater may hold the stream now); while renewals only could
   * not get through and it has not lapsed, waits for one that does (RaterLease.current).
   */
  private async checkLease(): Promise<void> {
    if (this.lease && !(await this.lease.current())) {
      throw new RateflowError(ErrorCode.ServiceUnavailable, 'not committing: the rater lease on the USAGE stream may have lapsed (not renewed in time)')
    }
  }

  /**
   * Reads the guiding data again when its files changed (always with `force`). A change asks for a release of held
   * usage, whichever path saw it: a change seen by the fetch loop was not seen again by the idle loop, and usage held
   * before it stayed held while new usage was rated on the new data.
   */
  private reloadGuiding(force = false): void {
    const fp = this.deps.repo.fingerprint()
    if (!force && fp === this.fingerprint) return
    const catalogs = this.deps.repo.catalogs()
    this.guiding = new GuidingIndex(catalogs, this.deps.repo.accounts())
    this.charges = chargeTable(catalogs)
    this.foldInStoredOrder = [...this.charges.values()].some(
      (r) => (r.charge.model === 'percentage' || r.charge.model === 'time_rated') && r.charge.free_units !== undefined,
    )
    this.totals.setCharges(this.charges)
    this.fingerprint = fp
    this.releaseRequested = true
  }

  /** The guiding files' stamp (CatalogRepository.stamp) when checkGuiding last read it. */
  private guidingStamp = ''
  /**
   * Before each batch is staged: a change to the guiding files since the last batch is read now, so usage published
   * after an `accounts apply` or `catalog apply` returned is guided and priced on what it applied. Checked once a
   * second only, a batch taken in the second after an apply was rated on the old data for good: a device moved to
   * another account billed to the old one, an event priced by the version before. Two stat calls a batch.
   */
  private checkGuiding(): void {
    const stamp = this.deps.repo.stamp()
    if (stamp === this.guidingStamp) {
      this.maybeReloadGuiding()
      return
    }
    this.guidingStamp = stamp
    this.lastGuidingCheck = Date.now()
    this.reloadGuiding()
  }

  private lastGuidingCheck = 0
  /** Re-reads guiding data (reloadGuiding) at most once a second. */
  private maybeReloadGuiding(): void {
    const now = Date.now()
    if (now - this.lastGuidingCheck < 1000) return
    this.lastGuidingCheck = now
    this.reloadGuiding()
  }

  /**
   * Reads into the dedupe index the committed keys inside the horizon of each source of the batch the rater has not
   * met yet: usage_events holds every accepted record (rated or suspended) of committed flushes. No flush in flight
   * holds a key of such a source (none of its records was applied yet), so the store has them all. An `ingest csv
   * --wait` of a new file (a source of its own by default) reads none of history's keys; the same file again reads
   * its own. Keys before the horizon stay in the store; whether there are any decides if the source's late events
   * are checked there (lateDuplicates).
   */
  private async loadKeysOf(staged: StagedBatch): Promise<void> {
    let last: string | undefined
    for (const rec of staged.records) {
      if (rec.source === last) continue
      last = rec.source
      if (this.keysLoaded.has(rec.source)) continue
      const started = performance.now()
      const since = this.now() - this.accepted.horizonMs
      const keys = await readCommittedKeys(
        this.deps.store,
        this.options.loadPageRows,
        (s, id, ms) => this.accepted.load(s, id, ms),
        rec.source,
        since,
      )
      // Any row counts, committed or not: a row no flush committed only makes the rater ask the store about this
      // source's late events (which then finds no committed key for it), so one row of any kind answers the question.
      const [older] = await this.deps.store.rows<{ n: string }>(
        `SELECT count() AS n FROM (SELECT 1 FROM usage_events WHERE source = {source:String} AND event_time < fromUnixTimestamp64Milli({since:Int64}) LIMIT 1)`,
        { source: rec.source, since },
      )
      const olderKeys = Number(older!.n) > 0
      this.keysLoaded.set(detached(rec.source), { olderKeys })
      this.deps.log.info(
        { source: rec.source, keys, olderKeys, horizonHours: this.accepted.horizonMs / 3_600_000, ms: Math.round(performance.now() - started) },
        'dedupe keys of a source read from the store',
      )
    }
  }

  /** Drops the dedupe keys past the horizon, at most once a minute (a generation is half the horizon wide). */
  private maybeEvict(now: number): void {
    if (now - this.lastEvict < 60_000) return
    this.lastEvict = now
    const dropped = this.accepted.evict(now)
    if (dropped > 0) this.deps.log.info({ dropped, held: this.accepted.size }, 'dedupe keys past the late-arrival horizon dropped from memory')
  }

  /**
   * The keys (source\0event_id) of the batch's events before the dedupe horizon that are duplicates of committed
   * events the index does not hold: an event older than the horizon may repeat a key that was dropped, or committed
   * before this rater started and never loaded. Asked of the store only for sources that may have such keys (older
   * keys were there at load, or the index dropped some since); a late event whose key the index holds is left to
   * it. A key accepted by this rater and not yet committed is always in the index (it is dropped only once past
   * the horizon, long after its flush committed), so the store's committed keys are all that can be missing.
   */
  private async lateDuplicates(staged: StagedBatch, now: number): Promise<ReadonlySet<string> | undefined> {
    let asked: Map<string, string[]> | undefined
    // Whether the store may hold keys of the last record's source that the index does not (a batch has one source).
    let lastSource: string | undefined
    let askSource = false
    for (const rec of staged.records) {
      if (rec.source !== lastSource) {
        lastSource = rec.source
        askSource = this.accepted.mayMissKeys || this.keysLoaded.get(rec.source)!.olderKeys
      }
      if (!askSource || !this.accepted.isLate(rec.eventMs, now)) continue
      if (this.accepted.has(rec.source, rec.eventId)) continue
      asked ??= new Map()
      let ids = asked.get(rec.source)
      if (ids === undefined) asked.set(rec.source, (ids = []))
      ids.push(rec.eventId)
    }
    if (asked === undefined) return undefined
    const found = new Set<string>()
    for (const [source, ids] of asked) {
      const committed = await committedEventIds(this.deps.store, source, ids)
      for (const id of committed) found.add(recordKey(source, id))
      this.lateChecked += ids.length
      this.lateFound += committed.size
    }
    return found
  }

  /**
   * Rebuilds the running totals: from the latest committed checkpoint, then by folding the rated rows committed after
   * it, in the order they were rated (all of them when there is no checkpoint: a store written before checkpoints, or
   * a rater that never stopped cleanly nor rated `checkpointRows` rows). Every other checkpoint (older, or written by
   * a flush that never committed) is dropped.
   */
  private async rebuildTotals(): Promise<{ checkpoint: string | null; folded: number }> {
    const { store } = this.deps
    let [checkpoint] = await store.rows<{ flush_id: string; ms: string }>(
      `SELECT flush_id, toString(toUnixTimestamp64Milli(committed_at)) AS ms FROM flushes
       WHERE flush_id IN (SELECT DISTINCT flush_id FROM rating_checkpoints)
       ORDER BY committed_at DESC, flush_id DESC LIMIT 1`,
    )
    if (checkpoint && (await this.writtenTheOldWay(checkpoint.flush_id))) {
      // Keyed without the plan, its totals would be found by no event's key: usage priced from nothing again (free units
      // granted twice, tiers reset). With readings recorded without their source (latest, time_weighted_avg), two
      // sources' readings of one id and time would stay one, where folding the stored rows (which have their source)
      // makes them two: the totals would depend on whether a start read them from the checkpoint or from the rows.
      // Dropped with the stale ones below; every rated row is folded instead.
      this.deps.log.warn({ checkpoint: checkpoint.flush_id }, 'checkpoint of the running totals written by an earlier release (keyed without their plan, or readings without their source): folding every rated row instead')
      checkpoint = undefined
    }
    const stale = await store.rows<{ flush_id: string }>('SELECT DISTINCT flush_id FROM rating_checkpoints WHERE flush_id != {id:String}', {
      id: checkpoint?.flush_id ?? '',
    })
    for (const s of stale) await this.dropCheckpoint(s.flush_id)
    let after = ''
    let folded = 0
    const fixed: Record<string, unknown> = {}
    if (checkpoint) {
      await eachPage<{ totals_key: string; state: string }>(
        store,
        this.options.loadPageRows,
        ['totals_key'],
        ['String'],
        (where, limit) => `SELECT totals_key, state FROM rating_checkpoints AS k WHERE k.flush_id = {checkpoint:String} AND ${where} ORDER BY k.totals_key ${limit}`,
        (rows) => {
          for (const r of rows) {
            this.totals.restore(r.totals_key, JSON.parse(r.state) as MeterState)
            // As its text was written: the next checkpoint is due no sooner than it cost (checkpointDue).
            this.lastCheckpointChars += checkpoint.flush_id.length + r.totals_key.length + r.state.length + 3
          }
        },
        { checkpoint: checkpoint.flush_id },
      )
      this.checkpointId = checkpoint.flush_id
      // The batches named by flushes after the checkpoint, as a subquery (a range of `flushes`' sort key): as a list in a
      // parameter, the many small batches of a syslog source since a checkpoint cost the engine seconds a page (store.ts
      // MAX_PARAM_BYTES). Those a flush at or before the checkpoint committed too (redelivered) are left out by name.
      after =
        "AND k.batch_id IN (SELECT arrayJoin(batches) FROM flushes WHERE committed_at > fromUnixTimestamp64Milli({checkpointMs:Int64}, 'UTC')) " +
        'AND k.batch_id NOT IN {foldedBefore:Array(String)}'
      fixed.checkpointMs = checkpoint.ms
      fixed.foldedBefore = await this.batchesCommittedBefore(checkpoint.ms)
    }
    type Row = StoredRated & { rated_at: string }
    // A page of rated rows, then the events they priced, found by their key in usage_events (its primary key): no
    // join against all of history per page.
    const order = ['rated_at', 'event_time', 'event_id', 'source', 'charge_id']
    await eachPage<Row>(
      store,
      this.options.loadPageRows,
      order,
      ["DateTime64(3, 'UTC')", "DateTime64(3, 'UTC')", 'String', 'String', 'String'],
      (where, limit) => `
        WITH page AS (
          SELECT k.rated_at AS rated_at, toString(k.source) AS source, k.event_id AS event_id, k.subscription_id AS subscription_id,
                 toString(k.charge_id) AS charge_id, toString(k.plan_id) AS plan_id, toString(k.catalog_version) AS catalog_version,
                 k.group_key AS group_key, k.period_start AS period_start, k.event_time AS event_time
          FROM rated_usage AS k WHERE ${where} ${after}
          ORDER BY ${order.map((c) => `k.${c}`).join(', ')} ${limit})
        SELECT r.*, toString(u.quantity) AS quantity, u.dimensions AS dims
        FROM page AS r
        INNER JOIN (SELECT toString(source) AS source, event_id, quantity, dimensions FROM usage_events
                    WHERE (source, event_id) IN (SELECT source, event_id FROM page)) AS u
          ON u.source = r.source AND u.event_id = r.event_id
        ORDER BY ${order.map((c) => `r.${c}`).join(', ')}`,
      (rows) => {
        for (const row of rows) this.foldStored(row)
        this.rowsSinceCheckpoint += rows.length
        folded += rows.length
      },
      fixed,
    )
    this.totalsComplete = true
    return { checkpoint: checkpoint?.flush_id ?? null, folded }
  }

  /**
   * True when a checkpoint was written by an earlier release: its totals keyed as before running totals were kept per
   * plan (five parts: subscription, charge, period, group, version, where totalsKey makes six), or its `latest` and
   * time_weighted_avg readings recorded without their source (SOURCELESS_LATEST, SOURCELESS_POINT). Asked at every
   * start, not once by a migration: a rater of an earlier release sharing the store could write such a checkpoint
   * after any migration ran.
   */
  private async writtenTheOldWay(flushId: string): Promise<boolean> {
    const [row] = await this.deps.store.rows<{ n: string }>(
      `SELECT count() AS n FROM rating_checkpoints WHERE flush_id = {id:String}
         AND (countSubstrings(totals_key, char(0)) = 4 OR match(state, {latest:String}) OR match(state, {point:String}))`,
      { id: flushId, latest: SOURCELESS_LATEST, point: SOURCELESS_POINT },
    )
    return Number(row?.n ?? 0) > 0
  }

  /**
   * Of the batches named by a flush committed after the checkpoint committed at `ms` (strictly: commits are strictly
   * ordered in time, commit(), and the checkpoint's own flush is in it), those a flush at or before it committed too:
   * their rated rows are not after the checkpoint. A batch delivered again after its commit (a queue that lost its
   * acks) is named by a later flush as well, with no rows of its own there: its rated rows are in the checkpoint, and
   * folding them again counted that usage twice in the totals, so later events were priced on the wrong totals. Its
   * first commit wrote rows, so `committed_batches` names it, and only the flushes of these few batches are read.
   */
  private async batchesCommittedBefore(ms: string): Promise<string[]> {
    // One query, the batches named after the checkpoint as a subquery: read into a list and sent back, they went in a
    // parameter, in parts (store.ts MAX_PARAM_BYTES).
    const rows = await this.deps.store.rows<{ b: string }>(
      `WITH named AS (SELECT arrayJoin(batches) AS b FROM flushes WHERE committed_at > fromUnixTimestamp64Milli({after:Int64}, 'UTC'))
       SELECT DISTINCT batch_id AS b FROM committed_batches
       WHERE batch_id IN (SELECT b FROM named)
         AND flush_id IN (SELECT flush_id FROM flushes
                          WHERE committed_at <= fromUnixTimestamp64Milli({after:Int64}, 'UTC')
                            AND flush_id IN (SELECT flush_id FROM committed_batches WHERE batch_id IN (SELECT b FROM named)))`,
      { after: ms },
    )
    return rows.map((r) => r.b)
  }

  /** Commits a checkpoint of the totals now (with whatever is buffered), unless nothing was folded since the last one. */
  private async checkpoint(): Promise<void> {
    // Not after a start that failed part way through folding: its totals would be recorded short.
    if (this.failure !== undefined || !this.totalsComplete || this.rowsSinceCheckpoint === 0) return
    await this.flush(true)
    await this.committing
  }

  /** rating_checkpoints rows of every running total, as of now, for the flush `flushId`. */
  private checkpointLines(flushId: string): string[] {
    const chunks: string[] = []
    const id = tsv(flushId) + '\t'
    let chunk = ''
    for (const [key, total] of this.totals.entries()) {
      chunk += id + tsv(key) + '\t' + tsv(JSON.stringify(meterStateOf(total))) + '\n'
      if (chunk.length >= 1 << 20) {
        chunks.push(chunk)
        chunk = ''
      }
    }
    if (chunk !== '') chunks.push(chunk)
    return chunks
  }

  /** Drops one checkpoint (its partition). A failure is logged, not thrown: the next start drops it again. */
  private async dropCheckpoint(flushId: string): Promise<void> {
    try {
      await this.deps.store.command(`ALTER TABLE rating_checkpoints DROP PARTITION ${chString(flushId)}`)
    } catch (err) {
      this.deps.log.warn({ err, flushId }, 'could not drop an old checkpoint of the running totals')
    }
  }

  /** Folds one stored rated row, with its event's quantity and dimensions, into the running totals. */
  private foldStored(row: StoredRated): void {
    const resolved = this.charges.get(chargeRef(row.catalog_version, row.plan_id, row.charge_id))
    if (!resolved) return
    const periodStart = isoUtc(chTimeMs(row.period_start))
    const key = totalsKey(row.subscription_id, row.plan_id, row.charge_id, periodStart, row.group_key, row.catalog_version)
    const owner = this.guiding.subscriptionOwner(row.subscription_id)
    // The time is read once: the period and the fold both take its ms.
    const eventMs = chTimeMs(row.event_time)
    const eventIso = isoUtc(eventMs)
    // The period of the row's own plan in its version (the charge's), not of the plan the subscription is on now: after
    // a plan change the old plan's rows were refolded over a period of the new plan's length.
    const period = owner ? billingPeriod(eventMs, owner.account, resolved.billingPeriod) : { endIso: periodStart }
    this.totals.fold(
      key,
      resolved,
      { event_id: row.event_id, source: row.source, event_time: eventIso, ms: eventMs, quantity: row.quantity, dimensions: row.dims },
      {
        schedules: resolved.schedules,
        timezone: owner?.account.timezone ?? 'UTC',
        periodStart,
        periodEnd: period.endIso,
      },
    )
  }

  /**
   * Rates suspended usage that the current guiding data can own. Returns how many were released.
   *
   * Page by page, in (source, event_id) order, `releasePageRows` held rows at a time, each page committed before the
   * next is read: usage held for months (a device sending before its account is loaded) is released in bounded
   * memory, and a crash keeps the pages committed so far. Rows the data still cannot own stay held; the next page
   * starts after the last key read, so it does not read them again.
   */
  async releaseSuspended(): Promise<number> {
    const run = this.releaseAll()
    this.releasing = run.catch(() => undefined)
    try {
      return await run
    } finally {
      this.releasing = undefined
    }
  }

  private async releaseAll(): Promise<number> {
    // Rows of a flush still in flight are not readable yet: wait, or they would stay held until the next release.
    await this.committing
    // Batch ids of the pages: unique, since recover() tells committed rows from rolled-back ones by batch id.
    const startedMs = Date.now()
    let pageNo = 0
    let released = 0
    await eachPage<HeldRow>(
      this.deps.store,
      this.options.releasePageRows,
      ['source', 'event_id'],
      ['String', 'String'],
      (where, limit) =>
        `SELECT source, event_id, event_time, device_id, account_id, subscription_id, metric, toString(quantity) AS quantity,
                dimensions, raw, origin, reason, received_at
         FROM suspended_usage AS k FINAL WHERE k.status = 'held' AND ${where}
         ORDER BY k.source, k.event_id ${limit}`,
      async (held) => {
        if (held.length > 0) released += await this.releasePage(held, `${RELEASE_BATCH_PREFIX}${startedMs}-${++pageNo}`)
      },
      {},
      // Stopping (Ctrl-C) ends a release between pages: each page is committed, and the rest stays held for the next
      // start, which releases it. Waiting for a backlog of millions would hold the stop for minutes.
      () => this.stopping,
    )
    if (released > 0) this.deps.log.info({ released }, 'released suspended usage')
    return released
  }

  /** Stages, applies and commits one page of held rows; returns how many were rated. */
  private async releasePage(held: readonly HeldRow[], batchId: string): Promise<number> {
    const records: WireRecord[] = []
    const byKey = new Map<string, HeldRow>()
    for (const h of held) {
      const rec: WireRecord = {
        event_id: h.event_id,
        source: h.source,
        event_time: isoUtc(chTimeMs(h.event_time)),
        metric: h.metric,
        quantity: h.quantity,
        dimensions: h.dimensions,
        raw: h.raw,
        origin: h.origin,
        ...(h.device_id ? { device_id: h.device_id } : {}),
        ...(h.account_id ? { account_id: h.account_id } : {}),
        ...(h.subscription_id ? { subscription_id: h.subscription_id } : {}),
      }
      records.push(rec)
      byKey.set(recordKey(rec.source, rec.event_id), h)
    }
    const batch: UsageBatch = { id: batchId, records, rejects: [] }
    const wire = await this.stage({ batch, dataDir: this.deps.dataDir, fingerprint: this.fingerprint, receivedAtMs: this.stamp() })
    const staged = decodeStaged(wire)
    // Held rows stay held unless rated: those guiding refuses now (apply), and those validation refuses now (their reject
    // lines are dropped here; a held row was valid when it was held, so only a stricter release can refuse it).
    this.apply({ ...staged, rejectLines: [] }, { staged: Promise.resolve(wire), release: byKey }, this.now())
    const released = this.buffered.outcomes.at(-1)?.rated ?? 0
    await this.flush()
    await this.committing
    if (this.failure !== undefined) throw this.failure
    return released
  }
}

const UNIQUE_KEYS = Object.freeze({ uniqueKeys: true })

/** Characters of a typical rated_usage row and its usage_events row: what one rated row costs the store to write. */
const CHARS_PER_RATED_ROW = 300

/**
 * Rated rows to fold before the next checkpoint is due: `checkpointRows`, but never fewer than the checkpoint costs
 * to write, so writing checkpoints costs at most about as much as the rated rows themselves. A checkpoint writes a
 * row per total (`totals`), and its text grows with what totals hold: a time_weighted_avg total keeps every reading
 * of its period, a unique_count total every distinct value (`lastChars`: the size of the last one written).
 */
export function checkpointDue(checkpointRows: number, totals: number, lastChars: number): number {
  return Math.max(checkpointRows, totals, Math.ceil(lastChars / CHARS_PER_RATED_ROW))
}

/**
 * Reads stored rows `page` at a time, ordered by `keyColumns` (a unique key of the table aliased `k`, of the
 * ClickHouse types `keyTypes`, each a column of every row returned), each page after the last row of the one
 * before, and hands each page to `visit` (awaited before the next is read). Why pages: all of history in one
 * result held every row as an object at once, ~130 bytes per key where the dedupe index keeps 0.2–36 (3,000,000
 * keys ran out of a 200 MB heap), and a rater with months of history could not start. `sql(where, limit)` builds a
 * page's query: `where` is its condition on `k` ('1' for the first page), `limit` its LIMIT clause, and it must
 * order by `keyColumns`. Start-up reads `loadPageRows` at a time, a release `releasePageRows`. `fixed` are query
 * parameters of every page (named other than `k0`, `k1`, …).
 */
export async function eachPage<T extends object>(
  store: Store,
  page: number,
  keyColumns: readonly string[],
  keyTypes: readonly string[],
  sql: (where: string, limit: string) => string,
  visit: (rows: T[]) => void | Promise<void>,
  fixed: Record<string, unknown> = {},
  stop: () => boolean = () => false,
): Promise<void> {
  const tuple = (names: readonly string[]) => `(${names.join(', ')})`
  const after = `${tuple(keyColumns.map((c) => `k.${c}`))} > ${tuple(keyTypes.map((t, i) => `{k${i}:${t}}`))}`
  let keys: Record<string, unknown> | undefined
  for (;;) {
    const rows = await store.rows<T>(sql(keys ? after : '1', `LIMIT ${page}`), { ...fixed, ...keys })
    await visit(rows)
    if (rows.length < page || stop()) return
    const last = rows[rows.length - 1]!
    keys = Object.fromEntries(keyColumns.map((c, i) => [`k${i}`, (last as Record<string, unknown>)[c]]))
  }
}

/**
 * Hands every committed (source, event_id) of usage_events to `visit` with the later of its event time and the time
 * it was received, in epoch ms: what the dedupe index holds a key until (HorizonIndex: `max(event time, acceptance)`).
 * Only those of `source` when it is given, and only those whose later time is at or after `since`, epoch ms, when it is
 * given: a key accepted lately for an event long past is one too (held in memory; read by event time alone, a start
 * forgot it, and the same event sent again with its time corrected was rated twice). In the table's order,
 * `page` keys a query, each page after the last key of the one before (memory: one page of text); returns how many.
 * Read as TabSeparated text and split here: the same pages as JSONEachRow objects cost several times more in parsing
 * and garbage (`rateflow bench startup`). `committed` answers which of a page's batches are committed
 * (committedBatches; `rateflow bench history` passes another way to compare).
 */
export async function readCommittedKeys(
  store: Store,
  page: number,
  visit: (source: string, eventId: string, eventMs: number) => void,
  source?: string,
  since?: number,
  committed: CommittedLookup = committedBatches,
): Promise<number> {
  // One source is a range of the table's sort key (source, event_id): only its rows are read. Only committed rows:
  // a stalled rater that lost the stream may still be writing rows it will never commit (their batches come again).
  // Which are committed is asked per page, of that page's batches (a lookup by batch id), not with a filter on every
  // batch ever committed, whose cost grows with history: a new source's empty range then costs one small read.
  const only =
    `${source === undefined ? '1' : 'k.source = {source:String}'}` +
    `${since === undefined ? '' : ' AND (k.event_time >= fromUnixTimestamp64Milli({since:Int64}) OR k.received_at >= fromUnixTimestamp64Milli({since:Int64}))'}`
  let params: Record<string, unknown> = { ...(source === undefined ? {} : { source }), ...(since === undefined ? {} : { since }) }
  let after = ''
  let total = 0
  for (;;) {
    const text = await store.text(
      `SELECT source, event_id, greatest(toUnixTimestamp64Milli(event_time), toUnixTimestamp64Milli(received_at)), batch_id FROM usage_events AS k WHERE ${only}${after}
       ORDER BY k.source, k.event_id LIMIT ${page}`,
      'TabSeparated',
      params,
    )
    // Each row is `source \t event_id \t ms \t batch_id \n`; no value holds a raw tab or newline (TabSeparated
    // escapes them). First the page's batches, as the text has them (a few hundred: a batch holds up to 1,000 events).
    const batchText = new Map<string, boolean>()
    for (let start = 0; start < text.length; ) {
      const end = text.indexOf('\n', start)
      batchText.set(text.slice(text.lastIndexOf('\t', end) + 1, end), false)
      start = end + 1
    }
    const texts = [...batchText.keys()]
    const ids = texts.map(fromTsv)
    const done = await committed(store, ids)
    texts.forEach((t, i) => batchText.set(t, done.has(ids[i]!)))
    let rows = 0
    let rowSource = ''
    let eventId = ''
    for (let start = 0; start < text.length; ) {
      const tab = text.indexOf('\t', start)
      const tab2 = text.indexOf('\t', tab + 1)
      const tab3 = text.indexOf('\t', tab2 + 1)
      const end = text.indexOf('\n', tab3)
      rowSource = fromTsv(text.slice(start, tab))
      eventId = fromTsv(text.slice(tab + 1, tab2))
      if (batchText.get(text.slice(tab3 + 1, end))) {
        visit(rowSource, eventId, Number(text.slice(tab2 + 1, tab3)))
        total++
      }
      rows++
      start = end + 1
    }
    if (rows < page) return total
    params = { ...params, k0: rowSource, k1: eventId }
    after = ' AND (k.source, k.event_id) > ({k0:String}, {k1:String})'
  }
}

/**
 * Which of `ids` the store holds committed for `source` (their usage_events row's batch is committed). Two steps, the
 * rows of these keys (a range of the sort key), then which of their batches are committed (`committed`: a lookup by
 * batch id, store.ts committedBatches; `rateflow bench history` passes another way to compare).
 */
export async function committedEventIds(
  store: Store,
  source: string,
  ids: readonly string[],
  committed: CommittedLookup = committedBatches,
): Promise<Set<string>> {
  const rows = await store.rows<{ event_id: string; batch_id: string }>(
    'SELECT event_id, batch_id FROM usage_events WHERE source = {source:String} AND event_id IN {ids:Array(String)}',
    { source, ids },
  )
  const done = await committed(store, [...new Set(rows.map((r) => r.batch_id))])
  const out = new Set<string>()
  for (const r of rows) if (done.has(r.batch_id)) out.add(r.event_id)
  return out
}

/**
 * Crash testing: RATEFLOW_CRASH_AT=<point>:<n> kills this process with SIGKILL the n-th time it reaches
 * <point> — a real kill -9 at the exact step, to prove recovery. Unset in production: one env lookup.
 */
const crashSpec = process.env.RATEFLOW_CRASH_AT?.split(':')
let crashCount = 0
function crashPoint(point: string): void {
  if (crashSpec && crashSpec[0] === point && ++crashCount === Number(crashSpec[1] ?? 1)) process.kill(process.pid, 'SIGKILL')
}

/**
 * A checkpoint state (meterStateOf's JSON) with a `latest` reading, or a time_weighted_avg point, recorded without its
 * source, as releases before readings were ordered by source wrote them: `"latest":{"t":…,"id":"…"}` ends after the id,
 * and an old point is `[t,"id","value"]` (a new one has a fourth element). Matched by the store (re2 syntax).
 */
const SOURCELESS_LATEST = String.raw`"latest":\{"t":-?[0-9]+,"id":"(?:[^"\\]|\\.)*"\}`
const SOURCELESS_POINT = String.raw`\[-?[0-9]+,"(?:[^"\\]|\\.)*","[-0-9.e]+"\]`

/** A suspended_usage row of a held event in its new state; `version` must exceed the version of every row before it. */
function heldLine(h: HeldRow, status: 'held' | 'released', batchId: string, version: number): string {
  return (
    [h.source, h.event_id, h.event_time, h.device_id, h.account_id, h.subscription_id, h.metric, h.quantity]
      .map(tsv)
      .join('\t') +
    '\t' + tsvMap(h.dimensions) + '\t' + tsv(h.raw) + '\t' + tsv(h.origin) + '\t' + tsv(h.reason) + '\t' + status + '\t' + version +
    '\t' + tsv(h.received_at) + '\t' + tsv(batchId) + '\n'
  )
}

/**
 * Appended to the refusal of a held event (guiding's, or staging's: a metric its owner's plan does not price): what a
 * person can do about it, since the refusal is worded for an event just sent.
 */
export const HELD_REFUSAL =
  ' (held: this event is stored already, so sending it again counts as a duplicate; change the accounts or catalog data that refuse it, and the next release rates it)'

/** A record's dedupe key as one string: the key of a release's map, and of a batch's late duplicates (lateDuplicates). */
function recordKey(source: string, eventId: string): string {
  return source + '\u0000' + eventId
}

function emptyBuffer() {
  return {
    // The flush's id: its `flushes` row, and its checkpoint's rows when it carries one.
    flushId: `f-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`,
    /** rating_checkpoints rows (chunks of whole rows) when this flush records the totals, and their characters. */
    checkpoint: undefined as string[] | undefined,
    checkpointChars: 0,
    // Rows per table, one flat string per batch applied (each ends in \n).
    rated: [] as string[],
    rejected: [] as string[],
    suspended: [] as string[],
    usage: [] as string[],
    rows: 0,
    msgs: [] as JsMsg[],
    batches: [] as string[],
    outcomes: [] as BatchOutcome[],
  }
}

/** The order a start's rebuild folds a batch's stored rows in (rated_at is the batch's): event_time, event_id, source. */
function inStoredOrder(a: StagedRecord, b: StagedRecord): number {
  // Text as the store sorts it (UTF-8 bytes), or ids mixing characters above U+FFFF with U+E000–U+FFFF in one
  // millisecond folded in one order live and in another after a restart.
  return a.eventMs - b.eventMs || compareUtf8(a.eventId, b.eventId) || compareUtf8(a.source, b.source)
}
