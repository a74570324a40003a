import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { Kvm } from '@nats-io/kv'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { freePort } from '../common/net.js'
import { processIdentity } from '../pipeline/data-dir-lock.js'
import { LEASE_BUCKET, LEASE_KEY, RaterLease } from '../pipeline/rater-lease.js'
import { serviceProgram } from '../pipeline/services/program.js'
import { startNatsServer, type LocalNatsServer } from '../pipeline/services/nats-server.js'
import { json, killStrayChildren, query, rateflow, tempDir, writeJson } from './helpers/cli.js'

/**
 * One rater per USAGE stream. With NATS_URL, nothing else stops a second rater (another data directory, another
 * host, a server-mode store): it would rate with state of its own, and its start-up recovery would delete rows
 * the first has written but not committed yet. Real nats-server (JetStream), real CLI processes.
 */
const tmp = tempDir()
let server: LocalNatsServer
let nc: NatsConnection
const never = () => undefined

beforeAll(async () => {
  server = await startNatsServer(join(tmp.dir, 'nats'))
  nc = await connect({ servers: server.url, token: server.token })
})
afterEach(async () => {
  killStrayChildren()
  await (await new Kvm(nc).create(LEASE_BUCKET)).purge(LEASE_KEY).catch(() => undefined)
})
afterAll(async () => {
  await nc?.close()
  await server?.stop()
  tmp.cleanup()
})

/** A lease entry as a rater on another host writes it. */
async function heldElsewhere(ttlMs = 30_000): Promise<void> {
  const kv = await new Kvm(nc).create(LEASE_BUCKET, { ttl: ttlMs, history: 1 })
  await kv.put(LEASE_KEY, JSON.stringify({ host: 'rater-7.example', pid: 4242, dataDir: '/srv/rateflow', since: '2026-11-22T08:00:00.000Z' }))
}

describe('RaterLease', () => {
  it('is taken by one at a time; released, the next takes it', async () => {
    const a = await RaterLease.acquire(nc, '/data/a', { ttlMs: 30_000, force: false, onLost: never })
    // This process is alive, so its own lease is not taken over.
    await expect(RaterLease.acquire(nc, '/data/b', { ttlMs: 30_000, force: false, onLost: never })).rejects.toThrow(
      new RegExp(`being rated by rateflow process ${process.pid} on ${hostname()} \\(data /data/a, since .+\\): one rater at a time`),
    )
    await a.release()
    const b = await RaterLease.acquire(nc, '/data/b', { ttlMs: 30_000, force: false, onLost: never })
    await b.release()
  })

  it('a holder on another host keeps it while it renews; a forced take-over makes the holder lose it', async () => {
    await heldElsewhere()
    await expect(RaterLease.acquire(nc, '/data/c', { ttlMs: 30_000, force: false, onLost: never })).rejects.toThrow(
      /being rated by rateflow process 4242 on rater-7\.example \(data \/srv\/rateflow.*lapses 30 s after its last renewal/,
    )
    const old = await RaterLease.acquire(nc, '/data/c', { ttlMs: 30_000, force: true, onLost: never })
    await old.release()
    let lost: Error | undefined
    // A holder renews its lease every third of its lapse time (here 600 ms: every 200 ms); a forced take-over then
    // makes its next renewal fail, and the holder hears of it.
    const kv = await new Kvm(nc).create(LEASE_BUCKET)
    const holder = await RaterLease.acquire(nc, '/data/d', { ttlMs: 600, force: false, onLost: (e) => (lost = e) })
    const first = (await kv.get(LEASE_KEY))!.revision
    await new Promise((r) => setTimeout(r, 1000))
    const now = (await kv.get(LEASE_KEY))!
    expect(now.json<{ dataDir: string }>().dataDir).toBe('/data/d')
    expect(now.revision).toBeGreaterThanOrEqual(first + 3)
    expect(lost).toBeUndefined()
    expect(holder.isCurrent()).toBe(true)
    const taker = await RaterLease.acquire(nc, '/data/e', { ttlMs: 600, force: true, onLost: never })
    await new Promise((r) => setTimeout(r, 500))
    expect(lost?.message).toBe('lost the rater lease on the USAGE stream (another rater took it)')
    expect(holder.isCurrent()).toBe(false)
    await holder.release()
    expect((await kv.get(LEASE_KEY))?.json<{ dataDir: string }>().dataDir).toBe('/data/e')
    await taker.release()
  })

  it('a holder keeps its lease through an outage of the server shorter than the lapse time (renewals fail, then get through), and loses it after a longer one', async () => {
    // The holder's connection goes through a proxy that can cut it: an outage the client reconnects after.
    const sockets = new Set<Socket>()
    const target = new URL(server.url)
    let proxy = createServer((c) => {
      const s = netConnect(Number(target.port), target.hostname)
      for (const x of [c, s]) {
        sockets.add(x)
        x.on('error', () => undefined)
        x.on('close', () => sockets.delete(x))
      }
      c.pipe(s).pipe(c)
    })
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()))
    const port = (proxy.address() as AddressInfo).port
    let isUp = true
    const down = async () => {
      isUp = false
      await new Promise<void>((r) => {
        proxy.close(() => r())
        for (const s of sockets) s.destroy()
      })
    }
    const up = async () => {
      if (isUp) return
      const next = createServer(proxy.listeners('connection')[0] as (s: Socket) => void)
      await new Promise<void>((r, reject) => next.once('error', reject).listen(port, '127.0.0.1', () => r()))
      proxy = next
      isUp = true
    }
    const viaProxy = await connect({ servers: `nats://127.0.0.1:${port}`, token: server.token, reconnectTimeWait: 100, maxReconnectAttempts: -1 })
    let lost: Error | undefined
    const failed: Error[] = []
    // Renewed every 4 s, requests time out after 2 s, lapses after 12 s: it may act for 8 s after a renewal.
    const holder = await RaterLease.acquire(viaProxy, '/data/f', { ttlMs: 12_000, force: false, onLost: (e) => (lost = e), onRenewFailed: (e) => failed.push(e) })
    const revision = () => (holder as unknown as { revision: number }).revision
    try {
      await down()
      await new Promise((r) => setTimeout(r, 5_000)) // a renewal falls in the outage and fails
      await up()
      await new Promise((r) => setTimeout(r, 5_000)) // a later one gets through
      expect(failed.length).toBeGreaterThan(0)
      expect(lost).toBeUndefined()
      expect(holder.isCurrent()).toBe(true)
      // Down from just after a renewal, past two thirds of the lapse time but not past the lapse: it may not act
      // meanwhile, and a renewal that gets through once the server is back keeps it (an outage of 10–20 s used to stop
      // the rater for good, though no one else could have taken the stream).
      const before = revision()
      while (revision() === before) await new Promise((r) => setTimeout(r, 20))
      await down()
      await new Promise((r) => setTimeout(r, 8_500))
      expect([holder.isCurrent(), lost]).toEqual([false, undefined])
      await up()
      expect(await holder.current()).toBe(true)
      expect(lost).toBeUndefined()
      await down()
      // Past the lapse time, and the renewal failing after it (each waits up to 2 s, then 1 s to the next).
      await new Promise((r) => setTimeout(r, 16_000))
      expect(lost?.message).toMatch(/^lost the rater lease on the USAGE stream \(not renewed for \d+\.\d s: /)
      expect(holder.isCurrent()).toBe(false)
      expect(await holder.current()).toBe(false)
    } finally {
      await up().catch(() => undefined)
      await holder.release().catch(() => undefined)
      await viaProxy.close()
      proxy.close()
    }
  }, 90_000)

  it('a holder on this host whose process is gone is taken over at once', async () => {
    const kv = await new Kvm(nc).create(LEASE_BUCKET, { ttl: 30_000, history: 1 })
    // A pid far above any live one (pid_max is at most 4,194,304).
    await kv.put(LEASE_KEY, JSON.stringify({ host: hostname(), pid: 4_194_303, dataDir: '/data/killed', since: '2026-11-22T08:00:00.000Z' }))
    const lease = await RaterLease.acquire(nc, '/data/f', { ttlMs: 30_000, force: false, onLost: never })
    expect((await kv.get(LEASE_KEY))?.json<{ pid: number }>().pid).toBe(process.pid)
    await lease.release()
  })

  it("a holder on this host with this process's pid but another process's start is taken over at once: the pid was reused", async () => {
    // A container's node runs as pid 1 after every restart: the killed one's lease named pid 1, alive (this process),
    // and the restarted rater was refused as "held by process 1" until the lease lapsed, 30 s of exit 2 restarts.
    const kv = await new Kvm(nc).create(LEASE_BUCKET, { ttl: 30_000, history: 1 })
    const mine = processIdentity()
    expect(mine).toBeDefined()
    await kv.put(LEASE_KEY, JSON.stringify({ host: hostname(), pid: process.pid, dataDir: '/data/before', since: '2026-11-22T08:00:00.000Z', start: '1', boot: mine!.boot, pidns: mine!.pidns }))
    const lease = await RaterLease.acquire(nc, '/data/after', { ttlMs: 30_000, force: false, onLost: never })
    expect((await kv.get(LEASE_KEY))?.json<{ dataDir: string; start: string }>()).toMatchObject({ dataDir: '/data/after', start: mine!.start })
    await lease.release()
  })

  it('a holder on this host in another pid namespace is not judged by this one\'s pids: it keeps the lease until it lapses', async () => {
    // Two containers with one hostname each run node as pid 1: the other's pid 1, with another start time, was taken
    // for a dead predecessor, and both raters held the stream at once.
    const kv = await new Kvm(nc).create(LEASE_BUCKET, { ttl: 30_000, history: 1 })
    const mine = processIdentity()!
    await kv.put(LEASE_KEY, JSON.stringify({ host: hostname(), pid: process.pid, dataDir: '/data/other-ns', since: '2026-11-22T08:00:00.000Z', start: '1', boot: mine.boot, pidns: 'pid:[1]' }))
    await expect(RaterLease.acquire(nc, '/data/h', { ttlMs: 30_000, force: false, onLost: never })).rejects.toThrow(/being rated by rateflow process \d+ .*data \/data\/other-ns/)
  })

  it('a renewal that finds the lease rewritten with its own text (a renewal it gave up on, applied late) goes on holding it', async () => {
    // A server stalled for seconds applies a renewal the holder had stopped waiting for: the revision moved, the text is
    // the holder's own. Taken for another rater's, the run stopped during the very outage it means to survive.
    let lost: Error | undefined
    const holder = await RaterLease.acquire(nc, '/data/i', { ttlMs: 30_000, force: false, onLost: (e) => (lost = e) })
    try {
      const kv = await new Kvm(nc).create(LEASE_BUCKET, { ttl: 30_000, history: 1 })
      const entry = (await kv.get(LEASE_KEY))!
      await kv.put(LEASE_KEY, entry.string())
      await (holder as unknown as { renew(): Promise<void> }).renew()
      await (holder as unknown as { renew(): Promise<void> }).renew()
      expect([lost, holder.isCurrent()]).toEqual([undefined, true])
      // Another rater's text under a new revision is a take-over, as before.
      await kv.put(LEASE_KEY, JSON.stringify({ ...entry.json<object>(), dataDir: '/data/someone-else' }))
      await (holder as unknown as { renew(): Promise<void> }).renew()
      expect(lost?.message).toBe('lost the rater lease on the USAGE stream (another rater took it)')
    } finally {
      await holder.release()
    }
  })

  it('a server that cannot hold the lease is named, not a client stack', async () => {
    const port = await freePort()
    const plain = spawn(serviceProgram('nats-server')!, ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
    try {
      let c: NatsConnection | undefined
      for (let i = 0; i < 50 && c === undefined; i++) {
        c = await connect({ servers: `127.0.0.1:${port}` }).catch(async () => {
          await new Promise((r) => setTimeout(r, 100))
          return undefined
        })
      }
      try {
        const err = await RaterLease.acquire(c!, '/data/g', { ttlMs: 30_000, force: false, onLost: never }).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(err).toBeInstanceOf(RateflowError)
        expect([(err as RateflowError).code, (err as Error).message]).toEqual([
          ErrorCode.ServiceUnavailable,
          expect.stringMatching(new RegExp(`^taking the rater lease on NATS at 127\\.0\\.0\\.1:${port} failed: .+ \\(is the server up, with JetStream storage free\\?`)),
        ])
      } finally {
        await c?.close()
      }
    } finally {
      plain.kill()
    }
  })
})

describe('the CLI with a shared NATS_URL while another rater holds the stream', () => {
  it('ingest --wait exits 2 naming the holder; ingest without --wait and catalog apply work; once it is gone, --wait rates everything', async () => {
    const data = join(tmp.dir, 'cli')
    const env = { NATS_URL: server.authUrl }
    const size = { customers: 2, devicesPerAccount: 2 }
    await json(['catalog', 'apply', writeJson(join(tmp.dir, 'catalog.json'), sampleCatalog()), '--data', data], env)
    await json(['accounts', 'apply', writeJson(join(tmp.dir, 'accounts.json'), sampleAccounts(size)), '--data', data], env)
    const csv = join(tmp.dir, 'usage.csv')
    writeFileSync(csv, [...sampleCsvLines({ events: 50, size, seed: 9 })].join('\n') + '\n')

    await heldElsewhere()
    const refused = await rateflow(['ingest', 'csv', csv, '--source', 'csv:lease', '--wait', '--data', data], env)
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/the USAGE stream is being rated by rateflow process 4242 on rater-7\.example .*one rater at a time/)
    // Publishing needs no lease, nor does a catalog apply (its release is left to the rater that holds the stream).
    expect(await json(['ingest', 'csv', csv, '--source', 'csv:lease', '--data', data], env)).toMatchObject({ read: 50 })
    expect(await json(['catalog', 'apply', join(tmp.dir, 'catalog.json'), '--data', data], env)).toBeDefined()

    await (await new Kvm(nc).create(LEASE_BUCKET)).purge(LEASE_KEY)
    // The rater of this run takes the lease and rates the batches published above, then this file's again (duplicates).
    const counts = await json<Record<string, number>>(['ingest', 'csv', csv, '--source', 'csv:lease', '--wait', '--data', data], env)
    expect(counts).toEqual({ read: 50, rated: 0, duplicates: 50, rejected: 0, suspended: 0 })
    const [rated] = await query<{ n: string }>(data, "SELECT uniqExact(event_id) AS n FROM rated_usage WHERE source = 'csv:lease'")
    expect(Number(rated!.n)).toBe(50)
  })
})
