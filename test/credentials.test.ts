import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { freePort } from '../common/net.js'
import { serviceProgram } from '../pipeline/services/program.js'
import { killStrayChildren, rateflow, tempDir, writeJson, type CliResult } from './helpers/cli.js'

/**
 * Credentials on the way to the services, and secrets kept out of what Rateflow prints: NATS_URL's `user:password@` or
 * `token@` against real nats-servers with authorization; CLICKHOUSE_URL, NATS_URL and MQTT urls with passwords quoted
 * masked; the local nats-server Rateflow starts takes only its own token; the data directory Rateflow makes is its
 * owner's alone. Real CLI, nats-server, embedded ClickHouse.
 */
const tmp = tempDir('rateflow-credentials-')
const servers: ChildProcess[] = []
afterEach(() => {
  killStrayChildren()
})
afterAll(() => {
  for (const s of servers) s.kill('SIGKILL')
  tmp.cleanup()
})

const EXAMPLES = join(import.meta.dirname, '..', 'examples')
const USAGE_COUNTS = { read: 8, rated: 6, duplicates: 0, rejected: 1, suspended: 1 }

/** A nats-server with JetStream and `authorization { … }`, on a free port; `login` is what the test logs in with to see it answer. */
async function authNats(name: string, authorization: string, login: { user: string; pass: string } | { token: string }): Promise<number> {
  const port = await freePort()
  const dir = join(tmp.dir, name)
  mkdirSync(dir, { recursive: true })
  const conf = join(dir, 'nats.conf')
  writeFileSync(conf, `authorization {\n${authorization}\n}\n`)
  const server = spawn(serviceProgram('nats-server')!, ['-c', conf, '-js', '-a', '127.0.0.1', '-p', String(port), '-sd', join(dir, 'store')], { stdio: 'ignore' })
  servers.push(server)
  for (let i = 0; ; i++) {
    const nc = await connect({ servers: `127.0.0.1:${port}`, ...login, reconnect: false }).catch(() => undefined)
    if (nc !== undefined) {
      await nc.close()
      return port
    }
    if (i === 100) throw new Error(`nats-server ${name} did not answer on ${port}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** catalog apply, accounts apply and ingest csv --wait of the examples on a new data directory, with `env`. */
async function examplesThrough(env: Record<string, string>, name: string): Promise<CliResult[]> {
  const d = ['--data', join(tmp.dir, name)]
  const results: CliResult[] = []
  for (const args of [
    ['catalog', 'apply', join(EXAMPLES, 'catalog.json')],
    ['accounts', 'apply', join(EXAMPLES, 'accounts.json')],
    ['ingest', 'csv', join(EXAMPLES, 'usage.csv'), '--source', 'csv:oct-export', '--wait'],
  ]) {
    const r = await rateflow([...args, ...d], env)
    results.push(r)
    if (r.code !== 0) break
  }
  return results
}

describe('NATS_URL with credentials, against nats-servers that require them', () => {
  it('user:password@: the examples are rated; a password with @ : / , % percent-encoded too', async () => {
    const odd = 'p@ss:w/rd,%'
    const port = await authNats('userpass', `  users: [\n    { user: rfuser, password: S3cretNatsPw }\n    { user: odd, password: ${JSON.stringify(odd)} }\n  ]`, { user: 'rfuser', pass: 'S3cretNatsPw' })
    const plain = await examplesThrough({ NATS_URL: `nats://rfuser:S3cretNatsPw@127.0.0.1:${port}` }, 'userpass-data')
    expect(plain.map((r) => [r.code, r.stderr])).toEqual([[0, ''], [0, ''], [0, '']])
    expect(JSON.parse(plain[2]!.stdout)).toEqual(USAGE_COUNTS)
    // Several servers with the same credentials (one down), and the host:port form without a scheme.
    const dead = await freePort()
    const login = `odd:${encodeURIComponent(odd)}`
    const encoded = await examplesThrough({ NATS_URL: `${login}@127.0.0.1:${dead}, nats://${login}@127.0.0.1:${port}` }, 'odd-data')
    expect(encoded.map((r) => [r.code, r.stderr])).toEqual([[0, ''], [0, ''], [0, '']])
    expect(JSON.parse(encoded[2]!.stdout)).toEqual(USAGE_COUNTS)
  })

  it('a wrong password: exit 1 naming the server with the password masked, never the password', async () => {
    const port = await authNats('wrongpw', '  user: rfuser\n  password: S3cretNatsPw', { user: 'rfuser', pass: 'S3cretNatsPw' })
    const data = join(tmp.dir, 'wrongpw-data')
    const env = { NATS_URL: `nats://rfuser:WrongNatsPw@127.0.0.1:${port}` }
    const ingest = await rateflow(['ingest', 'csv', join(EXAMPLES, 'usage.csv'), '--source', 'csv:oct-export', '--wait', '--data', data], env)
    expect([ingest.code, ingest.stderr.trim()]).toEqual([
      1,
      `rateflow: cannot reach NATS at nats://rfuser:***@127.0.0.1:${port} (NATS_URL, or the local nats-server): Authorization Violation`,
    ])
    // An apply stores its file, then cannot release held usage: said without the password either.
    const apply = await rateflow(['accounts', 'apply', join(EXAMPLES, 'accounts.json'), '--data', data], env)
    expect(apply.code).toBe(1)
    expect(apply.stderr).toContain(`stored, but held usage was not released`)
    expect(apply.stderr).toContain(`nats://rfuser:***@127.0.0.1:${port}`)
    for (const r of [ingest, apply]) expect(r.stdout + r.stderr).not.toContain('WrongNatsPw')
  })

  it('token@: the examples are rated; a wrong token is exit 1 with the token masked', async () => {
    const port = await authNats('token', '  token: "S3cretNatsToken"', { token: 'S3cretNatsToken' })
    const good = await examplesThrough({ NATS_URL: `nats://S3cretNatsToken@127.0.0.1:${port}` }, 'token-data')
    expect(good.map((r) => [r.code, r.stderr])).toEqual([[0, ''], [0, ''], [0, '']])
    expect(JSON.parse(good[2]!.stdout)).toEqual(USAGE_COUNTS)
    const bad = await rateflow(['ingest', 'csv', join(EXAMPLES, 'usage.csv'), '--source', 'csv:x', '--wait', '--data', join(tmp.dir, 'badtoken-data')], {
      NATS_URL: `nats://WrongNatsToken@127.0.0.1:${port}`,
    })
    expect([bad.code, bad.stderr.trim()]).toEqual([1, `rateflow: cannot reach NATS at nats://***@127.0.0.1:${port} (NATS_URL, or the local nats-server): Authorization Violation`])
    expect(bad.stderr).not.toContain('WrongNatsToken')
  })

  it('servers of one NATS_URL with different credentials, or none: exit 2 naming NATS_URL, the passwords masked', async () => {
    const r = await rateflow(['catalog', 'list', '--data', join(tmp.dir, 'mixed')], { NATS_URL: 'nats://rfuser:S3cretNatsPw@127.0.0.1:4222,nats://rfuser:OtherNatsPw@127.0.0.1:4223' })
    expect([r.code, r.stderr.trim()]).toEqual([
      2,
      // Of several servers, each is masked after its scheme: a password holding an unencoded , or @ cuts the list anywhere.
      'rateflow: NATS_URL: "nats://***" and "nats://***" carry different credentials: the client logs in to every server of the list with one user and password, or one token, so give each server the same `user:password@` or `token@`, or none',
    ])
    const none = await rateflow(['catalog', 'list', '--data', join(tmp.dir, 'mixed')], { NATS_URL: 'nats://127.0.0.1:4222,S3cretNatsToken@127.0.0.1:4223' })
    expect([none.code, none.stderr]).toEqual([2, expect.stringContaining('"nats://***" and "***" carry different credentials')])
    for (const x of [r, none]) expect(x.stderr).not.toMatch(/S3cret|OtherNatsPw/)
  })
})

describe('secrets in messages', () => {
  it('an invalid CLICKHOUSE_URL or NATS_URL is quoted with its password masked', async () => {
    const data = join(tmp.dir, 'invalid')
    const ch = await rateflow(['catalog', 'list', '--data', data], { CLICKHOUSE_URL: 'tcp://rateflow:S3cretChPw@ch:9000/rateflow' })
    expect([ch.code, ch.stderr.trim()]).toEqual([2, 'rateflow: CLICKHOUSE_URL: "tcp://rateflow:***@ch:9000/rateflow" is not an http:// or https:// URL of a ClickHouse server (e.g. http://127.0.0.1:8123)'])
    // Unparseable: a "/" in the password, not percent-encoded.
    const slash = await rateflow(['catalog', 'list', '--data', data], { CLICKHOUSE_URL: 'http://rateflow:S3c/retChPw@ch:8123' })
    expect([slash.code, slash.stderr.trim()]).toEqual([2, 'rateflow: CLICKHOUSE_URL: "http://rateflow:***@ch:8123" is not an http:// or https:// URL of a ClickHouse server (e.g. http://127.0.0.1:8123)'])
    const nats = await rateflow(['catalog', 'list', '--data', data], { NATS_URL: 'nats://rfuser:S3cretNatsPw@127.0.0.1:99999' })
    expect([nats.code, nats.stderr.trim()]).toEqual([2, 'rateflow: NATS_URL: "nats://rfuser:***@127.0.0.1:99999" is not a NATS server URL (e.g. nats://127.0.0.1:4222; several are separated by commas)'])
    // A password with a comma, not percent-encoded, reads as two servers: the first one's part is masked too.
    const comma = await rateflow(['catalog', 'list', '--data', data], { NATS_URL: 'nats://rfuser:S3cret,NatsPw@127.0.0.1:4222' })
    expect(comma.code).toBe(2)
    for (const r of [ch, slash, nats, comma]) expect(r.stderr).not.toMatch(/S3c|retChPw|NatsPw/)
  })

  it('a ClickHouse server that does not answer is named without the password', async () => {
    const port = await freePort()
    const r = await rateflow(['query', 'SELECT 1', '--data', join(tmp.dir, 'ch-down')], { CLICKHOUSE_URL: `http://rateflow:S3cretChPw@127.0.0.1:${port}/rateflow` })
    expect(r.code).toBe(1)
    expect(r.stderr).not.toContain('S3cretChPw')
  })

  it('MQTT urls with user:password are masked in config problems and in start errors', async () => {
    const data = join(tmp.dir, 'mqtt-data')
    const mqtt = (url: string, extra: object = {}) =>
      writeJson(join(tmp.dir, 'mqtt-rateflow.json'), { adapters: { mqtt: [{ url, topics: ['devices/+/usage'], source: 'mqtt:plant', ...extra }] }, http: { port: 0 } })
    const spaced = await rateflow(['run', '--config', mqtt('mqtt://rfmqtt:S3cret MqttPw@127.0.0.1:1883'), '--data', data])
    expect([spaced.code, spaced.stderr]).toEqual([2, expect.stringContaining('$.adapters.mqtt[0].url: must not contain spaces or control characters, got "mqtt://rfmqtt:***@127.0.0.1:1883"')])
    const slash = await rateflow(['run', '--config', mqtt('mqtt://rfmqtt:S3c/retMqttPw@127.0.0.1:99999'), '--data', data])
    expect([slash.code, slash.stderr]).toEqual([2, expect.stringContaining('$.adapters.mqtt[0].url: has "/", "?" or "#" before its last "@"')])
    // Nothing listens there: start fails after connect_timeout_s, naming the broker.
    const port = await freePort()
    const down = await rateflow(['run', '--config', mqtt(`mqtt://rfmqtt:S3cretMqttPw@127.0.0.1:${port}`, { connect_timeout_s: 1 }), '--data', data])
    expect([down.code, down.stderr]).toEqual([1, expect.stringContaining(`no connection to mqtt://rfmqtt:***@127.0.0.1:${port} within 1s`)])
    for (const r of [spaced, slash, down]) expect(r.stdout + r.stderr).not.toMatch(/S3c|MqttPw/)
  })
})

describe('the local nats-server and the data directory', () => {
  it('the data directory rateflow makes is 0700 (its parents too); one that exists keeps its mode', async () => {
    const made = join(tmp.dir, 'fresh', 'parent', 'data')
    const r = await rateflow(['catalog', 'apply', join(EXAMPLES, 'catalog.json'), '--data', made])
    expect([r.code, r.stderr]).toEqual([0, ''])
    for (const dir of [made, join(tmp.dir, 'fresh', 'parent'), join(tmp.dir, 'fresh')]) expect([dir, statSync(dir).mode & 0o777]).toEqual([dir, 0o700])
    const own = join(tmp.dir, 'own-data')
    mkdirSync(own, { mode: 0o755 })
    const s = await rateflow(['catalog', 'apply', join(EXAMPLES, 'catalog.json'), '--data', own])
    expect([s.code, s.stderr]).toEqual([0, ''])
    expect(statSync(own).mode & 0o777).toBe(0o755)
    // What rateflow makes inside it is its owner's alone.
    expect(statSync(join(own, 'catalog')).mode & 0o777).toBe(0o700)
  })

  it('refuses a connection without its token while rateflow runs on it; the token is in a 0600 file, never in the log', async () => {
    const data = join(tmp.dir, 'local-data')
    const inbox = join(tmp.dir, 'local-inbox')
    for (const args of [['catalog', 'apply', join(EXAMPLES, 'catalog.json')], ['accounts', 'apply', join(EXAMPLES, 'accounts.json')]]) {
      const r = await rateflow([...args, '--data', data])
      expect([r.code, r.stderr]).toEqual([0, ''])
    }
    const config = writeJson(join(tmp.dir, 'local-rateflow.json'), { adapters: { csv: [{ watch: inbox, source: 'csv:drop' }] }, http: { port: 0 } })
    const run = rateflow(['run', '--config', config, '--data', data], { RATEFLOW_LOG: 'info' })
    let stderr = ''
    run.child.stderr!.on('data', (d: Buffer) => (stderr += d))
    const http = await new Promise<string>((resolve, reject) => {
      let out = ''
      run.child.stdout!.on('data', (d: Buffer) => {
        out += d
        const line = out.split('\n').find((l) => l.includes('"status":"running"'))
        if (line) resolve((JSON.parse(line) as { http: string }).http)
      })
      void run.then((r) => reject(new Error(`run exited ${r.code} before ready: ${r.stderr}`)))
    })
    const started = stderr.split('\n').find((l) => l.includes('started local nats-server'))
    const url = (JSON.parse(started!) as { url: string }).url
    expect(url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/)
    // Without the token, or with another, the server refuses: no local user can publish usage or purge the stream.
    for (const login of [{}, { token: 'f'.repeat(64) }]) {
      const err = await connect({ servers: url, reconnect: false, ...login }).then(async (nc) => (await nc.close(), undefined), (e: unknown) => e as Error)
      expect(err?.message).toMatch(/Authorization Violation/i)
    }
    const confFile = join(data, 'nats', 'nats-server.conf')
    expect(statSync(confFile).mode & 0o777).toBe(0o600)
    const token = /token: "([0-9a-f]{64})"/.exec(readFileSync(confFile, 'utf8'))![1]!
    const nc = await connect({ servers: url, token, reconnect: false })
    await nc.close()
    // Rateflow itself rates through it.
    mkdirSync(inbox, { recursive: true })
    copyFileSync(join(EXAMPLES, 'usage.csv'), join(inbox, 'usage.csv'))
    const deadline = Date.now() + 60_000
    let outcomes: Record<string, number> = {}
    while (Date.now() < deadline) {
      outcomes = ((await (await fetch(`${http}/v1/stats`)).json()) as { outcomes: Record<string, number> }).outcomes
      if (outcomes.read === 8) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(outcomes).toMatchObject({ read: 8, rated: 6 })
    run.child.kill('SIGINT')
    const done = await run
    expect(done.code).toBe(0)
    expect(done.stdout + done.stderr).not.toContain(token)
  })
})
