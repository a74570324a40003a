import type { UsageBatch, WireRecord, WireReject } from '../rating-core/record.js'

/** Where a full micro-batch goes. Resolves once the batch is durably stored (JetStream acked the publish). */
export type BatchSink = (batch: UsageBatch) => Promise<void>

export interface MicroBatcherOptions {
  /** Flush when this many records + rejects are buffered. */
  readonly maxRecords: number
  /** Flush a non-empty buffer at most this long after its first item arrived. */
  readonly maxDelayMs: number
  /** Batches published but not yet stored; past this, `add` asks the caller to wait (backpressure). */
  readonly maxInFlight: number
  /**
   * Batch id for the n-th batch (0-based). Deterministic ids (file fingerprint + n) make a re-run after a
   * crash publish the same ids, which JetStream's duplicate window drops.
   */
  readonly batchId: (seq: number) => string
}

export const DEFAULT_BATCHING: Readonly<Pick<MicroBatcherOptions, 'maxRecords' | 'maxDelayMs' | 'maxInFlight'>> =
  Object.freeze({ maxRecords: 1000, maxDelayMs: 50, maxInFlight: 8 })

/** Called once the batch holding the item is stored; used by MQTT QoS 1 to ack the broker only then. */
export type StoredCallback = () => void

/**
 * Groups records into micro-batches by size and time, publishes them in order of creation, and applies
 * backpressure: `add` returns a promise (instead of undefined) when `maxInFlight` batches are unstored,
 * and the caller must await it before adding more. Memory is bounded by
 * (maxInFlight + 1) × maxRecords items whatever the speed of the sink.
 *
 * A failed publish is fatal for the batcher: `add`/`flush` reject from then on, and callbacks of the
 * unstored items are never called, so sources that ack (MQTT) redeliver.
 */
export class MicroBatcher {
  private records: WireRecord[] = []
  private rejects: WireReject[] = []
  private callbacks: StoredCallback[] = []
  private timer: NodeJS.Timeout | undefined
  private seq = 0
  private inFlight = 0
  private waiters: Array<() => void> = []
  private failure: unknown
  private readonly pending = new Set<Promise<void>>()

  constructor(
    private readonly sink: BatchSink,
    private readonly options: MicroBatcherOptions,
  ) {}

  /** Number of batches handed to the sink. */
  get batches(): number {
    return this.seq
  }

  /** Buffers one record or reject. Returns a promise when the caller must wait for capacity. */
  add(item: { record: WireRecord } | { reject: WireReject }, onStored?: StoredCallback): Promise<void> | undefined {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    if ('record' in item) this.records.push(item.record)
    else this.rejects.push(item.reject)
    if (onStored) this.callbacks.push(onStored)
    const size = this.records.length + this.rejects.length
    if (size >= this.options.maxRecords) this.cut()
    else if (size === 1 && this.timer === undefined) {
      this.timer = setTimeout(() => this.cut(), this.options.maxDelayMs)
    }
    if (this.inFlight >= this.options.maxInFlight) return this.capacity()
    return undefined
  }

  /** Publishes what is buffered and resolves once every batch so far is stored. */
  async flush(): Promise<void> {
    this.cut()
    while (this.pending.size > 0) await Promise.all([...this.pending])
    if (this.failure !== undefined) throw this.failure
  }

  private capacity(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  private cut(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    if (this.records.length + this.rejects.length === 0) return
    const batch: UsageBatch = { id: this.options.batchId(this.seq++), records: this.records, rejects: this.rejects }
    const callbacks = this.callbacks
    this.records = []
    this.rejects = []
    this.callbacks = []
    this.inFlight++
    const p = this.sink(batch).then(
      () => {
        for (const cb of callbacks) cb()
      },
      (err: unknown) => {
        this.failure ??= err
      },
    ).finally(() => {
      this.inFlight--
      this.pending.delete(p)
      // Wake every waiter on failure too, so nobody hangs; they see the failure on their next add.
      const wake = this.failure !== undefined ? this.waiters.splice(0) : this.waiters.splice(0, 1)
      for (const w of wake) w()
    })
    this.pending.add(p)
  }
}
