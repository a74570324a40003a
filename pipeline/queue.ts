import { connect, type NatsConnection } from '@nats-io/transport-node'
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { redactUrl } from '../common/redact.js'
import type { UsageBatch } from '../rating-core/record.js'
import { encodeBatch, maxBatchBytesFor, NATS_DEFAULT_MAX_PAYLOAD } from './batch-wire.js'
import { parseNatsUrl } from './nats-url.js'

export { decodeBatch, encodeBatch } from './batch-wire.js'

/**
 * A batch whose encoding is larger than the queue takes in one message. The batchers bound their batches by
 * `Queue.maxBatchBytes`, so this means a batch was made without that bound; nothing of it was published.
 */
export class BatchTooLargeError extends RateflowError {
  constructor(
    readonly batchId: string,
    readonly bytes: number,
    readonly maxBytes: number,
  ) {
    super(ErrorCode.Internal, `usage batch ${batchId} takes ${bytes} bytes; the queue takes at most ${maxBytes} per batch (NATS max_payload less room for the message id header)`)
    this.name = 'BatchTooLargeError'
  }
}

/** Stream and consumer names are part of the deployment: other tools may read them. */
export const USAGE_STREAM = 'USAGE'
export const USAGE_SUBJECT = 'usage.batches'
export const RATER_DURABLE = 'rater'

export interface QueueOptions {
  /** How long a delivered batch may stay unacked before JetStream redelivers it. */
  readonly ackWaitMs: number
  /** Batches delivered but unacked at once (bounds the rater's memory). */
  readonly maxAckPending: number
  /** Publishes with the same message id within this window are dropped by JetStream. */
  readonly duplicateWindowMs: number
  /** How long close() waits for the connection to drain before closing it anyway; DRAIN_MS by default. */
  readonly drainMs?: number
  /** How long a publish is tried again while the stream is full or the server does not answer; PUBLISH_RETRY_MS by default (at most half the duplicate window). */
  readonly publishRetryMs?: number
}

/** close()'s wait for a drain: pending publishes and acks take milliseconds on a server that reads its socket. */
export const DRAIN_MS = 5_000
export const DEFAULT_QUEUE: Readonly<QueueOptions> = Object.freeze({
  ackWaitMs: 120_000,
  maxAckPending: 256,
  duplicateWindowMs: 120_000,
})

/** A connection to JetStream with the USAGE stream and the rater's durable pull consumer in place. */
export interface Queue {
  readonly nc: NatsConnection
  readonly js: JetStreamClient
  /**
   * The most bytes a batch's encoding may take, from the server's max_payload as the connection last learned it
   * (less room for the message id header). Batchers cut their batches by it.
   */
  readonly maxBatchBytes: number
  /**
   * Publishes one batch with `Nats-Msg-Id = batch.id`; resolves when JetStream stored it. Rejects with
   * BatchTooLargeError, publishing nothing, when the encoding is larger than `maxBatchBytes`.
   */
  publish(batch: UsageBatch): Promise<{ duplicate: boolean }>
  /** Publishes waiting for room in a full stream, or for a server to answer, stop waiting and fail (the caller stops). */
  stopRetrying(): void
  /** The durable pull consumer the rater reads. */
  consumer(): Promise<Consumer>
  /**
   * Recreates the durable consumer so every unacked batch is delivered again now, in stream order. Only
   * for the rater that holds the stream's lease (rater-lease.ts), its only consumer: a killed rater's in-flight batches would
   * otherwise come back after ack_wait, behind newer ones, and per-event amounts (increments of a running
   * total) depend on the order events are folded in.
   */
  resetConsumer(): Promise<void>
  close(): Promise<void>
}

/**
 * Connects to `url` (NATS_URL's form, parseNatsUrl: several servers comma-separated, each with the same `user:password@`
 * or `token@`, or none) and sets up the stream and the rater's consumer. Messages name the servers with their password
 * or token masked (redactUrl).
 */
export async function openQueue(url: string, options: QueueOptions = DEFAULT_QUEUE): Promise<Queue> {
  const target = parseNatsUrl(url)
  const shown = redactUrl(url)
  let nc: NatsConnection
  try {
    // Several servers as a list: the client reads one string as one server (the last URL of the list). The credentials
    // as options: the client takes none from a server's URL.
    nc = await connect({ servers: [...target.servers], ...target.auth, name: `rateflow-${process.pid}`, maxReconnectAttempts: -1 })
  } catch (err) {
    throw new RateflowError(ErrorCode.ServiceUnavailable, `cannot reach NATS at ${shown} (NATS_URL, or the local nats-server): ${(err as Error).message}`, { cause: err })
  }
  try {
    return await setUp(nc, options, shown)
  } catch (err) {
    // Closed, or the client would go on reconnecting to it for ever and the process never end.
    await nc.close().catch(() => undefined)
    if (err instanceof RateflowError) throw err
    const noJetStream = (err as Error).name === 'JetStreamNotEnabled' || /jetstream is not enabled/i.test((err as Error).message)
    throw new RateflowError(
      ErrorCode.ServiceUnavailable,
      noJetStream
        ? `NATS at ${shown} has no JetStream: start nats-server with -js (JetStream), or unset NATS_URL to let rateflow start its own`
        : `setting up the USAGE stream on NATS at ${shown} failed: ${(err as Error).message}`,
      { cause: err },
    )
  }
}

/**
 * What in an existing USAGE stream's settings would lose usage or replay it: a stream made by hand, or by another tool,
 * was used whatever its settings, and one keeping 100 messages with `discard: old` dropped batches before they were
 * rated, without a word. Empty when the settings are safe.
 */
export function streamProblems(config: {
  retention?: string
  discard?: string
  max_msgs?: number
  max_bytes?: number
  max_age?: number
  max_msgs_per_subject?: number
  max_msg_size?: number
}): string[] {
  const problems: string[] = []
  if (config.retention !== RetentionPolicy.Workqueue) {
    problems.push(`retention is ${JSON.stringify(config.retention)}, not "workqueue" (a rated batch must leave the stream once acked, or every start reads it again)`)
  }
  // No limits at all: with `discard: old` a full stream drops batches not rated yet, a per-subject limit drops them
  // even with `discard: new` (every batch has one subject), max_age drops them by age, and with `discard: new` a batch
  // larger than max_bytes never fits. A work queue's size is its backlog already.
  const limits = (['max_msgs', 'max_bytes', 'max_age', 'max_msgs_per_subject', 'max_msg_size'] as const).filter((k) => (config[k] ?? -1) > 0)
  if (limits.length > 0) {
    problems.push(`${limits.map((k) => `${k} ${config[k]}`).join(', ')} (rateflow needs a stream without limits: a limit drops batches not rated yet, or refuses batches it could never take)`)
  }
  return problems
}

/** How long a publish is tried again while the stream is full or the server does not answer, by default. */
export const PUBLISH_RETRY_MS = 60_000

/** A stream that refuses messages because it is full (`discard: new` limits, or the server's JetStream storage). */
function streamFull(err: unknown): boolean {
  return /insufficient resources|maximum (messages|bytes|messages per subject) exceeded/i.test((err as Error).message)
}

/**
 * `send`, tried again for up to `budgetMs` while the failure is one that passes: a full stream (a rater drains it:
 * backpressure, where a rerun of a file larger than the stream failed at the same point each time), or no answer (a
 * server restarting; the client reconnects). Safe under one message id: JetStream drops a publish it already has
 * within its duplicate window, which the budget stays inside. `stopped`: asked before each wait; true ends the retries.
 *
 * Publishes in flight at once (a batcher keeps several) may be stored out of their order while the stream is full:
 * one that failed waits while a later one finds room. Per-event amounts that depend on the order (README, "Amounts are
 * per event") can then differ from a run that was not held up.
 */
export async function retried<T>(send: () => Promise<T>, budgetMs: number, stopped: () => boolean = () => false): Promise<T> {
  const started = Date.now()
  let wait = 100
  for (;;) {
    try {
      return await send()
    } catch (err) {
      const passing = streamFull(err) || (err as Error).name === 'TimeoutError' || /timeout|disconnect|connection closed/i.test((err as Error).message)
      if (!passing || stopped() || Date.now() - started + wait > budgetMs) throw err
      await new Promise((r) => setTimeout(r, wait))
      wait = Math.min(wait * 2, 2_000)
    }
  }
}

/** The stream, the rater's consumer and the Queue on an open connection; `shown` is the servers as messages name them (redactUrl). */
async function setUp(nc: NatsConnection, options: QueueOptions, shown: string): Promise<Queue> {
  const jsm = await jetstreamManager(nc)
  const ms = (n: number) => n * 1_000_000
  // Made when missing: at start, and again when found gone while running (deleted by hand, a server that lost its store).
  const ensureStream = async (): Promise<void> => {
    let existing
    try {
      existing = await jsm.streams.info(USAGE_STREAM)
    } catch {
      existing = undefined
    }
    if (existing !== undefined) {
      const problems = streamProblems(existing.config)
      if (problems.length > 0) {
        throw new RateflowError(
          ErrorCode.BadConfig,
          `the JetStream stream ${USAGE_STREAM} on NATS at ${shown} was made with other settings than rateflow needs: ${problems.join('; ')}. ` +
            `Delete the stream (rateflow makes it again) once nothing in it waits to be rated, or change these settings`,
        )
      }
      return
    }
    // Work-queue retention: a batch is deleted once the rater acks it, so the store's disk use is
    // bounded by the backlog, not by history (history lives in ClickHouse).
    await jsm.streams.add({
      name: USAGE_STREAM,
      subjects: ['usage.>'],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      duplicate_window: ms(options.duplicateWindowMs),
    })
  }
  await ensureStream()
  const addConsumer = () =>
    jsm.consumers.add(USAGE_STREAM, {
      durable_name: RATER_DURABLE,
      ack_policy: AckPolicy.Explicit,
      ack_wait: ms(options.ackWaitMs),
      max_ack_pending: options.maxAckPending,
      filter_subject: USAGE_SUBJECT,
    })
  try {
    await jsm.consumers.info(USAGE_STREAM, RATER_DURABLE)
  } catch {
    await addConsumer()
  }
  const js = jetstream(nc)
  let retriesStopped = false
  const maxBatchBytes = () => maxBatchBytesFor(nc.info?.max_payload ?? NATS_DEFAULT_MAX_PAYLOAD)
  return {
    nc,
    js,
    get maxBatchBytes() {
      return maxBatchBytes()
    },
    publish(batch) {
      // Encoded now, and only the bytes wait for the ack: the batch's record objects die young instead of
      // living (and being copied by the collector) for as long as JetStream takes to answer.
      const bytes = encodeBatch(batch)
      const max = maxBatchBytes()
      // Checked here rather than left to nats.js, whose error says neither which batch nor how large.
      if (bytes.length > max) return Promise.reject(new BatchTooLargeError(batch.id, bytes.length, max))
      const send = () => js.publish(USAGE_SUBJECT, bytes, { msgID: batch.id })
      // No stream takes the subject (it was deleted while running): made again, and the publish sent once more under
      // the same message id (a duplicate if the first did land). Without this every publish failed until a restart.
      const missingStream = (err: unknown) => (err as Error).name === 'JetStreamNotEnabled' || /no responders|jetstream is not enabled/i.test((err as Error).message)
      const once = () => send().catch(async (err: unknown) => (missingStream(err) ? (await ensureStream(), send()) : Promise.reject(err)))
      return retried(once, options.publishRetryMs ?? Math.min(PUBLISH_RETRY_MS, options.duplicateWindowMs / 2), () => retriesStopped).then(
        (ack) => ({ duplicate: ack.duplicate }),
        (err: unknown) => {
          // nats.js says "timeout" and nothing else when the server does not answer (down, or its disk full).
          throw new RateflowError(
            ErrorCode.ServiceUnavailable,
            `publishing batch ${batch.id} to the JetStream stream ${USAGE_STREAM} on NATS at ${shown} failed: ${(err as Error).message}` +
              ((err as Error).name === 'TimeoutError' ? ' (no answer: the server is down, unreachable or out of disk)' : '') +
              (streamFull(err) ? ' (the stream is full: nothing rates its batches, or it is too small for the backlog)' : ''),
            { cause: err },
          )
        },
      )
    },
    stopRetrying() {
      retriesStopped = true
    },
    async consumer() {
      try {
        return await js.consumers.get(USAGE_STREAM, RATER_DURABLE)
      } catch (err) {
        // Gone (deleted by hand, or with its stream): made again, as at start; the rater then pulls again. Any other
        // failure (no answer) is the caller's to see: a stream taken for missing would be made again over its settings.
        if (!/not found/i.test((err as Error).message)) throw err
        await ensureStream()
        await addConsumer().catch(() => undefined)
        return js.consumers.get(USAGE_STREAM, RATER_DURABLE)
      }
    },
    async resetConsumer() {
      // Work-queue retention keeps unacked messages when the consumer goes; the new one starts at the first.
      await jsm.consumers.delete(USAGE_STREAM, RATER_DURABLE).catch(() => undefined)
      await addConsumer()
    },
    async close() {
      // Drained (pending publishes and acks flushed), but not for ever: a server that stopped reading the socket (its
      // disk full) never lets a drain end, and the process then never exits. Closed after DRAIN_MS whatever happens.
      let timer: NodeJS.Timeout | undefined
      const drained = await Promise.race([
        nc.drain().then(
          () => true,
          () => false,
        ),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), options.drainMs ?? DRAIN_MS))),
      ])
      clearTimeout(timer)
      if (!drained) await nc.close().catch(() => undefined)
    },
  }
}

export type { JsMsg }
