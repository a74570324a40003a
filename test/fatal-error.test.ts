import { spawn } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { tempDir } from './helpers/cli.js'

/**
 * A process that has opened the embedded store must still die of a fatal error. chDB's SIGABRT handler never
 * returns: without pipeline/store.ts endOnAbort, these processes hung (still running when the test killed them)
 * instead of ending, and a supervisor waiting to restart a dead rater waited for ever.
 */

const STORE = pathToFileURL(resolve(import.meta.dirname, '../dist/pipeline/store.js')).href
const work = tempDir()
afterAll(() => work.cleanup())

/** Runs `body` in a new Node process after it has opened a store and queried it; resolves how it ended. */
function afterStore(body: string, nodeArgs: string[] = []): Promise<{ signal: NodeJS.Signals | null; code: number | null; hung: boolean }> {
  const script = `
    const { openStore } = await import(${JSON.stringify(STORE)})
    const store = await openStore({ dataDir: ${JSON.stringify(work.dir)} + '/' + process.pid })
    await store.migrate()
    await store.rows('SELECT 1')
    ${body}`
  const child = spawn(process.execPath, [...nodeArgs, '--input-type=module', '-e', script], { stdio: 'ignore' })
  return new Promise((done) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      done({ signal: null, code: null, hung: true })
    }, 30_000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      done({ signal, code, hung: false })
    })
  })
}

describe('a process with the embedded store open', () => {
  it('ends on abort()', async () => {
    expect(await afterStore('setTimeout(() => process.abort(), 50)')).toEqual({ signal: 'SIGABRT', code: null, hung: false })
  }, 60_000)

  it('ends when it runs out of heap (V8 aborts)', async () => {
    const r = await afterStore('const keep = []; setTimeout(() => { for (;;) keep.push(new Array(1e5).fill(String(keep.length))) }, 50)', [
      '--max-old-space-size=48',
    ])
    expect(r).toEqual({ signal: 'SIGABRT', code: null, hung: false })
  }, 60_000)

  it('ends on a SIGABRT sent from outside', async () => {
    expect(await afterStore("process.kill(process.pid, 'SIGABRT'); setInterval(() => {}, 1000)")).toEqual({ signal: 'SIGABRT', code: null, hung: false })
  }, 60_000)
})
