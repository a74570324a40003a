import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, RateflowError } from '../common/errors.js'
import type { AccountsDocument, Catalog } from './types.js'

/** The accounts file of data directory `dataDir`. */
const accountsFile = (dataDir: string) => join(dataDir, 'catalog', 'accounts.json')

/** The accounts stored under data directory `dataDir` (none when it has none), read without creating anything. */
export function storedAccounts(dataDir: string): AccountsDocument {
  const file = accountsFile(dataDir)
  if (!existsSync(file)) return { customers: [] }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    // A read's message does not say of what (`EISDIR: illegal operation on a directory, read`).
    throw new RateflowError(ErrorCode.NotFound, `${file}: cannot read the stored accounts: ${(err as Error).message}`, { cause: err })
  }
  return JSON.parse(text) as AccountsDocument
}

/** The catalog versions stored under data directory `dataDir` (none when it has none), oldest effective_from first, read without creating anything. */
export function storedCatalogs(dataDir: string): Catalog[] {
  const dir = join(dataDir, 'catalog', 'versions')
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Catalog)
    .sort((a, b) => Date.parse(a.effective_from) - Date.parse(b.effective_from) || a.version.localeCompare(b.version))
}

/**
 * Guiding data on disk under `<data>/catalog/`: one JSON file per catalog version and one accounts file.
 * Plain files, so every process (CLI, rater, scheduler) reads them without owning the store, and a
 * billing engineer can read them too. Writes are atomic (write + rename).
 */
export class CatalogRepository {
  private readonly dir: string
  constructor(private readonly dataDir: string) {
    this.dir = join(dataDir, 'catalog')
    // 0700 as the data directory when made (pipeline/runtime.ts, makeDataDir): customer data, also in a directory made by hand.
    mkdirSync(join(this.dir, 'versions'), { recursive: true, mode: 0o700 })
  }

  /** Every stored catalog version, oldest effective_from first. */
  catalogs(): Catalog[] {
    return storedCatalogs(this.dataDir)
  }

  /** Stores a validated catalog version. Same version and same content: 'unchanged'. */
  putCatalog(catalog: Catalog): 'created' | 'unchanged' | 'replaced' {
    const file = join(this.dir, 'versions', `${encodeURIComponent(catalog.version)}.json`)
    const text = JSON.stringify(catalog, null, 2) + '\n'
    let outcome: 'created' | 'unchanged' | 'replaced' = 'created'
    if (existsSync(file)) {
      if (readFileSync(file, 'utf8') === text) return 'unchanged'
      outcome = 'replaced'
    }
    atomicWrite(file, text)
    return outcome
  }

  accounts(): AccountsDocument {
    return storedAccounts(this.dataDir)
  }

  putAccounts(doc: AccountsDocument): void {
    atomicWrite(accountsFile(this.dataDir), JSON.stringify(doc, null, 2) + '\n')
  }

  /**
   * Cheap to ask per batch (two stat calls): changes when a catalog version is added or replaced (the versions
   * folder's modification time, as each is renamed into it) or the accounts file is replaced (a new file each time,
   * by rename: another inode, time and size). A change here is worth reading `fingerprint()` for; the fingerprint
   * is what says the content changed (a file system with coarse times may miss two changes in one tick here, so
   * raters ask the fingerprint once a second too).
   */
  stamp(): string {
    const versions = statSync(join(this.dir, 'versions'), { bigint: true })
    const acc = statSync(accountsFile(this.dataDir), { bigint: true, throwIfNoEntry: false })
    return `${versions.mtimeNs}:${acc === undefined ? '-' : `${acc.ino}:${acc.mtimeNs}:${acc.size}`}`
  }

  /**
   * Changes whenever a catalog version or the accounts change; raters reload guiding data on a change. Reads the
   * files catalogs() reads: a version being written (its `.tmp` file, renamed away a moment later) is not part of
   * it, and reading that file after its rename would throw in a running rater.
   */
  fingerprint(): string {
    const h = createHash('sha1')
    const dir = join(this.dir, 'versions')
    for (const f of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) h.update(f).update(readFileSync(join(dir, f)))
    const acc = accountsFile(this.dataDir)
    if (existsSync(acc)) h.update(readFileSync(acc))
    return h.digest('hex')
  }
}

function atomicWrite(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, text)
  renameSync(tmp, file)
}
