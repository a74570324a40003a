import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { CatalogRepository } from '../catalog/repository.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import type { Logger } from '../common/logger.js'
import { openQueue, type Queue } from './queue.js'
import { startNatsServer, type LocalNatsServer } from './services/nats-server.js'
import { openStore, type Store } from './store.js'

/** The services one rateflow process works with, opened for a data directory. */
export interface Runtime {
  readonly dataDir: string
  readonly repo: CatalogRepository
  readonly log: Logger
  /** Opened on first use: the embedded store may be owned by one process only. */
  store(): Promise<Store>
  queue(): Promise<Queue>
  /** True when this process runs its own nats-server (no NATS_URL): no other rater shares the queue. */
  readonly ownsQueue: boolean
  close(): Promise<void>
}

export interface RuntimeOptions {
  readonly dataDir: string
  readonly log: Logger
  /** NATS_URL; absent → a local nats-server with its store under dataDir. */
  readonly natsUrl?: string | undefined
  /** CLICKHOUSE_URL; absent → chDB embedded under dataDir. */
  readonly clickhouseUrl?: string | undefined
}

export function openRuntime(opts: RuntimeOptions): Runtime {
  const dataDir = resolve(opts.dataDir)
  mkdirSync(dataDir, { recursive: true })
  const repo = new CatalogRepository(dataDir)
  let store: Promise<Store> | undefined
  let queue: Promise<Queue> | undefined
  let nats: LocalNatsServer | undefined
  let lock: (() => void) | undefined
  return {
    dataDir,
    repo,
    log: opts.log,
    ownsQueue: !opts.natsUrl,
    store() {
      store ??= (async () => {
        if (!opts.clickhouseUrl) lock = acquireLock(dataDir)
        const s = await openStore({ dataDir, url: opts.clickhouseUrl })
        await s.migrate()
        return s
      })()
      return store
    },
    queue() {
      queue ??= (async () => {
        let url = opts.natsUrl
        if (!url) {
          lock ??= acquireLock(dataDir)
          nats = await startNatsServer(dataDir)
          url = nats.url
          opts.log.info({ url }, 'started local nats-server')
        }
        return openQueue(url)
      })()
      return queue
    },
    async close() {
      if (queue) await (await queue.catch(() => undefined))?.close()
      if (nats) await nats.stop()
      if (store) await (await store.catch(() => undefined))?.close()
      lock?.()
    },
  }
}

/**
 * One process owns a data directory at a time: chDB binds its directory to one process, and the local
 * nats-server's store is one server's. The lock file holds the owner's pid; a lock whose process is gone
 * (kill -9) is taken over.
 */
function acquireLock(dataDir: string): () => void {
  const file = join(dataDir, 'owner.pid')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(file, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(file, 'utf8').trim())
      if (pid && pid !== process.pid && alive(pid)) {
        throw new RateflowError(
          ErrorCode.BadUsage,
          `data directory ${dataDir} is in use by rateflow process ${pid}; stop it, or use another --data`,
        )
      }
      rmSync(file, { force: true })
    }
  }
  throw new RateflowError(ErrorCode.Internal, `could not lock ${dataDir}`)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
