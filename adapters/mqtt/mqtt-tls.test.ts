/**
 * Credentials and TLS of the MQTT adapter against a real mosquitto: a password listener (password_file made with
 * mosquitto_passwd, anonymous refused), a TLS listener and a TLS listener requiring a client certificate, with a CA
 * and certificates made by openssl at test time in a temp dir.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { MqttAdapter } from './mqtt-adapter.js'
import { DEFAULT_ADAPTER_BATCHING, DEFAULT_MQTT, validateAdapterConfig, type MqttAdapterOptions } from '../config.js'
import type { UsageBatch, WireRecord } from '../../rating-core/record.js'
import { ValidationError } from '../../common/errors.js'
import { startMosquitto, type LocalMosquitto } from '../../pipeline/services/mosquitto.js'
import { makeTestPki, type TestPki } from '../../test/helpers/certs.js'

const USER = 'rateflow'
const PASSWORD = 'correct horse battery staple'
const PW_ENV = 'RATEFLOW_TEST_MQTT_PASSWORD'

let dir = ''
let pki: TestPki
let broker: LocalMosquitto
let passwordPort = 0
let tlsPort = 0
let mtlsPort = 0

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rateflow-mqtt-tls-'))
  pki = await makeTestPki(dir)
  broker = await startMosquitto(dir, [], 10_000, [
    { users: { [USER]: PASSWORD } },
    { tls: { ca: pki.ca, ...pki.server } },
    { tls: { ca: pki.ca, ...pki.server, require_client_cert: true } },
  ])
  ;[passwordPort, tlsPort, mtlsPort] = broker.listenerPorts as [number, number, number]
  process.env[PW_ENV] = PASSWORD
})

afterAll(async () => {
  delete process.env[PW_ENV]
  await broker?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const adapters: MqttAdapter[] = []
afterEach(async () => {
  for (const a of adapters.splice(0)) await a.stop().catch(() => undefined)
})

let ids = 0
function setup(o: Partial<MqttAdapterOptions>) {
  const batches: UsageBatch[] = []
  const options: MqttAdapterOptions = {
    ...DEFAULT_MQTT,
    url: `mqtt://127.0.0.1:${passwordPort}`,
    topics: ['secure/+/usage'],
    source: 'mqtt:secure',
    client_id: `rateflow-tls-${process.pid}-${ids++}`,
    reconnect_period_ms: 200,
    connect_timeout_s: 20,
    batching: { ...DEFAULT_ADAPTER_BATCHING, max_delay_ms: 20 },
    ...o,
  }
  const adapter = new MqttAdapter(options, { sink: async (b) => void batches.push(b), logger: pino({ level: 'silent' }) })
  adapters.push(adapter)
  const records = (): WireRecord[] => batches.flatMap((b) => b.records)
  return { adapter, records }
}

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Publishes QoS 1 records with mosquitto_pub on the broker's anonymous listener (the broker routes across listeners). */
async function publish(device: string, eventIds: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-q', '1', '-t', `secure/${device}/usage`, '-l'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    p.stderr.on('data', (d: Buffer) => (err += d.toString()))
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}: ${err}`))))
    p.stdin.end(eventIds.map((id) => `${JSON.stringify({ event_id: id, event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '5' })}\n`).join(''))
  })
}

/** start() must fail with a message matching `re`, well before connect_timeout_s (20 s): the cause is known at once. */
async function expectStartFails(adapter: MqttAdapter, re: RegExp): Promise<Error & { code?: string }> {
  const t0 = Date.now()
  const err = await adapter.start().then(() => undefined, (e: unknown) => e as Error & { code?: string })
  expect(err, 'start() should have failed').toBeInstanceOf(Error)
  expect(err!.message).toMatch(re)
  expect(Date.now() - t0).toBeLessThan(10_000)
  return err!
}

describe('MQTT username/password on a real mosquitto (password_file, allow_anonymous false)', () => {
  it('the right credentials, from password_env or password_file, let records flow; they are stored and acked', async () => {
    const fromEnv = setup({ username: USER, password_env: PW_ENV, client_id: 'rateflow-pw-env' })
    await fromEnv.adapter.start()
    const file = join(dir, 'mqtt-password.txt')
    writeFileSync(file, `${PASSWORD}\n`, { mode: 0o600 })
    const fromFile = setup({ username: USER, password_file: file, topics: ['secure/+/file'], source: 'mqtt:secure-file', client_id: 'rateflow-pw-file' })
    await fromFile.adapter.start()
    await publish('fw-1', ['p1', 'p2', 'p3'])
    await waitFor(() => fromEnv.records().length === 3, 'three stored records')
    expect(fromEnv.records().map((r) => [r.event_id, r.device_id, r.source])).toEqual([
      ['p1', 'fw-1', 'mqtt:secure'],
      ['p2', 'fw-1', 'mqtt:secure'],
      ['p3', 'fw-1', 'mqtt:secure'],
    ])
    await waitFor(() => fromEnv.adapter.stats.acked === 3, 'three PUBACKs after storage')
    await new Promise<void>((resolve, reject) => {
      const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(passwordPort), '-u', USER, '-P', PASSWORD, '-q', '1', '-t', 'secure/fw-2/file',
        '-m', JSON.stringify({ event_id: 'f1', event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '7' })])
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}`))))
    })
    await waitFor(() => fromFile.records().length === 1, 'the record sent through the password listener')
    expect(fromFile.records()[0]).toMatchObject({ event_id: 'f1', device_id: 'fw-2', quantity: '7', source: 'mqtt:secure-file' })
  })

  it('a wrong password fails start() at once, naming the broker, the cause and where the password came from', async () => {
    process.env.RATEFLOW_TEST_WRONG_PW = 'not the password'
    try {
      const t = setup({ username: USER, password_env: 'RATEFLOW_TEST_WRONG_PW' })
      const err = await expectStartFails(t.adapter, new RegExp(
        `^mqtt mqtt:secure: mqtt://127\\.0\\.0\\.1:${passwordPort} refused the connection: Not authorized \\(reason code 135; check username and the password in RATEFLOW_TEST_WRONG_PW \\(password_env\\), and that the broker lets this user connect\\)$`))
      expect(err.code).toBe('BAD_CONFIG')
    } finally {
      delete process.env.RATEFLOW_TEST_WRONG_PW
    }
    // mosquitto answers a bad password with "not authorised" (MQTT 5: 135, MQTT 3.1.1: return code 5), not "bad password".
    const v4 = setup({ username: USER, password: 'wrong', protocol_version: 4 })
    await expectStartFails(v4.adapter, new RegExp(`mqtt://127\\.0\\.0\\.1:${passwordPort} refused the connection: Not authorized \\(reason code 5;`))
    // No credentials at all on a listener that refuses anonymous clients.
    const anon = setup({})
    await expectStartFails(anon.adapter, /refused the connection: Not authorized \(reason code 135; the broker refuses anonymous clients: set username and password_env or password_file\)$/)
  })
})

describe('MQTT over TLS on a real mosquitto (certificates made by openssl)', () => {
  it('with the CA that signed the broker certificate, records flow over mqtts://', async () => {
    const t = setup({ url: `mqtts://127.0.0.1:${tlsPort}`, tls: { ca: pki.ca, reject_unauthorized: true } })
    await t.adapter.start()
    await publish('fw-7', ['t1', 't2'])
    await waitFor(() => t.records().length === 2, 'two records over TLS')
    expect(t.records().map((r) => [r.event_id, r.device_id])).toEqual([['t1', 'fw-7'], ['t2', 'fw-7']])
    await waitFor(() => t.adapter.stats.acked === 2, 'two acks')
  })

  it('a wrong CA (or none: the public CAs) fails start() at once naming the broker, the verification error and tls.ca', async () => {
    const wrong = setup({ url: `mqtts://127.0.0.1:${tlsPort}`, tls: { ca: pki.otherCa, reject_unauthorized: true } })
    const err = await expectStartFails(wrong.adapter, new RegExp(
      `^mqtt mqtt:secure: TLS with mqtts://127\\.0\\.0\\.1:${tlsPort} failed: .+ \\((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY); check tls\\.ca: it must be the CA \\(chain\\) that signed the broker's certificate\\)$`))
    expect(err.code).toBe('BAD_CONFIG')
    const none = setup({ url: `mqtts://127.0.0.1:${tlsPort}` })
    await expectStartFails(none.adapter, /TLS with mqtts:\/\/127\.0\.0\.1:\d+ failed: .*check tls\.ca/)
  })

  it('mqtts:// to a plain listener fails after connect_timeout_s, saying the port may not be a TLS listener', async () => {
    // mosquitto resets the connection on a ClientHello, which a restarting broker also does: not failed at once.
    const t = setup({ url: `mqtts://127.0.0.1:${broker.port}`, tls: { ca: pki.ca, reject_unauthorized: true }, connect_timeout_s: 2 })
    await expect(t.adapter.start()).rejects.toThrow(/^mqtt mqtt:secure: no connection to mqtts:\/\/127\.0\.0\.1:\d+ within 2s \(last error: read ECONNRESET; with mqtts:\/\/ this often means the port is not a TLS listener\): is an MQTT broker running at that address\?$/)
  })

  it('a broker requiring a client certificate accepts tls.cert/tls.key and refuses a client without one', async () => {
    const withCert = setup({ url: `mqtts://127.0.0.1:${mtlsPort}`, tls: { ca: pki.ca, ...pki.client, reject_unauthorized: true } })
    await withCert.adapter.start()
    await publish('fw-8', ['m1'])
    await waitFor(() => withCert.records().length === 1, 'a record over mutual TLS')
    const without = setup({ url: `mqtts://127.0.0.1:${mtlsPort}`, tls: { ca: pki.ca, reject_unauthorized: true } })
    await expectStartFails(without.adapter, /^mqtt mqtt:secure: TLS with mqtts:\/\/127\.0\.0\.1:\d+ failed: tlsv13 alert certificate required \(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED; the broker refused our TLS handshake: check tls\.cert and tls\.key if it requires a client certificate\)$/)
  })
})

describe('validateAdapterConfig with resources: secrets and TLS files checked before start, each at its path', () => {
  const problems = (doc: unknown, env: Record<string, string> = {}, now?: () => number): string[] => {
    try {
      validateAdapterConfig(doc, { resources: { env, ...(now && { now }) } })
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError)
      return (err as ValidationError).problems.map((p) => `${p.path}: ${p.message}`)
    }
    return []
  }
  const base = { url: 'mqtts://127.0.0.1:8883', topics: ['t/+'] }

  it('accepts real openssl-made files and a set password variable', () => {
    expect(problems({ mqtt: [{ ...base, source: 'mqtt:a', username: 'u', password_env: 'PW', tls: { ca: pki.ca, ...pki.client } }] }, { PW: 'x' })).toEqual([])
  })

  it('names every missing secret, unreadable or non-PEM file, mismatched key and expired certificate', () => {
    const empty = join(dir, 'empty-password.txt')
    writeFileSync(empty, '\n')
    const notPem = join(dir, 'not-pem.pem')
    writeFileSync(notPem, 'hello')
    expect(problems({
      mqtt: [
        { ...base, source: 'mqtt:a', username: 'u', password_env: 'NOT_SET_HERE', tls: { ca: join(dir, 'missing.pem'), cert: pki.client.cert, key: pki.server.key } },
        { ...base, topics: ['u/+'], source: 'mqtt:b', username: 'u', password_file: empty, tls: { ca: notPem } },
        { ...base, topics: ['v/+'], source: 'mqtt:c', username: 'u', password_file: join(dir, 'no-such-file') },
      ],
    })).toEqual([
      '$.adapters.mqtt[0].password_env: environment variable NOT_SET_HERE is not set (or empty)',
      `$.adapters.mqtt[0].tls.ca: cannot read ${join(dir, 'missing.pem')}: ENOENT`,
      `$.adapters.mqtt[0].tls.key: ${pki.server.key} is not the private key of ${pki.client.cert}`,
      `$.adapters.mqtt[1].password_file: ${empty} is empty`,
      `$.adapters.mqtt[1].tls.ca: ${notPem} is not a PEM file (no "-----BEGIN" line; convert DER with openssl x509 -inform der)`,
      `$.adapters.mqtt[2].password_file: cannot read ${join(dir, 'no-such-file')}: ENOENT`,
    ])
    const inThreeDays = () => Date.now() + 3 * 86_400_000
    expect(problems({ mqtt: [{ ...base, source: 'mqtt:a', tls: { cert: pki.client.cert, key: pki.client.key } }] }, {}, inThreeDays))
      .toEqual([expect.stringMatching(/^\$\.adapters\.mqtt\[0\]\.tls\.cert: .*client\.pem expired on .+ GMT$/)])
  })
})

describe('a url with user:password@ (the client logs in with them)', () => {
  it('a refusal, a TLS failure and a broker that never answers name the broker with the password masked', async () => {
    const refused = setup({ url: `mqtt://rfmqtt:S3cretMqttPw@127.0.0.1:${passwordPort}` })
    // The hint names the url as where the password came from (it said the broker refuses anonymous clients).
    const r = await expectStartFails(refused.adapter, new RegExp(`^mqtt mqtt:secure: mqtt://rfmqtt:\\*\\*\\*@127\\.0\\.0\\.1:${passwordPort} refused the connection: Not authorized \\(reason code 135; check username and the password in the url, and that the broker lets this user connect\\)$`))
    const tls = setup({ url: `mqtts://rfmqtt:S3cretMqttPw@127.0.0.1:${tlsPort}`, tls: { ca: pki.otherCa, reject_unauthorized: true } })
    const t = await expectStartFails(tls.adapter, new RegExp(`^mqtt mqtt:secure: TLS with mqtts://rfmqtt:\\*\\*\\*@127\\.0\\.0\\.1:${tlsPort} failed: `))
    const silent = setup({ url: `mqtts://rfmqtt:S3cretMqttPw@127.0.0.1:${broker.port}`, tls: { ca: pki.ca, reject_unauthorized: true }, connect_timeout_s: 2 })
    const s = await silent.adapter.start().then(() => undefined, (e: unknown) => e as Error)
    expect(s?.message).toMatch(new RegExp(`^mqtt mqtt:secure: no connection to mqtts://rfmqtt:\\*\\*\\*@127\\.0\\.0\\.1:${broker.port} within 2s`))
    for (const err of [r, t, s]) expect(err!.message).not.toContain('S3cretMqttPw')
  })
})
