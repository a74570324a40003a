import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, expect, it } from 'vitest'
import { freePort } from '../common/net.js'
import { startNatsServer } from '../pipeline/services/nats-server.js'
import { serviceProgram } from '../pipeline/services/program.js'
import { killStrayChildren, rateflow, tempDir } from './helpers/cli.js'

/**
 * The queue and the data directory as an operator gets them wrong: every mistake exits at once with a message that
 * says what and where (CONTRACT §1), instead of a stack trace or a process that never ends.
 */
const tmp = tempDir('rateflow-services-')
afterEach(() => {
  killStrayChildren()
})
afterAll(() => tmp.cleanup())

const csv = join(tmp.dir, 'f.csv')
writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\ne1,2026-10-05T11:00:00Z,fw-1,,,api_calls,1\n')

it('a NATS_URL server without JetStream: exit 1 at once, naming the address and -js (it used to hang for ever)', async () => {
  const port = await freePort()
  const nats = spawn(serviceProgram('nats-server')!, ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
  try {
    await new Promise((r) => setTimeout(r, 500))
    for (const args of [['ingest', 'csv', csv, '--source', 'csv:x', '--wait'], ['ingest', 'csv', csv, '--source', 'csv:x']]) {
      const r = await rateflow([...args, '--data', join(tmp.dir, 'd1')], { NATS_URL: `nats://127.0.0.1:${port}` })
      expect(r.code).toBe(1)
      expect(r.stderr.trim()).toBe(`rateflow: NATS at nats://127.0.0.1:${port} has no JetStream: start nats-server with -js (JetStream), or unset NATS_URL to let rateflow start its own`)
    }
  } finally {
    nats.kill('SIGKILL')
  }
}, 60_000)

it('a NATS_URL nothing answers: exit 1 naming the address, no stack trace', async () => {
  const port = await freePort()
  const r = await rateflow(['ingest', 'csv', csv, '--source', 'csv:x', '--wait', '--data', join(tmp.dir, 'd2')], { NATS_URL: `nats://127.0.0.1:${port}` })
  expect(r.code).toBe(1)
  expect(r.stderr.trim()).toBe(`rateflow: cannot reach NATS at nats://127.0.0.1:${port} (NATS_URL, or the local nats-server): connection refused`)
})

it('a NATS_URL of several servers: any that answers is used (only the last one was)', async () => {
  const nats = await startNatsServer(join(tmp.dir, 'several-nats'))
  try {
    const dead = await freePort()
    const accounts = join(import.meta.dirname, '..', 'examples', 'accounts.json')
    for (const url of [`${nats.authUrl}, nats://${nats.token}@127.0.0.1:${dead}`, `nats://${nats.token}@127.0.0.1:${dead},${nats.authUrl}`]) {
      const r = await rateflow(['accounts', 'apply', accounts, '--data', join(tmp.dir, 'several')], { NATS_URL: url })
      expect([url, r.code, r.stderr]).toEqual([url, 0, expect.not.stringContaining('cannot reach NATS')])
    }
  } finally {
    await nats.stop()
  }
}, 60_000)

it('a --data that is a file: exit 2, bad usage', async () => {
  const file = join(tmp.dir, 'afile')
  writeFileSync(file, 'hi\n')
  const r = await rateflow(['ingest', 'csv', csv, '--data', file])
  expect([r.code, r.stderr.trim()]).toEqual([2, `rateflow: --data ${file} is not a directory`])
})
