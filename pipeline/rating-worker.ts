import { GuidingIndex } from '../catalog/guiding.js'
import { CatalogRepository } from '../catalog/repository.js'
import type { UsageBatch } from '../rating-core/record.js'
import { rejectLine, stageBatch, type StagedBatch } from '../rating-core/stage.js'
import { chTime, tsv } from './tsv.js'
import { isoUtc } from '../common/time.js'
import { BatchDecodeError, decodeBatch } from './batch-wire.js'
import { encodeStaged, type StagedWire } from './staged-wire.js'

/** Message from the rater to a pool worker. `bytes` is moved (transferred), not copied. */
export interface StageTask {
  /** msgpack bytes of a UsageBatch, as stored in JetStream; or a batch built in-process (suspended releases). */
  readonly bytes?: Uint8Array
  readonly batch?: UsageBatch
  readonly dataDir: string
  /** Guiding-data fingerprint the rater holds; the worker reloads its snapshot when it differs. */
  readonly fingerprint: string
  readonly receivedAtMs: number
  /** Where `bytes` came from (stream and message), for the reject when they are not a usage batch. */
  readonly origin?: string
  /** The message's id (Nats-Msg-Id, else stream:sequence): the batch id of that reject, the same on redelivery. */
  readonly messageId?: string
}

/** The source of rejects for stream messages that are not usage batches. */
export const UNDECODABLE_SOURCE = 'jetstream:USAGE'

let snapshot: { dir: string; fingerprint: string; index: GuidingIndex } | undefined

/** Piscina entry: decode → stage (validate, guide, match charges, TSV). Returns the StagedBatch, encoded for the trip back. */
export default function stage(task: StageTask): StagedWire {
  if (!snapshot || snapshot.dir !== task.dataDir || snapshot.fingerprint !== task.fingerprint) {
    const repo = new CatalogRepository(task.dataDir)
    snapshot = { dir: task.dataDir, fingerprint: task.fingerprint, index: new GuidingIndex(repo.catalogs(), repo.accounts()) }
  }
  let batch
  try {
    batch = task.batch ?? decodeBatch(task.bytes!)
  } catch (err) {
    if (!(err instanceof BatchDecodeError)) throw err
    return encodeStaged(undecodable(task, err))
  }
  return encodeStaged(stageBatch(batch, snapshot.index, task.receivedAtMs))
}

/**
 * A message that is not a usage batch is one reject, not a stopped rater: its bytes (base64) and the reason go
 * to rejected_usage, and it is acked like any batch. Counted as one record read and rejected.
 */
export function undecodable(task: StageTask, err: BatchDecodeError): StagedBatch {
  const batchId = task.messageId ?? `undecodable-${task.receivedAtMs}`
  const raw = Buffer.from(task.bytes!.buffer, task.bytes!.byteOffset, task.bytes!.byteLength).toString('base64')
  const reason = `${err.message} (raw is the message's bytes in base64)`
  const line = rejectLine({ source: UNDECODABLE_SOURCE, raw, reason, ...(task.origin ? { origin: task.origin } : {}) }, chTime(isoUtc(task.receivedAtMs)), tsv(batchId))
  return { batchId, read: 1, rejectLines: [line], records: [] }
}
