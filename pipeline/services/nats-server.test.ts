import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { startNatsServer } from './nats-server.js'

const dir = mkdtempSync(join(tmpdir(), 'rateflow-nats-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** The pids of processes whose command line holds `text`. */
function pidsOf(text: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', text], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

it('stop() ends a nats-server that does not answer SIGTERM, not only its guard: no orphan keeps the data directory', async () => {
  const server = await startNatsServer(dir, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  const store = join(dir, 'nats')
  const [pid] = pidsOf(`nats-server -c ${store}`)
  expect(pid).toBeGreaterThan(0)
  // Stopped, it cannot act on SIGTERM (as a server stuck on a full disk did not); only SIGKILL ends it.
  process.kill(pid!, 'SIGSTOP')
  await server.stop()
  await new Promise((r) => setTimeout(r, 200))
  expect(pidsOf(`nats-server -c ${store}`)).toEqual([])
}, 30_000)
