import { maxBatchBytesFor, measureBatch, NATS_DEFAULT_MAX_PAYLOAD } from '../pipeline/batch-wire.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import type { UsageBatch, WireRecord, WireReject } from '../rating-core/record.js'

/** Where a full micro-batch goes. Resolves once the batch is durably stored (JetStream acked the publish). */
export type BatchSink = (batch: UsageBatch) => Promise<void>

export interface MicroBatcherOptions {
  /** Flush when this many records + rejects are buffered. */
  readonly maxRecords: number
  /**
   * The most bytes a batch's encoding (pipeline/batch-wire.ts) may take: the queue's limit, `Queue.maxBatchBytes`.
   * Default DEFAULT_BATCHING.maxBytes, what a NATS server with its default max_payload takes.
   */
  readonly maxBytes?: number
  /**
   * Flush a non-empty buffer at most this long after its first item arrived. `Infinity`: never by time, only by
   * `maxRecords`, `maxBytes` and `flush()`, so the cuts depend on the items alone (a file's batches).
   */
  readonly maxDelayMs: number
  /** Batches published but not yet stored; past this, `add` asks the caller to wait (backpressure). */
  readonly maxInFlight: number
  /**
   * Batch id for the n-th batch (0-based). Deterministic ids (file fingerprint + n) make a re-run after a
   * crash publish the same ids, which JetStream's duplicate window drops.
   */
  readonly batchId: (seq: number) => string
}

export const DEFAULT_BATCHING: Readonly<Required<Pick<MicroBatcherOptions, 'maxRecords' | 'maxBytes' | 'maxDelayMs' | 'maxInFlight'>>> =
  Object.freeze({ maxRecords: 1000, maxBytes: maxBatchBytesFor(NATS_DEFAULT_MAX_PAYLOAD), maxDelayMs: 50, maxInFlight: 8 })

/** The smallest `maxBytes` a batcher accepts: room for one reject that says why its input did not fit. */
export const MIN_BATCH_BYTES = 4096

/** Called once the batch holding the item is stored; used by MQTT QoS 1 to ack the broker only then. */
export type StoredCallback = () => void

/**
 * Groups records into micro-batches by count, bytes and time, publishes them in order of creation, and applies
 * backpressure: `add` returns a promise (instead of undefined) when `maxInFlight` batches are unstored,
 * and the caller must await it before adding more. Memory is bounded by
 * (maxInFlight + 1) × maxRecords items and about as many times maxBytes, whatever the speed of the sink.
 *
 * Every batch handed to the sink encodes to at most `maxBytes`, whatever the items' sizes:
 * 1. a batch is cut before an item would take its estimated size (string lengths, see recordSize) past `maxBytes`;
 * 2. at the cut, a batch whose estimate cannot rule out going over (UTF-8 takes up to 3 bytes a character) is
 *    measured, by encoding it; the queue then publishes those bytes instead of encoding again;
 * 3. a batch still too large is split in halves, in order, until each part fits;
 * 4. a single item that does not fit on its own goes as a reject: its raw input cut to what fits, and a reason
 *    that gives its size and the limit. The rater counts it read and rejected, so the counts still reconcile.
 * Parts take the next ids (`batchId(seq)`, seq + 1, …): the cuts depend only on the items and the limits, so the
 * same input with the same limits is published under the same ids again.
 *
 * A failed publish is fatal for the batcher: `add`/`flush` reject from then on, and callbacks of the
 * unstored items are never called, so sources that ack (MQTT) redeliver. A batch split in parts calls its
 * items' callbacks once every part is stored.
 */
export class MicroBatcher {
  private records: WireRecord[] = []
  private rejects: WireReject[] = []
  private callbacks: StoredCallback[] = []
  /** Estimated encoded size of the buffered items (recordSize, rejectSize). */
  private bytes = 0
  /** Some buffered item holds a value whose size string lengths do not tell: measure the batch at the cut. */
  private unsized = false
  private timer: NodeJS.Timeout | undefined
  private seq = 0
  private inFlight = 0
  private waiters: Array<() => void> = []
  private failure: unknown
  private readonly pending = new Set<Promise<void>>()
  private readonly maxBytes: number

  constructor(
    private readonly sink: BatchSink,
    private readonly options: MicroBatcherOptions,
  ) {
    this.maxBytes = options.maxBytes ?? DEFAULT_BATCHING.maxBytes
    if (!(this.maxBytes >= MIN_BATCH_BYTES)) {
      throw new RateflowError(
        ErrorCode.BadConfig,
        `usage batches may take ${this.maxBytes} bytes, fewer than the ${MIN_BATCH_BYTES} a batcher needs: raise the NATS server's max_payload`,
      )
    }
  }

  /** Number of batches handed to the sink. */
  get batches(): number {
    return this.seq
  }

  /** Buffers one record or reject. Returns a promise when the caller must wait for capacity. */
  add(item: { record: WireRecord } | { reject: WireReject }, onStored?: StoredCallback): Promise<void> | undefined {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    let bytes = 'record' in item ? recordSize(item.record) : rejectSize(item.reject)
    if (!(bytes >= 0)) {
      this.unsized = true
      bytes = ITEM_OVERHEAD
    }
    if (this.bytes + bytes > this.maxBytes && this.records.length + this.rejects.length > 0) this.cut()
    if ('record' in item) this.records.push(item.record)
    else this.rejects.push(item.reject)
    this.bytes += bytes
    if (onStored) this.callbacks.push(onStored)
    const size = this.records.length + this.rejects.length
    if (size >= this.options.maxRecords || this.bytes >= this.maxBytes) this.cut()
    else if (size === 1 && this.timer === undefined && Number.isFinite(this.options.maxDelayMs)) {
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
    const { records, rejects, callbacks, bytes, unsized } = this
    this.records = []
    this.rejects = []
    this.callbacks = []
    this.bytes = 0
    this.unsized = false
    const batch: UsageBatch = { id: this.options.batchId(this.seq), records, rejects }
    // The usual batch, by far: its estimate alone shows it fits, and it goes as it is, measured by nobody.
    if (!unsized && surelyFits(bytes, batch.id, this.maxBytes)) {
      this.seq++
      this.send(batch, callbacks)
      return
    }
    const parts: UsageBatch[] = []
    this.fit(batch, parts)
    let left = parts.length
    const stored = () => {
      if (--left === 0) for (const cb of callbacks) cb()
    }
    for (const part of parts) this.send(part, callbacks.length === 0 ? [] : [stored])
  }

  /**
   * Appends to `out` `batch`, or its parts, each at most maxBytes encoded, in order, each with the next id. `batch`
   * carries `batchId(seq)`; a part is rebuilt with its own id when it is not the first.
   */
  private fit(batch: UsageBatch, out: UsageBatch[]): void {
    const { records, rejects } = batch
    const n = records.length + rejects.length
    const bytes = measureBatch(batch)
    if (bytes <= this.maxBytes) {
      this.seq++
      out.push(batch)
      return
    }
    if (n === 1) {
      const reject = oversizeReject(records[0] !== undefined ? { record: records[0] } : { reject: rejects[0]! }, bytes, batch.id, this.maxBytes)
      this.seq++
      out.push({ id: batch.id, records: [], rejects: [reject] })
      return
    }
    // Halves of the items in their order (records, then rejects): the first half, then the second, each with
    // the next free id, so the parts are the same whenever the same batch is split.
    const half = Math.ceil(n / 2)
    const r = Math.min(records.length, half)
    this.fit({ id: batch.id, records: records.slice(0, r), rejects: rejects.slice(0, half - r) }, out)
    this.fit({ id: this.options.batchId(this.seq), records: records.slice(r), rejects: rejects.slice(half - r) }, out)
  }

  private send(batch: UsageBatch, callbacks: StoredCallback[]): void {
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
      // Every waiter is woken: each goes on with its next item, and waits again if the batcher is still full. Waking
      // one per stored batch left waiters behind for good when more were waiting than batches followed (a syslog
      // drain hands on every frame it reads at once), and on failure they see it on their next add.
      for (const w of this.waiters.splice(0)) w()
    })
    this.pending.add(p)
  }
}

/**
 * Bytes an item's estimate adds on top of its strings' lengths: three times it bounds what the encoding spends on
 * an item besides its strings' UTF-8 (counted from the layout: at most 50 bytes of lengths and nils for ten fields,
 * 16 nils for absent dimension keys, 46 for a reject's keys and headers; checked on adversarial batches — empty
 * fields, 100 dimensions a record, 3- and 4-byte text — where the encoding stayed under the bound).
 */
const ITEM_OVERHEAD = 64
/** What each dimension adds on top of its key's and value's lengths: three times it bounds their two headers. */
const DIMENSION_OVERHEAD = 4
/** What a batch spends besides its items and id: its keys, and the headers of up to 26 columns (counted: ~400 bytes). */
const BATCH_OVERHEAD = 1024

/**
 * True when a batch whose items' estimates sum to `estimate` encodes to at most `maxBytes` whatever its text: a
 * UTF-16 code unit takes at most 3 bytes in UTF-8, and three times the overheads bound the encoding's own bytes.
 */
function surelyFits(estimate: number, id: string, maxBytes: number): boolean {
  return 3 * (estimate + id.length) + BATCH_OVERHEAD <= maxBytes
}

/** What textLength gives for a value that is not text: any sum with it stays negative, so one check finds it. */
const UNSIZED = -Infinity

/** Length of a string field; 0 when absent; UNSIZED when it holds something else, whose size only encoding tells. */
function textLength(v: unknown): number {
  if (typeof v === 'string') return v.length
  return v === undefined || v === null ? 0 : UNSIZED
}

/**
 * A record's estimated share of a batch's encoding: its strings' lengths (the bytes of ASCII text) and
 * ITEM_OVERHEAD; negative when a field holds something other than text. String lengths, not UTF-8 byte counts:
 * counting bytes would read every character of every row on the hot path.
 */
function recordSize(r: WireRecord): number {
  let n =
    ITEM_OVERHEAD + textLength(r.event_id) + textLength(r.source) + textLength(r.event_time) + textLength(r.device_id) +
    textLength(r.account_id) + textLength(r.subscription_id) + textLength(r.metric) + textLength(r.quantity) +
    textLength(r.raw) + textLength(r.origin)
  const d = r.dimensions as unknown
  if (d === undefined || d === null) return n
  if (typeof d !== 'object' || Array.isArray(d)) return UNSIZED
  for (const k in d) n += k.length + textLength((d as Record<string, unknown>)[k]) + DIMENSION_OVERHEAD
  return n
}

/** A reject's estimated share of a batch's encoding, as recordSize. */
function rejectSize(j: WireReject): number {
  return ITEM_OVERHEAD + textLength(j.source) + textLength(j.raw) + textLength(j.reason) + textLength(j.origin)
}

/** Longest reason or origin an oversize reject keeps: a reason says what is wrong in a line, not a megabyte. */
const MAX_REJECT_NOTE_CHARS = 1000

/**
 * The reject an item that cannot fit in one batch on its own travels as (it encoded to `bytes` in batch `id`): its
 * raw input cut to the longest UTF-8 prefix that fits, with a reason that says the size, the limit and the cut.
 */
function oversizeReject(item: { record: WireRecord } | { reject: WireReject }, bytes: number, id: string, maxBytes: number): WireReject {
  const limit = `the queue takes at most ${maxBytes} bytes per batch (its NATS server's max_payload less room for headers)`
  let source: string, raw: string, reason: string, origin: unknown
  if ('record' in item) {
    const r = item.record
    source = String(r.source)
    raw = typeof r.raw === 'string' ? r.raw : JSON.stringify(r)
    reason = `record too large for the queue: it encodes to ${bytes} bytes and ${limit}`
    origin = r.origin
  } else {
    const j = item.reject
    source = String(j.source)
    raw = String(j.raw)
    reason = `${String(j.reason).slice(0, MAX_REJECT_NOTE_CHARS)} (and too large for the queue: it encodes to ${bytes} bytes and ${limit})`
    origin = j.origin
  }
  const reject: WireReject = { source, raw: '', reason }
  if (typeof origin === 'string') reject.origin = origin.slice(0, MAX_REJECT_NOTE_CHARS)
  const total = Buffer.byteLength(raw)
  // Sized with the longest the note can be (the kept count has at most as many digits as the total), and 4 bytes
  // for the raw string's header growing from 1 byte (empty) to up to 5.
  const note = (kept: number) => `; raw cut to its first ${kept} of ${total} bytes`
  const room = maxBytes - measureBatch({ id, records: [], rejects: [{ ...reject, reason: reason + note(total) }] }) - 4
  if (total <= room) return { ...reject, raw }
  const buf = new Uint8Array(Math.max(0, room))
  // encodeInto writes whole characters only, so the prefix is valid text that ends where a character ends.
  const { read, written } = new TextEncoder().encodeInto(raw, buf)
  return { ...reject, raw: raw.slice(0, read), reason: reason + note(written) }
}
