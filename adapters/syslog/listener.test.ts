import { execFile, spawn } from 'node:child_process'
import dgram from 'node:dgram'
import net from 'node:net'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { SyslogAdapter } from './listener.js'
import { DEFAULT_ADAPTER_BATCHING, DEFAULT_SESSIONS, DEFAULT_SYSLOG, type SyslogAdapterOptions } from '../config.js'
import type { UsageBatch, WireRecord, WireReject } from '../../rating-core/record.js'

const run = promisify(execFile)

function capture() {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
      cb()
    },
  })
  return { logger: pino({ level: 'debug' }, stream), lines }
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const adapters: SyslogAdapter[] = []
afterEach(async () => {
  for (const a of adapters.splice(0)) await a.stop().catch(() => undefined)
})

function setup(o: Partial<SyslogAdapterOptions> = {}, sink?: (b: UsageBatch) => Promise<void>, tcpDrainMs?: number) {
  const batches: UsageBatch[] = []
  const { logger, lines } = capture()
  const options: SyslogAdapterOptions = {
    ...DEFAULT_SYSLOG, source: 'syslog:edge', udp_port: 0, tcp_port: 0,
    batching: { ...DEFAULT_ADAPTER_BATCHING, max_delay_ms: 5 }, ...o,
  }
  const adapter = new SyslogAdapter(options, {
    sink: sink ?? (async (b) => { batches.push(b) }),
    logger,
    ...(tcpDrainMs === undefined ? {} : { tcpDrainMs }),
  })
  adapters.push(adapter)
  const records = (): WireRecord[] => batches.flatMap((b) => b.records)
  const rejects = (): WireReject[] => batches.flatMap((b) => b.rejects)
  return { adapter, batches, records, rejects, lines }
}

const logger_ = (port: number, args: string[], msg: string) =>
  run('logger', ['--server', '127.0.0.1', '--port', String(port), ...args, msg], { env: { ...process.env, TZ: 'UTC' } })

describe('SyslogAdapter with util-linux logger', () => {
  it('UDP RFC 5424 with structured data: SD param gives the owner, header gives event_time', async () => {
    const t = setup()
    await t.adapter.start()
    const before = Date.now()
    await logger_(t.adapter.ports.udp!, ['--udp', '--rfc5424', '--sd-id', 'usage@32473', '--sd-param', 'device_id="fw-9"'], 'event_id=e1 metric=bytes_out quantity=1200 dim.region=eu')
    await waitFor(() => t.records().length === 1, 'one record')
    const r = t.records()[0]!
    expect(r).toMatchObject({ event_id: 'e1', source: 'syslog:edge', device_id: 'fw-9', metric: 'bytes_out', quantity: '1200', dimensions: { region: 'eu' } })
    expect(r.event_time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+\+00:00$/)
    expect(Math.abs(Date.parse(r.event_time) - before)).toBeLessThan(5000)
    expect(r.origin).toMatch(/^syslog udp 127\.0\.0\.1:\d+$/)
    expect(r.raw).toContain('[usage@32473 device_id="fw-9"]')
  })

  it('TCP RFC 3164 (newline framing) and TCP RFC 5424 with --octet-count', async () => {
    const t = setup()
    await t.adapter.start()
    const port = t.adapter.ports.tcp!
    await logger_(port, ['--tcp', '--rfc3164'], 'event_id=a device_id=fw-1 metric=bytes_in quantity=5')
    await logger_(port, ['--tcp', '--octet-count', '--rfc5424'], 'event_id=b account_id=acc-1 metric=api_calls quantity=2.5')
    await waitFor(() => t.records().length === 2, 'two records')
    const [a, b] = [...t.records()].sort((x, y) => x.event_id.localeCompare(y.event_id))
    const year = new Date().getUTCFullYear()
    expect(a).toMatchObject({ device_id: 'fw-1', metric: 'bytes_in', quantity: '5' })
    expect(a!.event_time).toMatch(new RegExp(`^(${year}|${year - 1})-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$`))
    expect(Math.abs(Date.parse(a!.event_time) - Date.now())).toBeLessThan(5000)
    expect(b).toMatchObject({ account_id: 'acc-1', metric: 'api_calls', quantity: '2.5' })
    expect(b!.raw!.startsWith('<13>1 ')).toBe(true)
    expect(t.adapter.stats).toMatchObject({ messages: 2, records: 2, rejects: 0, tcpConnections: 2 })
  })

  it('a line without event_id gets a content hash, and the same line sent twice gets the same id', async () => {
    const t = setup()
    await t.adapter.start()
    const line = '<13>1 2026-10-01T12:00:01Z fw1 app - - - device_id=fw-1 metric=bytes_out quantity=7\n'
    const sock = dgram.createSocket('udp4')
    await new Promise<void>((r) => sock.send(line, t.adapter.ports.udp!, '127.0.0.1', () => r()))
    await new Promise<void>((r) => sock.send(line, t.adapter.ports.udp!, '127.0.0.1', () => r()))
    sock.close()
    await waitFor(() => t.records().length === 2, 'two records')
    const [x, y] = t.records()
    expect(x!.event_id).toMatch(/^sha1:/)
    expect(y!.event_id).toBe(x!.event_id)
    expect(x!.event_time).toBe('2026-10-01T12:00:01Z')
  })

  it('FortiGate mapping over TCP yields several metrics from one line', async () => {
    const { FORTIGATE } = await import('./mappings.js')
    const t = setup({ mapping: FORTIGATE })
    await t.adapter.start()
    await logger_(t.adapter.ports.tcp!, ['--tcp', '--rfc3164'], 'date=2026-10-01 time=12:00:01 devid=FG100E logid="0000000013" sentbyte=1200 rcvdbyte=5400 duration=30')
    await waitFor(() => t.records().length === 3, 'three records')
    expect(t.records().map((r) => `${r.device_id} ${r.metric} ${r.quantity} ${r.event_time}`).sort()).toEqual([
      'FG100E bytes_in 5400 2026-10-01T12:00:01+00:00',
      'FG100E bytes_out 1200 2026-10-01T12:00:01+00:00',
      'FG100E session_seconds 30 2026-10-01T12:00:01+00:00',
    ])
  })

  it('merges session start/stop lines into billable records', async () => {
    const t = setup({ sessions: { ...DEFAULT_SESSIONS, interim: 'delta' } })
    await t.adapter.start()
    const port = t.adapter.ports.tcp!
    await logger_(port, ['--tcp', '--rfc5424'], 'event_id=s1a device_id=fw-1 metric=bytes_out quantity=100 dim.session_id=S1 dim.session_event=start event_time=2026-10-01T12:00:00Z')
    await logger_(port, ['--tcp', '--rfc5424'], 'event_id=s1b device_id=fw-1 metric=bytes_out quantity=50 dim.session_id=S1 dim.session_event=stop event_time=2026-10-01T12:01:00Z')
    await waitFor(() => t.records().length === 2, 'merged records')
    expect(t.records().map((r) => [r.metric, r.quantity, r.event_time, r.dimensions?.session_close])).toEqual([
      ['session_seconds', '60', '2026-10-01T12:00:00Z', 'stop'],
      ['bytes_out', '150', '2026-10-01T12:00:00Z', 'stop'],
    ])
  })

  it('a session line the validate stage would reject is a reject of its own, and its session is billed without it', async () => {
    const t = setup({ sessions: { ...DEFAULT_SESSIONS, interim: 'delta' } })
    await t.adapter.start()
    const port = t.adapter.ports.tcp!
    const line = (id: string, kind: string, q: string, time: string) =>
      `event_id=${id} device_id=fw-1 metric=bytes_out quantity=${q} dim.session_id=S2 dim.session_event=${kind} event_time=${time}`
    // A negative delta would subtract; a zone-less first event would give the merged session a time validate refuses.
    await logger_(port, ['--tcp', '--rfc5424'], line('s2a', 'start', '-50', '2026-10-01T12:00:00Z'))
    await logger_(port, ['--tcp', '--rfc5424'], line('s2b', 'interim', '5', '2026-10-01T11:00:00'))
    await logger_(port, ['--tcp', '--rfc5424'], line('s2c', 'stop', '80', '2026-10-01T12:01:00Z'))
    await waitFor(() => t.records().length === 2 && t.rejects().length === 2, 'merged records and two rejects')
    expect(t.records().map((r) => [r.metric, r.quantity, r.event_time, r.dimensions?.session_close])).toEqual([
      ['session_seconds', '0', '2026-10-01T12:01:00Z', 'stop'],
      ['bytes_out', '80', '2026-10-01T12:01:00Z', 'stop'],
    ])
    const [neg, zoneless] = t.rejects()
    expect(neg!.raw).toContain('event_id=s2a ')
    expect(neg!.reason).toMatch(/^quantity "-50" is not a non-negative decimal .*[^)]$/)
    expect(neg!.origin).toMatch(/^syslog tcp 127\.0\.0\.1:\d+ #1$/)
    expect(zoneless!.raw).toContain('event_id=s2b ')
    expect(zoneless!.reason).toMatch(/^event_time "2026-10-01T11:00:00" is not an ISO-8601 time with offset/)
    expect(t.records()[1]!.raw).toContain('event_id=s2c ')
  })
})

describe('SyslogAdapter open-session limit', () => {
  it('max_open_sessions: a third session closes the least recently active one early, billed, flagged and counted', async () => {
    const t = setup({ sessions: { ...DEFAULT_SESSIONS, max_open_sessions: 2 } })
    await t.adapter.start()
    const port = t.adapter.ports.tcp!
    for (const [i, [id, q]] of ([['A', '10'], ['B', '20'], ['C', '30']] as const).entries()) {
      await logger_(port, ['--tcp', '--rfc5424'], `event_id=${id}1 device_id=fw-1 metric=bytes_out quantity=${q} dim.session_id=${id} dim.session_event=start event_time=2026-10-01T12:00:00Z`)
      // logger returns once sent; wait until the adapter has it, so the arrival order is the sending order.
      await waitFor(() => t.adapter.stats.messages === i + 1, `session ${id} received`)
    }
    await waitFor(() => t.records().length === 2, 'the records of the closed session')
    expect(t.records().map((r) => [r.dimensions?.session_id, r.metric, r.quantity, r.dimensions?.session_close])).toEqual([
      ['A', 'session_seconds', '0', 'max_open_sessions'],
      ['A', 'bytes_out', '10', 'max_open_sessions'],
    ])
    expect(t.adapter.stats).toMatchObject({ sessionsOpen: 2, sessionsEvicted: 1 })
  })
})

describe('SyslogAdapter bad input', () => {
  it('rejects malformed UDP datagrams with raw and reason, and keeps running', async () => {
    const t = setup({ max_message_bytes: 200 })
    await t.adapter.start()
    const sock = dgram.createSocket('udp4')
    const send = (m: Buffer | string) => new Promise<void>((r) => sock.send(m, t.adapter.ports.udp!, '127.0.0.1', () => r()))
    const binary = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01])
    await send(binary)
    await send('x'.repeat(300))
    await send('just text')
    await send('<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=1 oops')
    await send('<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=1')
    sock.close()
    await waitFor(() => t.rejects().length === 4 && t.records().length === 1, 'four rejects and a record')
    const reasons = t.rejects().map((r) => r.reason)
    expect(reasons[0]).toBe('not a syslog text message: byte 0xbe at offset 2 is not UTF-8 (send UTF-8 text)') // de ad is U+07AD
    expect(t.rejects()[0]!.raw).toBe(`base64:${binary.toString('base64')}`)
    expect(reasons[1]).toMatch(/message of 300 bytes exceeds the maximum 200/)
    expect(reasons[2]).toMatch(/not a syslog message/)
    expect(reasons[3]).toMatch(/message body: expected key=value at column \d+, got "oops"/)
  })

  it('TCP: an octet count above the max is rejected and closes the connection; other framing errors do not', async () => {
    const t = setup({ max_message_bytes: 100 })
    await t.adapter.start()
    const port = t.adapter.ports.tcp!
    const good = '<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=1'
    // A line too long, a digit prefix without space (a line, then a header error), then a good octet-counted frame.
    const c1 = net.connect(port, '127.0.0.1')
    c1.write(`<13>${'z'.repeat(150)}\n12abc <13>1 -\n${Buffer.byteLength(good)} ${good}`)
    c1.end()
    // An absurd octet count: rejected, connection closed by the adapter before it reads the good line.
    const c2 = net.connect(port, '127.0.0.1')
    const closed = new Promise<void>((r) => c2.on('close', () => r()))
    c2.on('error', () => undefined)
    c2.write(`99999 <13>1 ${'q'.repeat(50)}`)
    await closed
    await waitFor(() => t.rejects().length === 3 && t.records().length === 1, 'three rejects and one record')
    const reasons = t.rejects().map((r) => r.reason).join('\n')
    expect(reasons).toMatch(/line longer than the maximum message size 100 bytes; skipped to the next newline$/m)
    expect(reasons).toMatch(/not a syslog message: expected "<PRI>" at the start, got "12abc <13>1 "/)
    expect(reasons).toMatch(/octet count 99999 exceeds the maximum message size 100; closing the connection$/m)
    expect(t.adapter.stats.tcpFramingCloses).toBe(1)
  })

  it('TCP: a connection closed in the middle of an octet-counted frame is reported', async () => {
    const t = setup()
    await t.adapter.start()
    const c = net.connect(t.adapter.ports.tcp!, '127.0.0.1')
    const partial = '<13>1 2026-10-01T12:00:01Z h a - - - device_id=d'
    c.end(`80 ${partial}`)
    await waitFor(() => t.rejects().length === 1, 'a reject')
    expect(t.rejects()[0]!.reason).toContain(`connection closed inside an octet-counted frame: got ${partial.length} of 80 bytes`)
  })

  it('TCP: a last line with no newline, closed by an end (FIN) or a reset (RST), is a reject with its bytes, never rated', async () => {
    // A sender killed mid-write: `quantity=123` cut to `quantity=1` was billed as 1 (FIN), and after a reset the
    // bytes vanished with no reject, count or log line (RST).
    const t = setup()
    await t.adapter.start()
    const port = t.adapter.ports.tcp!
    const line = (id: string, q: string) => `<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=${q} event_id=${id}`
    const fin = net.connect(port, '127.0.0.1')
    fin.end(`${line('f1', '7')}\n${line('f2', '1')}`)
    const rst = net.connect(port, '127.0.0.1')
    await new Promise<void>((r) => rst.once('connect', () => r()))
    rst.on('error', () => undefined)
    rst.write(`${line('r1', '5')}\n${line('r2', '12')}`)
    await new Promise((r) => setTimeout(r, 200))
    rst.resetAndDestroy()
    await waitFor(() => t.rejects().length === 2 && t.records().length === 2, 'two records and two rejects')
    expect(t.records().map((r) => r.event_id).sort()).toEqual(['f1', 'r1'])
    const byRaw = new Map(t.rejects().map((r) => [r.raw, r.reason]))
    expect(byRaw.get(line('f2', '1'))).toMatch(/^connection closed inside a message: its last \d+ bytes end in no newline/)
    expect(byRaw.get(line('r2', '12'))).toMatch(/^connection reset by the sender: \d+ bytes of a message that had not ended$/)
  })
})

describe('SyslogAdapter flow control', () => {
  function gatedSink() {
    const batches: UsageBatch[] = []
    const gates: Array<() => void> = []
    let open = false
    const sink = (b: UsageBatch) => new Promise<void>((resolve) => {
      const done = () => { batches.push(b); resolve() }
      if (open) done()
      else gates.push(done)
    })
    return { batches, sink, release: () => { open = true; for (const g of gates.splice(0)) g() } }
  }
  const line = (i: number) => `<13>1 2026-10-01T12:00:01Z h a - - - event_id=e${i} device_id=d metric=m quantity=${i}\n`

  it('TCP pauses the connection while the batcher is full, then delivers every line', async () => {
    const g = gatedSink()
    const t = setup({ batching: { max_records: 1, max_delay_ms: 5, max_in_flight: 1 } }, g.sink)
    await t.adapter.start()
    const c = net.connect(t.adapter.ports.tcp!, '127.0.0.1')
    c.end(Array.from({ length: 200 }, (_, i) => line(i)).join(''))
    await waitFor(() => t.adapter.stats.messages >= 1, 'the first message')
    await new Promise((r) => setTimeout(r, 200))
    // Without backpressure every parsed line would already be in the batcher.
    expect(t.adapter.stats.records).toBeLessThanOrEqual(2)
    g.release()
    await waitFor(() => g.batches.flatMap((b) => b.records).length === 200, 'all 200 records')
    expect(g.batches.flatMap((b) => b.records).map((r) => r.event_id)).toEqual(Array.from({ length: 200 }, (_, i) => `e${i}`))
    expect(t.adapter.stats.udpDropped).toBe(0)
  })

  it('stop() delivers every line a TCP sender wrote and closed before it, even while the batcher held the socket paused', async () => {
    // A slow store: each batch of 100 takes 20 ms, so most of the 2,000 lines are still in the socket at stop().
    const stored: UsageBatch[] = []
    // 3 s to drain: reading the 5,000 lines took more than 300 ms on a loaded 2-core machine, and the cut lost the rest.
    const t = setup({ batching: { max_records: 100, max_delay_ms: 5, max_in_flight: 1 } }, async (b) => {
      await new Promise((r) => setTimeout(r, 20))
      stored.push(b)
    })
    await t.adapter.start()
    const c = net.connect(t.adapter.ports.tcp!, '127.0.0.1')
    await new Promise<void>((resolve) => c.end(Array.from({ length: 2000 }, (_, i) => line(i)).join(''), resolve))
    await waitFor(() => t.adapter.stats.messages >= 1, 'the first message')
    await t.adapter.stop()
    expect(stored.flatMap((b) => b.records).map((r) => r.event_id)).toEqual(Array.from({ length: 2000 }, (_, i) => `e${i}`))
  })

  it('stop() takes the connections the kernel accepted but the process had not yet: their lines are stored', async () => {
    // Senders that connected while the process was busy wait in the listen backlog; closing the listener at once reset
    // them, and `logger --tcp` calls that had returned 0 were lost without a word.
    const t = setup()
    await t.adapter.start()
    const port = t.adapter.ports.tcp!
    const senders = Array.from({ length: 4 }, (_, i) =>
      spawn('logger', ['--server', '127.0.0.1', '--port', String(port), '--tcp', '--rfc5424', `event_id=b${i} device_id=fw-1 metric=api_calls quantity=1`], { stdio: 'ignore' }),
    )
    const exited = senders.map((p) => new Promise<number | null>((resolve) => p.on('exit', resolve)))
    // Busy, as a loaded process is: the senders connect, write and exit meanwhile, and nothing accepts them.
    const until = Date.now() + 2500
    while (Date.now() < until) {
      /* the event loop does not turn */
    }
    const stopping = t.adapter.stop()
    expect(await Promise.all(exited)).toEqual([0, 0, 0, 0])
    await stopping
    expect(t.records().map((r) => r.event_id).sort()).toEqual(['b0', 'b1', 'b2', 'b3'])
  })

  it('stop() reads every line a sender that keeps its connection open wrote before it, though the batcher held the socket paused', async () => {
    const stored: UsageBatch[] = []
    const t = setup({ batching: { max_records: 100, max_delay_ms: 5, max_in_flight: 1 } }, async (b) => {
      await new Promise((r) => setTimeout(r, 50))
      stored.push(b)
    }, 3_000)
    await t.adapter.start()
    const c = net.connect({ port: t.adapter.ports.tcp!, host: '127.0.0.1', allowHalfOpen: true })
    // Written (handed to the kernel), and the connection kept open, as rsyslog keeps it: the drain time ends, and
    // the connection is cut with most of these lines not yet read when the batcher paused the socket.
    await new Promise<void>((resolve) => c.write(Array.from({ length: 5000 }, (_, i) => line(i)).join(''), () => resolve()))
    await waitFor(() => t.adapter.stats.messages >= 1, 'the first message')
    await t.adapter.stop()
    expect(stored.flatMap((b) => b.records)).toHaveLength(5000)
    expect(stored.flatMap((b) => b.rejects)).toEqual([])
    c.destroy()
  })

  it('stop() cuts a connection its peer keeps open after the drain time; a half-sent message becomes a reject', async () => {
    const t = setup({}, undefined, 300)
    await t.adapter.start()
    const c = net.connect(t.adapter.ports.tcp!, '127.0.0.1')
    // The peer ignores our FIN (allowHalfOpen) and never ends its side.
    c.setNoDelay(true)
    ;(c as net.Socket & { allowHalfOpen: boolean }).allowHalfOpen = true
    c.write(line(1) + 'event_id=e2 device_id=fw-1 metric=bytes_out quan')
    await waitFor(() => t.records().length === 1, 'the whole line')
    await t.adapter.stop()
    expect(t.records().map((r) => r.event_id)).toEqual(['e1'])
    expect(t.rejects()).toEqual([
      expect.objectContaining({ raw: 'event_id=e2 device_id=fw-1 metric=bytes_out quan', reason: expect.stringMatching(/connection still open when the adapter stopped: 48 bytes of a message that had not ended/) }),
    ])
    c.destroy()
  })

  it('UDP drops datagrams while the batcher is full, counts them and warns', async () => {
    const g = gatedSink()
    const t = setup({ batching: { max_records: 1, max_delay_ms: 5, max_in_flight: 1 } }, g.sink)
    await t.adapter.start()
    const sock = dgram.createSocket('udp4')
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => sock.send(line(i), t.adapter.ports.udp!, '127.0.0.1', () => r()))
    await waitFor(() => t.adapter.stats.messages === 5, 'five datagrams')
    expect(t.adapter.stats.udpDropped).toBe(4)
    expect(t.lines.some((l) => l.level === 40 && String(l.msg).includes('UDP overload'))).toBe(true)
    g.release()
    await waitFor(() => t.lines.some((l) => String(l.msg).includes('overload ended') && l.dropped === 4), 'the overload-ended warning')
    await new Promise<void>((r) => sock.send(line(9), t.adapter.ports.udp!, '127.0.0.1', () => r()))
    sock.close()
    await waitFor(() => g.batches.flatMap((b) => b.records).length === 2, 'two records')
    expect(g.batches.flatMap((b) => b.records).map((r) => r.event_id)).toEqual(['e0', 'e9'])
  })

  it('a batch the sink fails to store is counted and logged; later messages still arrive', async () => {
    const stored: UsageBatch[] = []
    let calls = 0
    const t = setup({}, async (b) => {
      if (calls++ === 0) throw new Error('jetstream down')
      stored.push(b)
    })
    await t.adapter.start()
    const sock = dgram.createSocket('udp4')
    await new Promise<void>((r) => sock.send(line(1), t.adapter.ports.udp!, '127.0.0.1', () => r()))
    await waitFor(() => t.adapter.stats.failedBatches === 1, 'the failed batch')
    await new Promise<void>((r) => sock.send(line(2), t.adapter.ports.udp!, '127.0.0.1', () => r()))
    sock.close()
    await waitFor(() => stored.length === 1, 'the next batch')
    expect(stored[0]!.records.map((r) => r.event_id)).toEqual(['e2'])
    expect(t.adapter.stats.lostItems).toBe(1)
    expect(t.lines.some((l) => l.level === 50 && String(l.msg).includes('not stored'))).toBe(true)
  })
})
