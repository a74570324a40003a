import { GuidingIndex } from '../catalog/guiding.js'
import { CatalogRepository } from '../catalog/repository.js'
import type { UsageBatch } from '../rating-core/record.js'
import { stageBatch } from '../rating-core/stage.js'
import { decodeBatch } from './queue.js'
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
}

let snapshot: { dir: string; fingerprint: string; index: GuidingIndex } | undefined

/** Piscina entry: decode → stage (validate, guide, match charges, TSV). Returns the StagedBatch, encoded for the trip back. */
export default function stage(task: StageTask): StagedWire {
  if (!snapshot || snapshot.dir !== task.dataDir || snapshot.fingerprint !== task.fingerprint) {
    const repo = new CatalogRepository(task.dataDir)
    snapshot = { dir: task.dataDir, fingerprint: task.fingerprint, index: new GuidingIndex(repo.catalogs(), repo.accounts()) }
  }
  const batch = task.batch ?? decodeBatch(task.bytes!)
  return encodeStaged(stageBatch(batch, snapshot.index, task.receivedAtMs))
}
