import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { validateAccounts } from './accounts.js'
import { CatalogRepository } from './repository.js'
import { validateCatalog } from './validate-catalog.js'

const dirs: string[] = []
const repo = () => {
  const dir = mkdtempSync(join(tmpdir(), 'rateflow-repo-'))
  dirs.push(dir)
  return { dir, repo: new CatalogRepository(dir) }
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

describe('CatalogRepository.fingerprint', () => {
  it('changes with a new catalog version and with the accounts, and not when the same version is stored again', () => {
    const { repo: r } = repo()
    const empty = r.fingerprint()
    expect(r.putCatalog(validateCatalog(sampleCatalog()))).toBe('created')
    const one = r.fingerprint()
    expect(one).not.toBe(empty)
    expect(r.putCatalog(validateCatalog(sampleCatalog()))).toBe('unchanged')
    expect(r.fingerprint()).toBe(one)
    r.putAccounts(validateAccounts(sampleAccounts({ customers: 1, devicesPerAccount: 1 })))
    expect(r.fingerprint()).not.toBe(one)
  })

  // Another process applying a catalog writes `<version>.json.<pid>.tmp`, then renames it. A rater reading the
  // fingerprint in between used to hash the temporary file, or throw when it was gone by the time it read it.
  it('leaves out a version still being written (its .tmp file), as catalogs() does', () => {
    const { dir, repo: r } = repo()
    r.putCatalog(validateCatalog(sampleCatalog()))
    const before = r.fingerprint()
    const tmp = join(dir, 'catalog', 'versions', '2026-12-a.json.4242.tmp')
    writeFileSync(tmp, '{"version": "2026-12-a", "half wri')
    expect(r.fingerprint()).toBe(before)
    expect(r.catalogs().map((c) => c.version)).toEqual(['2026-11-a'])
    unlinkSync(tmp)
    expect(r.fingerprint()).toBe(before)
  })
})
