import { existsSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { CatalogRepository } from '../catalog/repository.js'
import type { Logger } from '../common/logger.js'
import { acquireLock } from './data-dir-lock.js'
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
  /** True when the store is chDB under the data directory (no CLICKHOUSE_URL): no other process shares it. */
  readonly embeddedStore: boolean
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

/**
 * Makes the data directory (and its missing parents) with mode 0700 when it does not exist: it holds customer data
 * (catalog/accounts.json), the store's parts, the queue's files and the local nats-server's token, which under a umask
 * of 022 every local user could read. A directory that exists is left as it is: its mode is its owner's choice.
 */
export function makeDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
}

export function openRuntime(opts: RuntimeOptions): Runtime {
  const dataDir = resolve(opts.dataDir)
  makeDataDir(dataDir)
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
    embeddedStore: !opts.clickhouseUrl,
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
          url = nats.authUrl
          // Its address without the token.
          opts.log.info({ url: nats.url }, 'started local nats-server')
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
 * The store of an existing data directory, opened for analysts' reads (`rateflow query`): unlike Runtime.store(), it
 * creates nothing and migrates nothing. A mistyped `--data` made a new store (directories, tables, migrations) and
 * answered `0` with exit 0, as if the billing data were empty. Embedded, a directory without `clickhouse/` is bad usage
 * naming it; the directory's lock is taken as by any opener (chDB binds a directory to one process). With
 * CLICKHOUSE_URL, no DDL runs: a server without the tables answers that the table is unknown.
 */
export async function openStoreToRead(opts: { dataDir: string; clickhouseUrl?: string | undefined }): Promise<{ store: Store; close(): Promise<void> }> {
  const dataDir = resolve(opts.dataDir)
  if (opts.clickhouseUrl) {
    const store = await openStore({ dataDir, url: opts.clickhouseUrl, toRead: true })
    return { store, close: () => store.close() }
  }
  if (!existsSync(join(dataDir, 'clickhouse'))) {
    throw new RateflowError(
      ErrorCode.BadUsage,
      `no Rateflow store in ${dataDir} (it has no clickhouse/): give --data the data directory your Rateflow writes (the default is ./.rateflow)`,
    )
  }
  const release = acquireLock(dataDir)
  try {
    const store = await openStore({ dataDir, toRead: true })
    return {
      store,
      close: async () => {
        try {
          await store.close()
        } finally {
          release()
        }
      },
    }
  } catch (err) {
    release()
    throw err
  }
}
