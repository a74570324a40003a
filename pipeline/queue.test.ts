import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { connect } from '@nats-io/transport-node'
import { DiscardPolicy, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { DEFAULT_QUEUE, openQueue, streamProblems } from './queue.js'
import { startNatsServer } from './services/nats-server.js'

const dir = mkdtempSync(join(tmpdir(), 'rateflow-queue-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('a server that stops answering: publish fails naming NATS, the stream and the batch; close() returns after its drain time', async () => {
  const server = await startNatsServer(dir, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  const [pid] = execFileSync('pgrep', ['-f', `nats-server -c ${join(dir, 'nats')}`], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  const queue = await openQueue(server.url, { ...DEFAULT_QUEUE, drainMs: 500, publishRetryMs: 3_000 })
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

it('an existing USAGE stream whose settings would drop or replay batches is refused, naming each setting; a safe one is used', async () => {
  const sub = join(dir, 'preset')
  const server = await startNatsServer(sub, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  try {
    const nc = await connect({ servers: server.url })
    const jsm = await jetstreamManager(nc)
    // Made beforehand by another tool: keeps 100 messages and drops the oldest, and keeps acked ones.
    await jsm.streams.add({ name: 'USAGE', subjects: ['usage.>'], retention: RetentionPolicy.Limits, max_msgs: 100, discard: DiscardPolicy.Old })
    const err = await openQueue(server.url).then(() => undefined, (e: unknown) => e as RateflowError)
    expect(err).toBeInstanceOf(RateflowError)
    expect(err!.code).toBe(ErrorCode.BadConfig)
    expect(err!.message).toMatch(/the JetStream stream USAGE on NATS at .* was made with other settings than rateflow needs: retention is "limits", not "workqueue" .*; discard is "old" with max_msgs 100 \(a full stream would drop batches not rated yet\)/)
    // A work queue that refuses new messages when full (discard new) loses nothing: it is used.
    await jsm.streams.delete('USAGE')
    await jsm.streams.add({ name: 'USAGE', subjects: ['usage.>'], retention: RetentionPolicy.Workqueue, max_msgs: 100_000, discard: DiscardPolicy.New })
    const queue = await openQueue(server.url)
    await queue.close()
    await nc.close()
  } finally {
    await server.stop()
  }
}, 60_000)

it('streamProblems: workqueue with no limits, or limits with discard new, is safe', () => {
  expect(streamProblems({ retention: 'workqueue', discard: 'old', max_msgs: -1, max_bytes: -1, max_age: 0 })).toEqual([])
  expect(streamProblems({ retention: 'workqueue', discard: 'new', max_bytes: 1e9 })).toEqual([])
  expect(streamProblems({ retention: 'interest' })).toHaveLength(1)
  expect(streamProblems({ retention: 'workqueue', discard: 'new', max_age: 3_600_000_000_000 })).toEqual(['max_age is 3600000000000 ns (batches not rated in time would be dropped)'])
})

it('a full stream is backpressure: a publish waits while the rater drains it, and fails naming the full stream only after its budget', async () => {
  const sub = join(dir, 'full')
  const server = await startNatsServer(sub, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  const batch = (id: string) => ({ id, records: [{ event_id: id, source: 'csv:t', event_time: '2026-10-01T00:00:00Z', device_id: 'd', metric: 'm', quantity: '1' }], rejects: [] })
  try {
    const nc = await connect({ servers: server.url })
    // A work queue that holds two batches and refuses more (discard new): safe settings, a small stream.
    await (await jetstreamManager(nc)).streams.add({ name: 'USAGE', subjects: ['usage.>'], retention: RetentionPolicy.Workqueue, max_msgs: 2, discard: DiscardPolicy.New })
    await nc.close()
    const queue = await openQueue(server.url, { ...DEFAULT_QUEUE, publishRetryMs: 10_000 })
    try {
      await queue.publish(batch('f1'))
      await queue.publish(batch('f2'))
      // The third waits for room: a consumer takes one batch 700 ms later.
      const third = queue.publish(batch('f3'))
      setTimeout(() => {
        void (async () => {
          const m = await (await queue.consumer()).next()
          m?.ack()
        })()
      }, 700)
      await expect(third).resolves.toEqual({ duplicate: false })
      // Nothing drains it now: the fourth fails after the budget, saying the stream is full.
      const short = await openQueue(server.url, { ...DEFAULT_QUEUE, publishRetryMs: 1_000 })
      await expect(short.publish(batch('f4'))).rejects.toThrow(/publishing batch f4 .* failed: .*maximum messages exceeded.* \(the stream is full: nothing rates its batches, or it is too small for the backlog\)/)
      await short.close()
    } finally {
      await queue.close()
    }
  } finally {
    await server.stop()
  }
}, 60_000)
