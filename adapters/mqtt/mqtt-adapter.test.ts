import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pack } from 'msgpackr'
import pino from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { MqttAdapter, buildClientOptions, subscriptionFilters } from './mqtt-adapter.js'
import { DEFAULT_ADAPTER_BATCHING, DEFAULT_MQTT, DEFAULT_SESSIONS, type MqttAdapterOptions } from '../config.js'
import type { UsageBatch, WireRecord } from '../../rating-core/record.js'
import { freePort } from '../../common/net.js'
import { startMosquitto, type LocalMosquitto } from '../../pipeline/services/mosquitto.js'

const run = promisify(execFile)
let broker: LocalMosquitto
let port = 0
let dir = ''

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rateflow-mqtt-'))
  broker = await startMosquitto(dir)
  port = broker.port
})

afterAll(async () => {
  await broker?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const adapters: MqttAdapter[] = []
afterEach(async () => {
  for (const a of adapters.splice(0)) await a.stop().catch(() => undefined)
})

let ids = 0
function setup(o: Partial<MqttAdapterOptions> = {}, sink?: (b: UsageBatch) => Promise<void>) {
  const batches: UsageBatch[] = []
  const options: MqttAdapterOptions = {
    ...DEFAULT_MQTT,
    url: `mqtt://127.0.0.1:${port}`,
    topics: ['devices/+/usage'],
    source: 'mqtt:plant',
    client_id: `rateflow-test-${process.pid}-${ids++}`,
    reconnect_period_ms: 200,
    connect_timeout_s: 5,
    batching: { ...DEFAULT_ADAPTER_BATCHING, max_delay_ms: 20 },
    ...o,
  }
  const adapter = new MqttAdapter(options, { sink: sink ?? (async (b) => { batches.push(b) }), logger: pino({ level: 'silent' }) })
  const records = (): WireRecord[] => batches.flatMap((b) => b.records)
  return { adapter, batches, records, options }
}

/** Publishes each line as one message (QoS 1 unless told) with a single mosquitto_pub. */
async function publish(topic: string, lines: string[], qos: 0 | 1 = 1): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', String(qos), '-t', topic, '-l'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    p.stderr.on('data', (d: Buffer) => (err += d.toString()))
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}: ${err}`))))
    p.stdin.end(lines.map((l) => `${l}\n`).join(''))
  })
}

const rec = (id: string, extra: Record<string, unknown> = {}) => JSON.stringify({ event_id: id, event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '10', ...extra })

describe('MqttAdapter on a real mosquitto', () => {
  it('receives JSON records and arrays, device_id from the topic, msgpack from a file, rejects bad payloads', async () => {
    const t = setup()
    adapters.push(t.adapter)
    await t.adapter.start()
    await publish('devices/fw-1/usage', [rec('e1'), `[${rec('e2')},${rec('e3', { device_id: 'other' })}]`, '{not json', rec('e4', { quantity: { n: 1 } })])
    const file = join(dir, 'payload.msgpack')
    writeFileSync(file, pack({ event_id: 'e5', event_time: '2026-10-01T12:00:00Z', metric: 'api_calls', quantity: '3' }))
    const m = setup({ format: 'msgpack', topics: ['bin/+/usage'], source: 'mqtt:bin' })
    adapters.push(m.adapter)
    await m.adapter.start()
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', 'bin/fw-5/usage', '-f', file])
    await waitFor(() => t.records().length === 3 && t.batches.flatMap((b) => b.rejects).length === 2 && m.records().length === 1, 'records and rejects')
    expect(t.records().map((r) => [r.event_id, r.device_id, r.origin])).toEqual([
      ['e1', 'fw-1', 'mqtt devices/fw-1/usage'],
      ['e2', 'fw-1', 'mqtt devices/fw-1/usage [0]'],
      ['e3', 'other', 'mqtt devices/fw-1/usage [1]'],
    ])
    const rejects = t.batches.flatMap((b) => b.rejects)
    expect(rejects[0]).toMatchObject({ source: 'mqtt:plant', raw: '{not json', reason: expect.stringMatching(/^invalid JSON: .*[^)]$/) })
    expect(rejects[1]!.reason).toBe('quantity must be a decimal string or number, got an object')
    expect(m.records()[0]).toMatchObject({ event_id: 'e5', device_id: 'fw-5', metric: 'api_calls', quantity: '3', source: 'mqtt:bin' })
    await waitFor(() => t.adapter.stats.acked === 4, 'acks of all four messages')
  })

  it('a payload nested thousands deep is a reject, acked, and the messages after it are read', async () => {
    // Writing an element of it back as raw text overflowed the stack inside the client's message handler: the run
    // ended, and the broker delivered the unacknowledged message again to every restart.
    const t = setup()
    adapters.push(t.adapter)
    await t.adapter.start()
    await publish('devices/fw-1/usage', ['['.repeat(5000) + ']'.repeat(5000), rec('after-deep')])
    await waitFor(() => t.records().length === 1 && t.batches.flatMap((b) => b.rejects).length === 1, 'the reject and the record after it')
    expect(t.batches.flatMap((b) => b.rejects)[0]!.reason).toBe('JSON nested 5000 levels deep: at most 64 are read')
    expect(t.records()[0]!.event_id).toBe('after-deep')
    await waitFor(() => t.adapter.stats.acked === 2, 'acks of both messages')
  })

  it('a batch the sink rejects is redelivered by the broker after the adapter reconnects', async () => {
    let calls = 0
    const stored: UsageBatch[] = []
    const t = setup({ batching: { ...DEFAULT_ADAPTER_BATCHING, max_delay_ms: 300 } }, async (b) => {
      if (calls++ === 0) throw new Error('jetstream unavailable')
      stored.push(b)
    })
    adapters.push(t.adapter)
    await t.adapter.start()
    await publish('devices/fw-2/usage', [rec('r1'), rec('r2'), rec('r3')])
    await waitFor(() => stored.flatMap((b) => b.records).length >= 3, 'redelivered records')
    expect(t.adapter.stats.failedBatches).toBe(1)
    expect(t.adapter.stats.connects).toBeGreaterThanOrEqual(2)
    expect([...new Set(stored.flatMap((b) => b.records).map((r) => r.event_id))].sort()).toEqual(['r1', 'r2', 'r3'])
  })

  it('a crash before storage loses nothing: a new instance with the same client id gets every message, then they are acked', async () => {
    const clientId = `rateflow-crash-${process.pid}`
    const stuck = setup({ client_id: clientId }, () => new Promise<void>(() => undefined))
    await stuck.adapter.start()
    await publish('devices/fw-3/usage', [rec('c1'), rec('c2'), rec('c3')])
    await waitFor(() => stuck.adapter.stats.messages === 3, 'the stuck instance to receive three messages')
    expect(stuck.adapter.stats.acked).toBe(0)
    await stuck.adapter.abort()
    await publish('devices/fw-3/usage', [rec('c4')]) // while nobody is connected: queued in the session

    const next = setup({ client_id: clientId })
    await next.adapter.start()
    await waitFor(() => next.records().length >= 4, 'four records after the restart')
    expect(next.records().map((r) => r.event_id).sort()).toEqual(['c1', 'c2', 'c3', 'c4'])
    await waitFor(() => next.adapter.stats.acked === 4, 'four acks')
    await next.adapter.stop()

    // Everything was acked after storage: a third instance on the same session gets nothing old.
    const third = setup({ client_id: clientId })
    adapters.push(third.adapter)
    await third.adapter.start()
    await new Promise((r) => setTimeout(r, 700))
    expect(third.records()).toEqual([])
    await publish('devices/fw-3/usage', [rec('c5')])
    await waitFor(() => third.records().length === 1, 'the new message')
    expect(third.records()[0]!.event_id).toBe('c5')
  })

  it('shared subscriptions split a topic between instances', async () => {
    const a = setup({ shared_group: 'raters', topics: ['shared/+/usage'] })
    const b = setup({ shared_group: 'raters', topics: ['shared/+/usage'] })
    adapters.push(a.adapter, b.adapter)
    await a.adapter.start()
    await b.adapter.start()
    await publish('shared/fw-9/usage', Array.from({ length: 20 }, (_, i) => rec(`s${i}`)))
    await waitFor(() => a.records().length + b.records().length === 20, 'twenty records in total')
    const all = [...a.records(), ...b.records()].map((r) => r.event_id)
    expect(new Set(all).size).toBe(20)
    expect(a.records().length).toBeGreaterThan(0)
    expect(b.records().length).toBeGreaterThan(0)
  })

  it('sessions: the start message stays unacked until the merged session is stored', async () => {
    const clientId = `rateflow-sess-${process.pid}`
    const t = setup({ client_id: clientId, sessions: { ...DEFAULT_SESSIONS, interim: 'cumulative' } })
    adapters.push(t.adapter)
    await t.adapter.start()
    const ev = (id: string, kind: string, q: string, time: string) =>
      JSON.stringify({ event_id: id, event_time: time, metric: 'bytes_out', quantity: q, dimensions: { session_id: 'S9', session_event: kind } })
    await publish('devices/fw-4/usage', [ev('a', 'start', '0', '2026-10-01T12:00:00Z'), rec('plain'), ev('b', 'interim', '40', '2026-10-01T12:00:30Z')])
    await waitFor(() => t.adapter.stats.acked === 1 && t.adapter.stats.messages === 3, 'the plain message acked')
    await new Promise((r) => setTimeout(r, 200))
    expect(t.adapter.stats.acked).toBe(1)
    await publish('devices/fw-4/usage', [ev('c', 'stop', '90', '2026-10-01T12:01:00Z')])
    await waitFor(() => t.adapter.stats.acked === 4, 'all four acked')
    expect(t.records().filter((r) => r.dimensions?.session_id === 'S9').map((r) => [r.metric, r.quantity, r.device_id])).toEqual([
      ['session_seconds', '60', 'fw-4'],
      ['bytes_out', '90', 'fw-4'],
    ])
  })

  it('sessions: max_open_sessions closes the oldest session early; its held ack is sent once its records are stored', async () => {
    const t = setup({ sessions: { ...DEFAULT_SESSIONS, max_open_sessions: 1 } })
    adapters.push(t.adapter)
    await t.adapter.start()
    const ev = (id: string, session: string) =>
      JSON.stringify({ event_id: id, event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '5', dimensions: { session_id: session, session_event: 'start' } })
    await publish('devices/fw-6/usage', [ev('x1', 'X')])
    await waitFor(() => t.adapter.stats.messages === 1, 'the first start')
    await new Promise((r) => setTimeout(r, 100))
    expect(t.adapter.stats.acked).toBe(0)
    await publish('devices/fw-6/usage', [ev('y1', 'Y')])
    await waitFor(() => t.adapter.stats.acked === 1, 'the ack of the closed session X')
    expect(t.records().map((r) => [r.dimensions?.session_id, r.metric, r.dimensions?.session_close])).toEqual([
      ['X', 'session_seconds', 'max_open_sessions'],
      ['X', 'bytes_out', 'max_open_sessions'],
    ])
    expect(t.adapter.stats).toMatchObject({ sessionsOpen: 1, sessionsEvicted: 1 })
  })

  it('sessions: says when the held acks of open sessions fill receive_maximum (the broker then sends nothing more, stops included)', async () => {
    const warnings: string[] = []
    const options: MqttAdapterOptions = {
      ...setup().options,
      client_id: `rateflow-test-window-${process.pid}`,
      receive_maximum: 3,
      sessions: { ...DEFAULT_SESSIONS, interim: 'cumulative' },
    }
    const adapter = new MqttAdapter(options, { sink: async () => undefined, logger: pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) }) })
    adapters.push(adapter)
    await adapter.start()
    const start = (session: string) =>
      JSON.stringify({ event_id: `w-${session}`, event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '1', dimensions: { session_id: session, session_event: 'start' } })
    await publish('devices/fw-w/usage', ['A', 'B', 'C', 'D'].map(start))
    await waitFor(() => adapter.stats.messages === 3, 'three starts')
    await new Promise((r) => setTimeout(r, 200))
    // The fourth waits at the broker: three acks are held by three open sessions.
    expect(adapter.stats).toMatchObject({ messages: 3, acked: 0, sessionsOpen: 3, ackWindowFull: 1 })
    expect(warnings.map((w) => (JSON.parse(w) as { msg: string }).msg)).toEqual([expect.stringMatching(/fill receive_maximum; the broker sends no more \(stops included\)/)])
  })

  it('sessions: a window full of messages waiting for their batch (no session holds them) is counted, not warned of', async () => {
    const warnings: string[] = []
    const options: MqttAdapterOptions = {
      ...setup().options,
      client_id: `rateflow-test-window2-${process.pid}`,
      receive_maximum: 5,
      sessions: { ...DEFAULT_SESSIONS, interim: 'cumulative' },
    }
    const slow = async () => new Promise<void>((r) => setTimeout(r, 300))
    const adapter = new MqttAdapter(options, { sink: slow, logger: pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) }) })
    adapters.push(adapter)
    await adapter.start()
    const plain = (i: number) => JSON.stringify({ event_id: `p${i}`, event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '1' })
    await publish('devices/fw-p/usage', Array.from({ length: 12 }, (_, i) => plain(i)))
    await waitFor(() => adapter.stats.acked === 12, 'all twelve acked')
    // Stops of sessions that never started: absorbed, and closed by the same message, so no session holds them.
    const stop = (i: number) =>
      JSON.stringify({ event_id: `s${i}`, event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '1', dimensions: { session_id: `S${i}`, session_event: 'stop' } })
    await publish('devices/fw-p/usage', Array.from({ length: 12 }, (_, i) => stop(i)))
    await waitFor(() => adapter.stats.acked === 24, 'all twenty-four acked')
    expect(adapter.stats.ackWindowFull).toBeGreaterThan(0)
    expect(warnings).toEqual([])
  })

  it('sessions on MQTT 3.1.1: says at start that the broker\'s in-flight limit, not receive_maximum, bounds what open sessions hold', async () => {
    const warnings: string[] = []
    const options: MqttAdapterOptions = { ...setup().options, client_id: `rateflow-test-v4-${process.pid}`, protocol_version: 4, sessions: { ...DEFAULT_SESSIONS } }
    const adapter = new MqttAdapter(options, { sink: async () => undefined, logger: pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) }) })
    adapters.push(adapter)
    await adapter.start()
    expect(warnings.map((w) => (JSON.parse(w) as { msg: string }).msg)).toEqual([expect.stringMatching(/^MQTT 3\.1\.1 \(protocol_version 4\) sends no receive_maximum: the broker's limit of in-flight messages/)])
    // At QoS 0 no ack is held, and nothing is said.
    const quiet: string[] = []
    const q0 = new MqttAdapter({ ...options, client_id: `rateflow-test-v4q0-${process.pid}`, qos: 0 }, { sink: async () => undefined, logger: pino({ level: 'warn' }, { write: (l: string) => void quiet.push(l) }) })
    adapters.push(q0)
    await q0.start()
    expect(quiet).toEqual([])
  })

  it('sessions: an event the validate stage would reject is a reject of its own, acked once stored; its session is billed without it', async () => {
    const t = setup({ sessions: { ...DEFAULT_SESSIONS, interim: 'cumulative' } })
    adapters.push(t.adapter)
    await t.adapter.start()
    const ev = (id: string, kind: string, q: string, time = '2026-10-01T12:00:00Z') =>
      JSON.stringify({ event_id: id, event_time: time, metric: 'bytes_out', quantity: q, dimensions: { session_id: 'E7', session_event: kind } })
    await publish('devices/fw-7/usage', [ev('e1', 'start', '10'), ev('e2', 'interim', '1e3'), ev('e3', 'interim', '20', 'Oct 17 2026 13:00'), ev('e4', 'stop', '2e3')])
    await waitFor(() => t.batches.flatMap((b) => b.rejects).length === 3 && t.adapter.stats.acked === 3, 'three rejects, acked')
    const rejects = t.batches.flatMap((b) => b.rejects)
    expect(rejects.map((r) => [JSON.parse(r.raw).event_id, r.origin])).toEqual([
      ['e2', 'mqtt devices/fw-7/usage'],
      ['e3', 'mqtt devices/fw-7/usage'],
      ['e4', 'mqtt devices/fw-7/usage'],
    ])
    expect(rejects[0]!.reason).toBe('quantity "1e3" is not a non-negative decimal with at most 29 integer and 9 fraction digits')
    expect(rejects[1]!.reason).toMatch(/^event_time "Oct 17 2026 13:00" is not an ISO-8601 time with offset/)
    expect(rejects[2]!.reason).toMatch(/^quantity "2e3" /)
    // The refused stop closed nothing: the session stays open with its start, whose ack stays held.
    expect(t.records()).toEqual([])
    expect(t.adapter.stats).toMatchObject({ sessionsOpen: 1, acked: 3 })
    await publish('devices/fw-7/usage', [ev('e5', 'stop', '30', '2026-10-01T12:00:40Z')])
    await waitFor(() => t.adapter.stats.acked === 5, 'all five acked')
    expect(t.records().map((r) => [r.metric, r.quantity, r.dimensions?.session_close])).toEqual([
      ['session_seconds', '40', 'stop'],
      ['bytes_out', '30', 'stop'],
    ])
  })

  it('sessions with qos 0: stop() closes open sessions as shutdown and stores them, as nothing redelivers their messages', async () => {
    const t = setup({ qos: 0, sessions: { ...DEFAULT_SESSIONS, interim: 'cumulative' } })
    await t.adapter.start()
    const ev = (id: string, kind: string, q: string, time: string, session = 'Q0') =>
      JSON.stringify({ event_id: id, event_time: time, metric: 'bytes_out', quantity: q, dimensions: { session_id: session, session_event: kind } })
    await publish('devices/fw-8/usage', [ev('q1', 'start', '0', '2026-10-01T12:00:00Z'), ev('q2', 'interim', '40', '2026-10-01T12:00:30Z'), ev('q3', 'start', '7', '2026-10-01T12:00:10Z', 'Q1')], 0)
    await waitFor(() => t.adapter.stats.messages === 3, 'three messages')
    expect(t.adapter.stats.sessionsOpen).toBe(2)
    await t.adapter.stop()
    expect(t.records().map((r) => [r.dimensions?.session_id, r.metric, r.quantity, r.dimensions?.session_close])).toEqual([
      ['Q0', 'session_seconds', '30', 'shutdown'],
      ['Q0', 'bytes_out', '40', 'shutdown'],
      ['Q1', 'session_seconds', '0', 'shutdown'],
      ['Q1', 'bytes_out', '7', 'shutdown'],
    ])
    expect(t.adapter.stats.sessionsOpen).toBe(0)
  })

  it('sessions with qos 1: stop() leaves a session of QoS 1 messages open for redelivery, and closes one holding a message published at QoS 0', async () => {
    const clientId = `rateflow-sess-stop-${process.pid}`
    const t = setup({ client_id: clientId, sessions: { ...DEFAULT_SESSIONS, interim: 'cumulative' } })
    await t.adapter.start()
    const ev = (id: string, session: string) =>
      JSON.stringify({ event_id: id, event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '9', dimensions: { session_id: session, session_event: 'start' } })
    await publish('devices/fw-9/usage', [ev('k1', 'K1')], 1)
    await publish('devices/fw-9/usage', [ev('k0', 'K0')], 0)
    await waitFor(() => t.adapter.stats.messages === 2, 'two messages')
    await t.adapter.stop()
    expect(t.records().map((r) => [r.dimensions?.session_id, r.metric, r.dimensions?.session_close])).toEqual([
      ['K0', 'session_seconds', 'shutdown'],
      ['K0', 'bytes_out', 'shutdown'],
    ])
    expect(t.adapter.stats).toMatchObject({ sessionsOpen: 1, acked: 0 })

    const next = setup({ client_id: clientId, sessions: { ...DEFAULT_SESSIONS, interim: 'cumulative' } })
    adapters.push(next.adapter)
    await next.adapter.start()
    await waitFor(() => next.adapter.stats.messages === 1, 'the QoS 1 start redelivered')
    expect(next.adapter.stats.sessionsOpen).toBe(1)
    expect(next.records()).toEqual([])
  })

  it('start() fails with a clear error when the broker is unreachable, logging the same error once, not at every try', async () => {
    const dead = await freePort()
    const logged: string[] = []
    const options: MqttAdapterOptions = { ...DEFAULT_MQTT, url: `mqtt://127.0.0.1:${dead}`, topics: ['devices/+/usage'], source: 'mqtt:plant', client_id: `rateflow-test-dead-${process.pid}`, reconnect_period_ms: 100, connect_timeout_s: 2, batching: { ...DEFAULT_ADAPTER_BATCHING, max_delay_ms: 20 } }
    const adapter = new MqttAdapter(options, { sink: async () => undefined, logger: pino({ level: 'warn' }, { write: (l: string) => void logged.push(l) }) })
    adapters.push(adapter)
    await expect(adapter.start()).rejects.toThrow(/no connection to mqtt:\/\/127\.0\.0\.1:\d+ within 2s \(last error: .*ECONNREFUSED.*\): is an MQTT broker running at that address\?$/)
    // About twenty tries in 2 s: one line.
    expect(logged.filter((l) => l.includes('MQTT client error'))).toHaveLength(1)
  })
})

describe('buildClientOptions', () => {
  const o: MqttAdapterOptions = {
    ...DEFAULT_MQTT, url: 'mqtts://b:8883', topics: ['t/+'], source: 'mqtt:x', client_id: 'cid', batching: DEFAULT_ADAPTER_BATCHING,
  }
  it('sets a persistent session, credentials and TLS files', () => {
    const ca = join(dir, 'ca.pem')
    writeFileSync(ca, 'CA')
    const opts = buildClientOptions({ ...o, username: 'u', password_env: 'MQTT_PW', tls: { ca, reject_unauthorized: false } }, { MQTT_PW: 'secret' })
    expect(opts).toMatchObject({
      clientId: 'cid', clean: false, protocolVersion: 5, username: 'u', password: 'secret', rejectUnauthorized: false,
      properties: { sessionExpiryInterval: 86_400, receiveMaximum: 1000 },
    })
    expect(opts.ca!.toString()).toBe('CA')
  })
  it('fails on a missing TLS file or password variable', () => {
    expect(() => buildClientOptions({ ...o, tls: { cert: '/nope/c.pem', key: '/nope/k.pem', reject_unauthorized: true } })).toThrow(/cannot read tls.cert \/nope\/c.pem/)
    expect(() => buildClientOptions({ ...o, password_env: 'NOPE_X' }, {})).toThrow(/environment variable NOPE_X/)
  })
  it('prefixes $share/<group>/ when shared_group is set', () => {
    expect(subscriptionFilters({ topics: ['a/+', 'b/#'], shared_group: 'g' })).toEqual(['$share/g/a/+', '$share/g/b/#'])
  })
})
