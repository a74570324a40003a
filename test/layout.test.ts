import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

/**
 * The layout issue 2 asks for (ARCHITECTURE's style): TypeScript, strict, ESM, compiled to plain JS that worker
 * threads run; every top-level code folder exposes its API through one index.ts that names its exports (no
 * `export *`); the `rateflow` CLI is package.json's `bin`; docker-compose.yml describes a server deployment.
 */

const ROOT = resolve(import.meta.dirname, '..')
const FOLDERS = ['adapters', 'bench', 'catalog', 'cli', 'common', 'pipeline', 'rating-core'] as const
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8')

describe('the layout', () => {
  it('is a strict ESM TypeScript project with the rateflow CLI as its bin, compiling every code folder', () => {
    const pkg = JSON.parse(read('package.json')) as { type: string; bin: Record<string, string> }
    expect(pkg.type).toBe('module')
    expect(pkg.bin).toEqual({ rateflow: 'bin/rateflow.js' })
    expect(read('bin/rateflow.js')).toContain("from '../dist/cli/main.js'")
    const ts = JSON.parse(read('tsconfig.json')) as { compilerOptions: { strict: boolean; module: string }; include: string[] }
    expect(ts.compilerOptions).toMatchObject({ strict: true, module: 'NodeNext' })
    for (const f of FOLDERS) expect(ts.include).toContain(f)
    expect(existsSync(resolve(ROOT, 'docker-compose.yml'))).toBe(true)
  })

  it.each(FOLDERS)('%s/index.ts names its exports, and its compiled module loads', async (folder) => {
    const source = read(`${folder}/index.ts`)
    expect(source).not.toMatch(/export \*/)
    expect(source).toMatch(/export \{/)
    const mod = (await import(pathToFileURL(resolve(ROOT, 'dist', folder, 'index.js')).href)) as Record<string, unknown>
    expect(Object.keys(mod).length).toBeGreaterThan(0)
  })
})
