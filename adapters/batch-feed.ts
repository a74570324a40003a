/**
 * The MicroBatcher an adapter instance feeds, replaced by a fresh one when a batch fails to store.
 *
 * A failed publish is fatal for a MicroBatcher (adapters/batcher.ts). A push source must keep running, so:
 * 1. the failed batch's items are counted and logged (`failedBatches`, `lostItems`): nothing vanishes silently;
 * 2. the next item goes to a new batcher, so ingestion continues once the store is back;
 * 3. `onFailure` lets the adapter react: MQTT drops its connection so the broker redelivers every message whose
 *    ack was held, which makes the loss in 1 temporary there; syslog has no acks, so its loss is final.
 *
 * Batch ids are `<source>:<run id>:<n>` with a random run id per batcher: a live source cannot reproduce a
 * previous run's batches, and a repeated id inside JetStream's duplicate window would silently drop a batch.
 * Redelivered inputs dedupe later by (source, event_id) instead.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { DEFAULT_BATCHING, MicroBatcher, type BatchSink, type StoredCallback } from './batcher.js'
import type { BatchingOptions } from './config.js'
import type { UsageBatch } from '../rating-core/record.js'
import type { WireItem } from './wire.js'

/** What a BatchFeed publishes through. */
export interface BatchFeedDeps {
  readonly sink: BatchSink
  readonly logger: Logger
  /** The most bytes a batch's encoding may take (Queue.maxBatchBytes); default DEFAULT_BATCHING.maxBytes. */
  readonly maxBatchBytes?: number
}

export class BatchFeed {
  private batcher: MicroBatcher
  private failed = 0
  private lost = 0

  private readonly sink: BatchSink
  private readonly logger: Logger
  private readonly maxBytes: number

  constructor(
    deps: BatchFeedDeps,
    private readonly batching: BatchingOptions,
    private readonly source: string,
    private readonly onFailure?: (err: unknown, batch: UsageBatch) => void,
  ) {
    this.sink = deps.sink
    this.logger = deps.logger
    this.maxBytes = deps.maxBatchBytes ?? DEFAULT_BATCHING.maxBytes
    this.batcher = this.create()
  }

  /** Batches that failed to store. */
  get failedBatches(): number {
    return this.failed
  }

  /** Records + rejects in those batches. */
  get lostItems(): number {
    return this.lost
  }

  /** As MicroBatcher.add: a returned promise means wait before adding more. */
  add(item: WireItem, onStored?: StoredCallback): Promise<void> | undefined {
    return this.batcher.add(item, onStored)
  }

  /** Publishes what is buffered and waits until it is stored; rejects if that fails. */
  flush(): Promise<void> {
    return this.batcher.flush()
  }

  private create(): MicroBatcher {
    const run = randomUUID()
    let batcher: MicroBatcher | undefined
    const sink: BatchSink = async (batch) => {
      try {
        await this.sink(batch)
      } catch (err) {
        this.failed++
        const n = batch.records.length + batch.rejects.length
        this.lost += n
        this.logger.error({ err, source: this.source, batch: batch.id, items: n }, 'usage batch was not stored; starting a new batcher')
        if (this.batcher === batcher) this.batcher = this.create()
        this.onFailure?.(err, batch)
        throw err
      }
    }
    batcher = new MicroBatcher(sink, {
      maxRecords: this.batching.max_records,
      maxBytes: this.maxBytes,
      maxDelayMs: this.batching.max_delay_ms,
      maxInFlight: this.batching.max_in_flight,
      batchId: (seq) => `${this.source}:${run}:${seq}`,
    })
    return batcher
  }
}
