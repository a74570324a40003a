import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { connect } from '@nats-io/transport-node'
import { DiscardPolicy, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { DEFAULT_QUEUE, openQueue, retried, streamProblems } from './queue.js'
import { startNatsServer } from './services/nats-server.js'

const dir = mkdtempSync(join(tmpdir(), 'rateflow-queue-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('a server that stops answering: publish fails naming NATS, the stream and the batch; close() returns after its drain time', async () => {
  const server = await startNatsServer(dir, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  const [pid] = execFileSync('pgrep', ['-f', `^[^ ]*nats-server -c ${join(dir, 'nats')}`], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  const queue = await openQueue(server.authUrl, { ...DEFAULT_QUEUE, drainMs: 500, publishRetryMs: 3_000 })
  try {
    // Stopped, as a server stuck on a full disk: it neither answers nor closes the connection.
    process.kill(pid!, 'SIGSTOP')
    const batch = { id: 'b-stuck', records: [{ event_id: 'e1', source: 'csv:t', event_time: '2026-10-01T00:00:00Z', device_id: 'd', metric: 'm', quantity: '1' }], rejects: [] }
    await expect(queue.publish(batch)).rejects.toThrow(
      new RegExp(`publishing batch b-stuck to the JetStream stream USAGE on NATS at nats://\\*\\*\\*@${new URL(server.url).host.replaceAll('.', '\\.')} failed: .*no answer`),
    )
    const t = performance.now()
    await queue.close()
    expect(performance.now() - t).toBeLessThan(5_000)
  } finally {
    process.kill(pid!, 'SIGCONT')
    await server.stop()
  }
}, 60_000)

it('an existing USAGE stream whose settings would drop or replay batches is refused, naming each setting; a safe one is used', async () => {
  const sub = join(dir, 'preset')
  const server = await startNatsServer(sub, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  try {
    const nc = await connect({ servers: server.url, token: server.token })
    const jsm = await jetstreamManager(nc)
    // Made beforehand by another tool: keeps 100 messages and drops the oldest, and keeps acked ones.
    await jsm.streams.add({ name: 'USAGE', subjects: ['usage.>'], retention: RetentionPolicy.Limits, max_msgs: 100, discard: DiscardPolicy.Old })
    const err = await openQueue(server.authUrl).then(() => undefined, (e: unknown) => e as RateflowError)
    expect(err).toBeInstanceOf(RateflowError)
    expect(err!.code).toBe(ErrorCode.BadConfig)
    expect(err!.message).toMatch(/the JetStream stream USAGE on NATS at .* was made with other settings than rateflow needs: retention is "limits", not "workqueue" .*; max_msgs 100 \(rateflow needs a stream without limits: a limit drops batches not rated yet, or refuses batches it could never take\)/)
    // A work queue without limits (as rateflow makes it) is used.
    await jsm.streams.delete('USAGE')
    await jsm.streams.add({ name: 'USAGE', subjects: ['usage.>'], retention: RetentionPolicy.Workqueue })
    const queue = await openQueue(server.authUrl)
    await queue.close()
    await nc.close()
  } finally {
    await server.stop()
  }
}, 60_000)

it('streamProblems: only a work queue without limits is safe', () => {
  expect(streamProblems({ retention: 'workqueue', discard: 'old', max_msgs: -1, max_bytes: -1, max_age: 0 })).toEqual([])
  expect(streamProblems({ retention: 'workqueue', discard: 'new', max_bytes: 1e9 })).toHaveLength(1)
  expect(streamProblems({ retention: 'interest' })).toHaveLength(1)
  expect(streamProblems({ retention: 'workqueue', discard: 'new', max_msgs_per_subject: 3 })).toHaveLength(1)
  expect(streamProblems({ retention: 'workqueue', max_msg_size: -1, max_msgs: -1, max_bytes: -1, max_age: 0, max_msgs_per_subject: -1 })).toEqual([])
})

it('retried: a full stream or no answer is tried again until it passes or the budget ends; other failures, or a stop, end it at once', async () => {
  const failing = (messages: string[], then: string) => {
    let n = 0
    return { calls: () => n, send: async () => (n < messages.length ? Promise.reject(new Error(messages[n++])) : (n++, then)) }
  }
  const full = failing(['maximum messages exceeded', 'insufficient resources'], 'stored')
  await expect(retried(full.send, 5_000)).resolves.toBe('stored')
  expect(full.calls()).toBe(3)
  const bad = failing(['invalid subject'], 'stored')
  await expect(retried(bad.send, 5_000)).rejects.toThrow('invalid subject')
  expect(bad.calls()).toBe(1)
  const forever = failing(Array(100).fill('insufficient resources'), 'stored')
  const t = performance.now()
  await expect(retried(forever.send, 600)).rejects.toThrow('insufficient resources')
  expect(performance.now() - t).toBeLessThan(3_000)
  const stopped = failing(Array(100).fill('insufficient resources'), 'stored')
  await expect(retried(stopped.send, 60_000, () => true)).rejects.toThrow('insufficient resources')
  expect(stopped.calls()).toBe(1)
})
