import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, afterEach } from 'vitest'

export const BIN = resolve(import.meta.dirname, '../../bin/rateflow.js')

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

const running = new Set<ChildProcess>()

/**
 * Kills (SIGKILL) every `rateflow` child still running; returns how many. Registered after each test so
 * a test that times out leaves no process holding its data directory for the tests that follow.
 */
export function killStrayChildren(): number {
  const n = running.size
  for (const c of running) c.kill('SIGKILL')
  running.clear()
  return n
}

/** Runs the real `rateflow` binary (built dist) as a child process. */
export function rateflow(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<CliResult> & { child: ChildProcess } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd !== undefined ? { cwd } : {}) })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => (stdout += d))
  child.stderr!.on('data', (d: Buffer) => (stderr += d))
  running.add(child)
  const p = new Promise<CliResult>((resolve) =>
    child.on('close', (code, signal) => {
      running.delete(child)
      resolve({ code, signal, stdout, stderr })
    }),
  ) as Promise<CliResult> & { child: ChildProcess }
  p.child = child
  return p
}

/** A fresh data directory, removed by the returned cleanup. */
export function tempDir(prefix = 'rateflow-test-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * A data directory for one test file's CLI runs: removed after the file's tests, with any child process a test left
 * running killed after each test. `d` is `['--data', data]`.
 */
export function cliDataDir(): { data: string; d: string[] } {
  const tmp = tempDir()
  afterEach(() => {
    killStrayChildren()
  })
  afterAll(() => tmp.cleanup())
  return { data: tmp.dir, d: ['--data', tmp.dir] }
}

export function writeJson(path: string, value: unknown): string {
  writeFileSync(path, JSON.stringify(value, null, 2))
  return path
}

/** `rateflow query SQL --format JSONEachRow` → rows. Throws with stderr when the query fails. */
export async function query<T = Record<string, unknown>>(data: string, sql: string): Promise<T[]> {
  const r = await rateflow(['query', sql, '--data', data])
  if (r.code !== 0) throw new Error(`query failed (${r.code}): ${r.stderr}`)
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T)
}

/** Runs a command and parses its JSON stdout; throws with stderr on a non-zero exit. */
export async function json<T>(args: string[], env: Record<string, string> = {}): Promise<T> {
  const r = await rateflow(args, env)
  if (r.code !== 0) throw new Error(`rateflow ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

/**
 * Runs one statement on the embedded store of `data`, in a process of its own (chDB binds a data directory to one
 * process): what a test does to a store by hand, as a ClickHouse server's merges or another process's writes would.
 */
export async function storeCommand(data: string, sql: string): Promise<void> {
  const dist = resolve(import.meta.dirname, '../../dist')
  const script = `
    const { openRuntime } = await import(${JSON.stringify(join(dist, 'pipeline/runtime.js'))})
    const { createLogger } = await import(${JSON.stringify(join(dist, 'common/logger.js'))})
    const rt = openRuntime({ dataDir: ${JSON.stringify(data)}, log: createLogger('test', 'error') })
    const store = await rt.store()
    await store.command(${JSON.stringify(sql)})
    await rt.close()
    process.exit(0)`
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])
}

/**
 * A data directory of its own, with `catalog` and `accounts` applied through the CLI, for `body` (given the directory
 * and its `--data` arguments); removed after it, whatever `body` does.
 */
export async function withAppliedData<T>(prefix: string, catalog: unknown, accounts: unknown, body: (dir: string, d: string[]) => Promise<T>): Promise<T> {
  const t = tempDir(prefix)
  const d = ['--data', t.dir]
  try {
    await json(['catalog', 'apply', writeJson(join(t.dir, 'catalog.json'), catalog), ...d])
    await json(['accounts', 'apply', writeJson(join(t.dir, 'accounts.json'), accounts), ...d])
    return await body(t.dir, d)
  } finally {
    t.cleanup()
  }
}

/**
 * A process that holds `dir`'s lock and is no `rateflow run` (as a long `rateflow query` or an `ingest --wait` is),
 * resolved once it holds it; it lets go and ends after `forMs` when given, else when killed. Fails, not hangs, when
 * it ends before it holds the directory.
 */
export async function lockHolder(dir: string, forMs?: number): Promise<ChildProcess> {
  const lockModule = JSON.stringify(resolve(import.meta.dirname, '../../dist/pipeline/data-dir-lock.js'))
  const end = forMs === undefined ? 'setInterval(() => {}, 1000)' : `setTimeout(() => { release(); process.exit(0) }, ${forMs})`
  const holder = spawn(
    process.execPath,
    ['--input-type=module', '-e', `const { acquireLock } = await import(${lockModule}); const release = acquireLock(${JSON.stringify(dir)}); console.log('held'); ${end}`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  running.add(holder)
  holder.once('exit', () => running.delete(holder))
  await new Promise<void>((ok, fail) => {
    holder.stdout!.once('data', () => ok())
    holder.once('exit', (code, signal) => fail(new Error(`the holder process ended (${code ?? signal}) before it held the data directory`)))
  })
  return holder
}
