import { describe, expect, it } from 'vitest'
import { decodeSyslog, type DecodeContext } from './decode.js'
import { FORTIGATE } from './mappings.js'
import { DEFAULT_SYSLOG, type SyslogAdapterOptions } from '../config.js'
import type { WireRecord, WireReject } from '../../rating-core/record.js'

const now = new Date('2026-11-22T10:00:00Z')
const ctx = (o: Partial<SyslogAdapterOptions> = {}): DecodeContext => ({
  options: { ...DEFAULT_SYSLOG, source: 'syslog:edge', ...o },
  origin: 'syslog udp 10.0.0.9:514',
  now,
})
const dec = (s: string | Buffer, o?: Partial<SyslogAdapterOptions>) => decodeSyslog(typeof s === 'string' ? Buffer.from(s) : s, ctx(o))
const rec = (items: ReturnType<typeof dec>): WireRecord[] => items.map((i) => { if (!('record' in i)) throw new Error(`reject: ${i.reject.reason}`); return i.record })
const rej = (items: ReturnType<typeof dec>): WireReject => { const i = items[0]!; if (!('reject' in i)) throw new Error('expected a reject'); return i.reject }

describe('decodeSyslog, canonical key=value body', () => {
  it('RFC 5424: fields from the body, owner from SD, event_time from the header, raw and origin kept', () => {
    const line = '<13>1 2026-10-01T12:00:01.5+02:00 fw1 app - - [timeQuality tzKnown="1"][usage@32473 device_id="fw-9" dim.site="b"] event_id=e1 metric=bytes_out quantity=1200 dim.region="eu"'
    expect(rec(dec(line))).toEqual([{
      event_id: 'e1', source: 'syslog:edge', event_time: '2026-10-01T12:00:01.5+02:00', device_id: 'fw-9', metric: 'bytes_out',
      quantity: '1200', dimensions: { site: 'b', region: 'eu' }, raw: line, origin: 'syslog udp 10.0.0.9:514',
    }])
  })
  it('RFC 3164: the year rule applies and an explicit event_time wins', () => {
    expect(rec(dec('<13>Oct  1 12:00:01 fw1 tag: device_id=d metric=m quantity=1'))[0]!.event_time).toBe('2026-10-01T12:00:01Z')
    expect(rec(dec('<13>Oct  1 12:00:01 fw1 tag: device_id=d metric=m quantity=1 event_time=2026-09-30T00:00:00Z'))[0]!.event_time).toBe('2026-09-30T00:00:00Z')
    expect(rec(dec('<13>Oct  1 12:00:01 fw1 tag: device_id=d metric=m quantity=1', { rfc3164_time_zone: '-05:00' }))[0]!.event_time).toBe('2026-10-01T12:00:01-05:00')
  })
  it('a missing event_id becomes a content hash: same line → same id, other line or metric → other id', () => {
    const a = rec(dec('<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=1'))[0]!.event_id
    expect(a).toMatch(/^sha1:[0-9a-f]{40}$/)
    expect(rec(dec('<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=1'))[0]!.event_id).toBe(a)
    expect(rec(dec('<13>1 2026-10-01T12:00:02Z h a - - - device_id=d metric=m quantity=1'))[0]!.event_id).not.toBe(a)
    expect(rec(dec('<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=1', { source: 'syslog:other' }))[0]!.event_id).not.toBe(a)
  })
  it('the content hash and raw are of the message, not its framing: with or without a line ending, one event', () => {
    const line = '<134>1 2026-10-12T12:00:00Z fw-1 app - - - metric=api_calls quantity=1 device_id=fw-1'
    const ids = [line, `${line}\n`, `${line}\r\n`].map((s) => rec(dec(s))[0]!)
    expect(new Set(ids.map((r) => r.event_id)).size).toBe(1)
    expect(ids.map((r) => r.raw)).toEqual([line, line, line])
    // A reject's raw too: the same input shows the same raw wherever it is refused.
    const bad = '<134>1 2026-10-12T12:00:00Z fw-1 app - - - metric=api_calls bogus=1'
    expect([bad, `${bad}\n`, `${bad}\r\n`].map((s) => rej(dec(s)).raw)).toEqual([bad, bad, bad])
  })
  it('refuses a dimension named __proto__ (an object would drop it without a trace), with a reason', () => {
    expect(rej(dec('<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=1 dim.__proto__=x')).reason).toMatch(/dimension name "__proto__" is reserved/)
    expect(rej(dec('<13>1 2026-10-01T12:00:01Z h a - - [u dim.__proto__="x"] device_id=d metric=m quantity=1')).reason).toMatch(/dimension name "__proto__" is reserved/)
  })
  it('passes a bad quantity string on for the validate stage', () => {
    expect(rec(dec('<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity=lots'))[0]!.quantity).toBe('lots')
  })
  it('uses HOSTNAME as device_id only when enabled and no owner is named', () => {
    expect(rej(dec('<13>1 2026-10-01T12:00:01Z fw7 a - - - metric=m quantity=1')).reason).toMatch(/^no owner/)
    expect(rec(dec('<13>1 2026-10-01T12:00:01Z fw7 a - - - metric=m quantity=1', { hostname_as_device_id: true }))[0]!.device_id).toBe('fw7')
    expect(rec(dec('<13>1 2026-10-01T12:00:01Z fw7 a - - - account_id=a1 metric=m quantity=1', { hostname_as_device_id: true }))[0]!.device_id).toBeUndefined()
  })
  it('rejects with the raw bytes and a reason naming what and where', () => {
    const cases: Array<[string | Buffer, RegExp]> = [
      ['hello world', /^not a syslog message: expected "<PRI>".*[^)]$/],
      ['<13>1 2026-13-01 h a - - - metric=m', /bad RFC 5424 TIMESTAMP/],
      ['<13>1 2026-10-01T12:00:01Z h a - - - metric=m quantity=1 color=red', /message body: unknown key color/],
      ['<13>1 2026-10-01T12:00:01Z h a - - - device_id=d quantity=1', /missing metric=/],
      ['<13>1 2026-10-01T12:00:01Z h a - - - device_id=d metric=m quantity="1', /unterminated quoted value of quantity/],
      ['<13>1 - h a - - - device_id=d metric=m quantity=1', /no event_time, and the input carries no timestamp/],
      ['<13>date=2026-10-01 devid=x', /message body: unknown key date/],
    ]
    for (const [input, reason] of cases) {
      const r = rej(dec(input))
      expect(r.reason).toMatch(reason)
      expect(r.raw).toBe(input)
      expect(r.source).toBe('syslog:edge')
      expect(r.origin).toBe('syslog udp 10.0.0.9:514')
    }
  })
  it('keeps binary garbage as base64', () => {
    const bytes = Buffer.from([0x3c, 0x31, 0x33, 0x3e, 0x00, 0xff, 0xfe, 0x01])
    const r = rej(dec(bytes))
    expect(r.raw).toBe(`base64:${bytes.toString('base64')}`)
    expect(r.reason).toBe('not a syslog text message: byte 0xff at offset 5 is not UTF-8 (send UTF-8 text)')
    // UTF-8 throughout, with a NUL: binary, named with where.
    expect(rej(dec(Buffer.from('<13>1 - - - - - - a=\u0000'))).reason).toBe('not a syslog text message: control character 0x00 at offset 20: binary data, not text')
  })
})

describe('decodeSyslog, FortiGate mapping', () => {
  const line = '<189>date=2026-10-01 time=12:00:01 devname="FG-a" devid=FG100E logid="0000000013" type="traffic" vd="root" sentbyte=1200 rcvdbyte=5400 duration=30 service="HTTPS" policyid=7'
  it('yields bytes_out, bytes_in and session_seconds with distinct content-hash ids', () => {
    const rs = rec(dec(line, { mapping: FORTIGATE }))
    expect(rs.map((r) => [r.metric, r.quantity])).toEqual([['bytes_out', '1200'], ['bytes_in', '5400'], ['session_seconds', '30']])
    for (const r of rs) {
      expect(r).toMatchObject({ device_id: 'FG100E', event_time: '2026-10-01T12:00:01+00:00', dimensions: { vdom: 'root', service: 'HTTPS', policy_id: '7' }, raw: line })
    }
    expect(new Set(rs.map((r) => r.event_id)).size).toBe(3)
    expect(rec(dec(line, { mapping: FORTIGATE })).map((r) => r.event_id)).toEqual(rs.map((r) => r.event_id))
  })
  it('reads the tz field, and skips metrics whose field is absent', () => {
    const rs = rec(dec('<189>date=2026-10-01 time=12:00:01 tz="+0200" devid=FG1 sentbyte=5', { mapping: FORTIGATE }))
    expect(rs).toHaveLength(1)
    expect(rs[0]).toMatchObject({ metric: 'bytes_out', event_time: '2026-10-01T12:00:01+02:00' })
  })
  it('a line with no mapped quantity is a reject', () => {
    expect(rej(dec('<189>date=2026-10-01 time=12:00:01 devid=FG1 action=deny', { mapping: FORTIGATE })).reason).toMatch(/none of the mapped quantity fields is present \(sentbyte, rcvdbyte, duration\)/)
  })
  it('explicit mapping: event_id field + metric, SD params by sd-id.param', () => {
    const mapping = { ...FORTIGATE, event_id: 'sessionid', device_id: 'meta@1.dev', metrics: [{ metric: 'bytes_out', quantity: 'sentbyte' }] }
    const rs = rec(dec('<13>1 2026-10-01T12:00:01Z h a - - [meta@1 dev="fw-x"] sessionid=991 sentbyte=3', { mapping }))
    expect(rs[0]).toMatchObject({ event_id: '991:bytes_out', device_id: 'fw-x', event_time: '2026-10-01T12:00:01Z' })
  })
})

it('a message with a byte that is not UTF-8 (a Latin-1 city name) is a reject naming the byte and its offset, with its exact bytes', () => {
  const line = Buffer.concat([Buffer.from('<134>1 2026-11-07T12:00:00Z fw-1 a - - - event_id=lat1 device_id=fw-1 metric=bytes_out quantity=1 dim.city=K'), Buffer.from([0xf6]), Buffer.from('ln')])
  const [item] = dec(line)
  expect(item).toEqual({ reject: expect.objectContaining({ raw: `base64:${line.toString('base64')}`, reason: `not a syslog text message: byte 0xf6 at offset ${line.length - 3} is not UTF-8 (send UTF-8 text)` }) })
})

it("reads rsyslog's forwarding format (the BSD layout with an RFC 3339 timestamp): host, tag, and the timestamp as event_time", () => {
  // It was refused as "message body: expected key=value at column 1, got \"2026-11-07T12:00:00.\"".
  const [item] = dec('<134>2026-11-07T12:00:00.123+01:00 fw-1 rateflow: event_id=rs1 device_id=fw-1 metric=bytes_out quantity=1')
  expect(item).toEqual({ record: expect.objectContaining({ event_id: 'rs1', event_time: '2026-11-07T12:00:00.123+01:00', device_id: 'fw-1', quantity: '1' }) })
  const [host] = dec('<134>2026-11-07T12:00:00Z fw-9 app[12]: metric=bytes_out quantity=2', { hostname_as_device_id: true })
  expect(host).toEqual({ record: expect.objectContaining({ event_time: '2026-11-07T12:00:00Z', device_id: 'fw-9' }) })
  // A timestamp without a zone is no RFC 3339 timestamp: the text stays the body, and is refused as such.
  expect(rej(dec('<134>2026-11-07T12:00:00 fw-1 app: metric=m quantity=1')).reason).toMatch(/expected key=value/)
})

it("keeps the content ids of earlier releases: a HOSTNAME taken as the device is in the message's hash already", () => {
  // The id the release before this one gave the line: a line resent across the upgrade is a duplicate, not billed twice.
  const [r] = dec('<134>Oct  5 11:59:00 fw-1 app: metric=bytes_out quantity=1200', { hostname_as_device_id: true })
  expect(r).toEqual({ record: expect.objectContaining({ device_id: 'fw-1', event_id: 'sha1:1bfdf9746fa635ca9006fd7bfcd8d25b84d6ddc8' }) })
  // Another host's same line was, and is, another event.
  const [other] = dec('<134>Oct  5 11:59:00 fw-2 app: metric=bytes_out quantity=1200', { hostname_as_device_id: true })
  expect((other as { record: { event_id: string } }).record.event_id).not.toBe('sha1:1bfdf9746fa635ca9006fd7bfcd8d25b84d6ddc8')
})
