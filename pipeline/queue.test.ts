import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { DEFAULT_QUEUE, openQueue } from './queue.js'
import { startNatsServer } from './services/nats-server.js'

const dir = mkdtempSync(join(tmpdir(), 'rateflow-queue-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('a server that stops answering: publish fails naming NATS, the stream and the batch; close() returns after its drain time', async () => {
  const server = await startNatsServer(dir, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  const [pid] = execFileSync('pgrep', ['-f', `nats-server -c ${join(dir, 'nats')}`], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  const queue = await openQueue(server.url, { ...DEFAULT_QUEUE, drainMs: 500 })
  try {
    // Stopped, as a server stuck on a full disk: it neither answers nor closes the connection.
    process.kill(pid!, 'SIGSTOP')
    const batch = { id: 'b-stuck', records: [{ event_id: 'e1', source: 'csv:t', event_time: '2026-10-01T00:00:00Z', device_id: 'd', metric: 'm', quantity: '1' }], rejects: [] }
    await expect(queue.publish(batch)).rejects.toThrow(
      new RegExp(`publishing batch b-stuck to the JetStream stream USAGE on NATS at ${server.url.replaceAll('.', '\\.')} failed: .*no answer`),
    )
    const t = performance.now()
    await queue.close()
    expect(performance.now() - t).toBeLessThan(5_000)
  } finally {
    process.kill(pid!, 'SIGCONT')
    await server.stop()
  }
}, 60_000)
