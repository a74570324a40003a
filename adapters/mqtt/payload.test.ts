import { Packr, pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { decodePayload, topicDeviceId, topicMatches, type PayloadContext } from './payload.js'
import { DEFAULT_MQTT, type MqttAdapterOptions } from '../config.js'
import type { WireRecord, WireReject } from '../../rating-core/record.js'

const ctx = (o: Partial<MqttAdapterOptions> = {}, topic = 'devices/fw-1/usage'): PayloadContext => ({
  options: { ...DEFAULT_MQTT, source: 'mqtt:plant', topics: ['devices/+/usage'], ...o },
  topic,
})
type Items = ReturnType<typeof decodePayload>
const recs = (items: Items): WireRecord[] => items.flatMap((i) => ('record' in i ? [i.record] : []))
const rejs = (items: Items): WireReject[] => items.flatMap((i) => ('reject' in i ? [i.reject] : []))
const json = (v: unknown) => Buffer.from(JSON.stringify(v))
const base = { event_id: 'e1', event_time: '2026-10-01T12:00:00Z', metric: 'bytes_out', quantity: '1200' }

describe('topics', () => {
  it('matches filters with + and #, also behind $share', () => {
    expect(topicMatches('devices/+/usage', 'devices/a/usage')).toBe(true)
    expect(topicMatches('devices/+/usage', 'devices/a/b/usage')).toBe(false)
    expect(topicMatches('devices/#', 'devices')).toBe(true)
    expect(topicMatches('$share/g/devices/+/usage', 'devices/a/usage')).toBe(true)
  })
  it('takes device_id from the single + level, or a fixed level, or not at all', () => {
    expect(topicDeviceId('devices/fw-1/usage', ['other/#', '$share/g/devices/+/usage'], 'auto')).toBe('fw-1')
    expect(topicDeviceId('site/s1/fw-2/usage', ['site/+/+/usage'], 'auto')).toBeUndefined()
    expect(topicDeviceId('site/s1/fw-2/usage', ['site/+/+/usage'], 2)).toBe('fw-2')
    expect(topicDeviceId('devices/fw-1/usage', ['devices/+/usage'], 'off')).toBeUndefined()
  })
  it('auto: answers stay right when they come from the per-topic cache, per filter list', () => {
    const a = ['devices/+/usage']
    const b = ['devices/fw-1/+']
    for (let i = 0; i < 3; i++) {
      expect(topicDeviceId('devices/fw-1/usage', a, 'auto')).toBe('fw-1')
      expect(topicDeviceId('devices/fw-1/usage', b, 'auto')).toBe('usage')
      expect(topicDeviceId('other/fw-1/usage', a, 'auto')).toBeUndefined()
    }
  })
})

describe('decodePayload', () => {
  it('a JSON record; the topic supplies device_id when the payload names no owner', () => {
    const payload = json({ ...base, dimensions: { region: 'eu', port: 8 } })
    expect(recs(decodePayload(payload, ctx()))).toEqual([{
      ...base, source: 'mqtt:plant', device_id: 'fw-1', dimensions: { region: 'eu', port: '8' }, raw: payload.toString(), origin: 'mqtt devices/fw-1/usage',
    }])
    const acc = recs(decodePayload(json({ ...base, account_id: 'a-1' }), ctx()))[0]!
    expect([acc.account_id, acc.device_id]).toEqual(['a-1', undefined])
    expect(recs(decodePayload(json({ ...base, device_id: 'x' }), ctx()))[0]!.device_id).toBe('x')
  })
  it('rejects text with a lone UTF-16 surrogate (a JSON escape UTF-8 cannot carry), which merged two ids into one', () => {
    // Written by hand: JSON.stringify would keep the escapes, JSON.parse makes them lone surrogates again.
    const raw = (body: string) => Buffer.from(body)
    const items = [
      ...decodePayload(raw('{"event_id":"e\\ud800","event_time":"2026-10-01T12:00:00Z","metric":"m","quantity":"1"}'), ctx()),
      ...decodePayload(raw('{"event_id":"e\\ud801","event_time":"2026-10-01T12:00:00Z","metric":"m","quantity":"1"}'), ctx()),
      ...decodePayload(raw('{"event_id":"e3","event_time":"2026-10-01T12:00:00Z","metric":"m","quantity":"1","dimensions":{"r":"\\udc00x"}}'), ctx()),
      ...decodePayload(raw('{"event_id":"e4","event_time":"2026-10-01T12:00:00Z","metric":"m","quantity":"1","dimensions":{"r":"\\ud83d\\ude00"}}'), ctx()),
    ]
    expect(rejs(items).map((r) => r.reason)).toEqual([
      'event_id holds a lone UTF-16 surrogate (a \\ud800–\\udfff escape with no pair), which UTF-8 cannot carry',
      'event_id holds a lone UTF-16 surrogate (a \\ud800–\\udfff escape with no pair), which UTF-8 cannot carry',
      'dimension "r" holds a lone UTF-16 surrogate (a \\ud800–\\udfff escape with no pair), which UTF-8 cannot carry',
    ])
    // A pair is one character (😀), and passes.
    expect(recs(items).map((r) => r.dimensions)).toEqual([{ r: '😀' }])
  })

  it('an array: good elements pass, bad ones are rejects with their index; content hashes are stable', () => {
    const payload = json([{ ...base, event_id: undefined }, { metric: 'm' }, { ...base, event_id: undefined }, 5])
    const items = decodePayload(payload, ctx())
    const rs = recs(items)
    expect(rs).toHaveLength(2)
    expect(rs[0]!.event_id).toMatch(/^sha1:/)
    expect(rs[0]!.event_id).not.toBe(rs[1]!.event_id) // equal elements at different positions
    expect(recs(decodePayload(payload, ctx())).map((r) => r.event_id)).toEqual(rs.map((r) => r.event_id))
    expect(rs[0]!.raw).toBe(JSON.stringify({ ...base, event_id: undefined }))
    expect(rejs(items).map((r) => [r.reason, r.raw])).toEqual([
      ['missing quantity', '{"metric":"m"}'],
      ['expected a record object, got number', '5'],
    ])
  })
  it('a payload without event_id from two topics gives each device its own content id; the same topic again the same id', () => {
    // Devices reporting counters on round times send byte-identical payloads: one id made the second device's usage a
    // duplicate of the first's, never billed.
    const payload = json({ ...base, event_id: undefined })
    const [a] = recs(decodePayload(payload, ctx({}, 'devices/fw-1/usage')))
    const [b] = recs(decodePayload(payload, ctx({}, 'devices/fw-2/usage')))
    const [again] = recs(decodePayload(payload, ctx({}, 'devices/fw-1/usage')))
    expect([a!.device_id, b!.device_id]).toEqual(['fw-1', 'fw-2'])
    expect(a!.event_id).not.toBe(b!.event_id)
    expect(again!.event_id).toBe(a!.event_id)
    // A payload naming its own owner is one event whichever topic carried it (the topic gives it nothing).
    const owned = json({ ...base, event_id: undefined, device_id: 'fw-9' })
    expect(recs(decodePayload(owned, ctx({}, 'devices/fw-1/usage')))[0]!.event_id).toBe(recs(decodePayload(owned, ctx({}, 'devices/fw-2/usage')))[0]!.event_id)
    // Elements of an array, and mapped payloads, likewise.
    const many = json([{ ...base, event_id: undefined }])
    expect(recs(decodePayload(many, ctx({}, 'devices/fw-1/usage')))[0]!.event_id).not.toBe(recs(decodePayload(many, ctx({}, 'devices/fw-2/usage')))[0]!.event_id)
  })

  it('a key given twice is a reject naming it (JSON keeps the last value silently); in an array, of that element only', () => {
    const one = Buffer.from('{"event_id":"dk","metric":"bytes_out","quantity":"1","quantity":"5","event_time":"2026-11-01T12:00:00Z"}')
    expect(decodePayload(one, ctx())).toEqual([
      { reject: expect.objectContaining({ raw: one.toString(), reason: 'key "quantity" is given twice (at $.quantity): which value was meant is not known' }) },
    ])
    const many = Buffer.from('[{"event_id":"a","metric":"m","quantity":"1","event_time":"2026-11-01T12:00:00Z"},{"event_id":"b","metric":"m","metric":"n","quantity":"1","event_time":"2026-11-01T12:00:00Z"}]')
    const items = decodePayload(many, ctx())
    expect(recs(items).map((r) => r.event_id)).toEqual(['a'])
    expect(rejs(items)).toEqual([expect.objectContaining({ raw: many.toString(), origin: 'mqtt devices/fw-1/usage [1]', reason: 'key "metric" is given twice (at $[1].metric): which value was meant is not known' })])
    // With a vendor mapping, only keys on the way to what it reads count: a field of the vendor's own given twice
    // rejected every message of that firmware.
    const mapping = { event_id: 'id', event_time: 'ts', time_format: 'unix_s' as const, time_zone: 'Z', dimensions: { site: 'where.site' }, metrics: [{ metric: 'bytes_out', quantity: 'stats.tx' }] }
    const vendor = (body: string) => decodePayload(Buffer.from(body), ctx({ mapping }))
    expect(recs(vendor('{"id":"v1","ts":1790856000,"stats":{"tx":"500"},"fw":{"build":"a","build":"b"}}')).map((r) => r.quantity)).toEqual(['500'])
    expect(rejs(vendor('{"id":"v1","ts":1790856000,"stats":{"tx":"500","tx":"9"}}'))[0]!.reason).toBe('key "tx" is given twice (at $.stats.tx): which value was meant is not known')
    expect(rejs(vendor('{"id":"v1","ts":1790856000,"stats":{"tx":"500"},"stats":{"tx":"9"}}'))[0]!.reason).toMatch(/key "stats" is given twice/)
    expect(rejs(vendor('{"id":"v1","ts":1790856000,"where":{"site":"a","site":"b"},"stats":{"tx":"5"}}'))[0]!.reason).toMatch(/at \$\.where\.site/)
    // Records under a records_path: the element with one is the reject; keys beside the records, or unread, do not count.
    const listed = (body: string) => decodePayload(Buffer.from(body), ctx({ mapping: { ...mapping, records_path: 'data' } }))
    const two = listed('{"meta":{"v":1,"v":2},"data":[{"id":"a","ts":1790856000,"stats":{"tx":"1"},"x":1,"x":2},{"id":"b","ts":1790856000,"stats":{"tx":"2","tx":"3"}}]}')
    expect(recs(two).map((r) => r.quantity)).toEqual(['1'])
    expect(rejs(two).map((r) => [r.origin, r.reason])).toEqual([['mqtt devices/fw-1/usage [1]', 'key "tx" is given twice (at $.data[1].stats.tx): which value was meant is not known']])
    expect(rejs(listed('{"data":[{"id":"a","ts":1790856000,"stats":{"tx":"1"}}],"data":[]}'))[0]!.reason).toMatch(/key "data" is given twice \(at \$\.data\)/)

    // The same key in two elements, or in a record and its dimensions, is no duplicate.
    const fine = Buffer.from('[{"event_id":"a","metric":"m","quantity":"1","event_time":"2026-11-01T12:00:00Z","dimensions":{"metric":"x"}},{"event_id":"b","metric":"m","quantity":"1","event_time":"2026-11-01T12:00:00Z"}]')
    expect(recs(decodePayload(fine, ctx()))).toHaveLength(2)
  })

  it('takes a JSON-number quantity only when the number is exactly what was written; else a reject asking for a string', () => {
    const text = (q: string) => Buffer.from(`{"event_id":"e1","event_time":"2026-10-01T12:00:00Z","metric":"bytes_out","quantity":${q}}`)
    // As plain decimals, never in exponent form (String(5e-7) is "5e-7", which validation refuses).
    const taken: Array<[string, string]> = [['9007199254740991', '9007199254740991'], ['123456789012.345', '123456789012.345'], ['0.000000001', '0.000000001'], ['5e-7', '0.0000005'], ['-12.5', '-12.5'], ['1e3', '1000']]
    for (const [q, as] of taken) expect(recs(decodePayload(text(q), ctx())).map((r) => r.quantity), q).toEqual([as])
    // Read as a double these become neighbours: 9007199254740992, 12345678901234567000, 123456789012.12346.
    for (const q of ['9007199254740993', '12345678901234567891', '123456789012.123456']) {
      const out = decodePayload(text(q), ctx())
      expect(recs(out), q).toEqual([])
      expect(rejs(out)[0]!.reason, q).toMatch(/quantity was sent as a JSON number with more digits than a JSON reader keeps exactly \(it reads as \d+(\.\d+)?; .*send it as a string/)
    }
    // As strings they are kept digit for digit.
    expect(recs(decodePayload(json({ ...base, quantity: '9007199254740993' }), ctx()))[0]!.quantity).toBe('9007199254740993')
    // A vendor mapping's quantity field, too.
    const mapped = decodePayload(Buffer.from('{"id":"m1","ts":1790856000,"stats":{"tx":9007199254740993}}'), ctx({
      mapping: { event_id: 'id', event_time: 'ts', time_format: 'unix_s' as const, time_zone: 'Z', dimensions: {}, metrics: [{ metric: 'bytes_out', quantity: 'stats.tx' }] },
    }))
    expect(rejs(mapped)[0]!.reason).toMatch(/quantity field stats\.tx \(metric bytes_out\): quantity was sent as a JSON number .*it reads as 9007199254740992;/)
  })

  it('passes a bad quantity string on; rejects wrong types and missing fields', () => {
    expect(recs(decodePayload(json({ ...base, quantity: 'twelve' }), ctx()))[0]!.quantity).toBe('twelve')
    expect(recs(decodePayload(json({ ...base, quantity: 12.5 }), ctx()))[0]!.quantity).toBe('12.5')
    const cases: Array<[unknown, string]> = [
      [{ ...base, quantity: true }, 'quantity must be a decimal string or number, got boolean'],
      [{ ...base, metric: 7 }, 'metric must be a string, got number'],
      [{ ...base, dimensions: { a: { b: 1 } } }, 'dimensions.a must be a string, got an object'],
      [{ ...base, dimensions: [1] }, 'dimensions must be an object, got an array'],
      [{ ...base, colour: 'red' }, 'unknown field "colour" (a vendor shape needs a mapping)'],
      [{ ...base, source: 'mqtt:other' }, 'source "mqtt:other" differs from the adapter\'s "mqtt:plant"; leave it out'],
      [{ event_id: 'x', quantity: '1', event_time: 't' }, 'missing metric'],
      [{ event_id: 'x', metric: 'm', quantity: '1' }, 'no event_time, and the input carries no timestamp of its own'],
      [[], 'payload holds an empty array: no records'],
      [null, 'expected a record object, got null'],
    ]
    for (const [v, reason] of cases) {
      const r = rejs(decodePayload(json(v), ctx()))
      expect(r.map((x) => x.reason)).toEqual([`${reason}`])
    }
    expect(rejs(decodePayload(json(base), ctx({ device_id_level: 'off' })))[0]!.reason).toMatch(/^no owner/)
  })
  it('rejects invalid JSON, binary garbage and oversized messages with their raw bytes', () => {
    const bad = Buffer.from('{"event_id": "e1", ')
    expect(rejs(decodePayload(bad, ctx()))[0]).toMatchObject({ raw: '{"event_id": "e1", ', reason: expect.stringMatching(/^invalid JSON: .*[^)]$/) })
    const bin = Buffer.from([0x00, 0xff, 0x10, 0x80])
    expect(rejs(decodePayload(bin, ctx()))[0]).toMatchObject({ raw: `base64:${bin.toString('base64')}`, reason: 'payload is not UTF-8 JSON: byte 0xff at offset 1 is not UTF-8 (send UTF-8 text)' })
    // Valid UTF-8 with a control character: binary, said so, with where.
    expect(rejs(decodePayload(Buffer.from('{"a":1}\u0001'), ctx()))[0]!.reason).toBe('payload is not UTF-8 JSON: control character 0x01 at offset 7: binary data, not text')
    const big = Buffer.from('x'.repeat(5000))
    const r = rejs(decodePayload(big, ctx({ max_message_bytes: 4096 })))[0]!
    expect(r.reason).toMatch(/^message of 5000 bytes exceeds max_message_bytes 4096; raw keeps its first 1024 bytes/)
    expect(r.raw).toHaveLength(1024)
  })
  it('two oversized messages alike in their first bytes stay two rejects: the origin names each by its digest', () => {
    const a = decodePayload(Buffer.from('x'.repeat(4000) + 'a'), ctx({ max_message_bytes: 2048 }))
    const b = decodePayload(Buffer.from('x'.repeat(4000) + 'b'), ctx({ max_message_bytes: 2048 }))
    expect(rejs(a)[0]!.raw).toBe(rejs(b)[0]!.raw)
    expect(rejs(a)[0]!.origin).toMatch(/^mqtt devices\/fw-1\/usage \(message sha256 [0-9a-f]{16}…\)$/)
    expect(rejs(a)[0]!.origin).not.toBe(rejs(b)[0]!.origin)
  })
  it('a payload nested past 64 levels is one reject; thousands deep, it overflowed the stack and ended the run', () => {
    const deep = Buffer.from('['.repeat(5000) + ']'.repeat(5000))
    expect(rejs(decodePayload(deep, ctx()))).toEqual([expect.objectContaining({ raw: deep.toString(), reason: 'JSON nested 5000 levels deep: at most 64 are read' })])
    const ok = Buffer.from('['.repeat(63) + JSON.stringify(base) + ']'.repeat(63))
    expect(rejs(decodePayload(ok, ctx()))).toEqual([expect.objectContaining({ reason: 'expected a record object, got an array' })])
    const packed = pack(JSON.parse('['.repeat(100) + ']'.repeat(100)))
    expect(rejs(decodePayload(packed, ctx({ format: 'msgpack' })))[0]!.reason).toBe('msgpack nested more than 64 levels deep: at most 64 are read')
  })
  it('many keys given twice deep down cost time and memory in proportion to the payload', () => {
    // 20,000 levels and 20,000 repeated keys: a path copied per repeat filled gigabytes and took minutes.
    const text = '['.repeat(20_000) + '{' + Array.from({ length: 20_000 }, () => '"a":1').join(',') + '}' + ']'.repeat(20_000)
    const r = rejs(decodePayload(Buffer.from(text), ctx()))
    expect(r).toHaveLength(1)
    expect(r[0]!.reason).toBe('JSON nested 20001 levels deep: at most 64 are read')
  })
  it('msgpack: a map key given twice is a reject naming it, as in JSON', () => {
    // msgpackr keeps the last value: a quantity given as 1 and then 999999 was rated at 999999.
    const map = (entries: Array<[string, unknown]>) => {
      const parts = [Buffer.from([0x80 | entries.length])]
      for (const [k, v] of entries) parts.push(pack(k), pack(v))
      return Buffer.concat(parts)
    }
    const one = map([['event_id', 'p2'], ['event_time', base.event_time], ['metric', 'bytes_out'], ['quantity', '1'], ['quantity', '999999']])
    expect(rejs(decodePayload(one, ctx({ format: 'msgpack' })))).toEqual([
      expect.objectContaining({ reason: 'key "quantity" is given twice (at $.quantity): which value was meant is not known' }),
    ])
    const good = map([['event_id', 'p3'], ['event_time', base.event_time], ['metric', 'bytes_out'], ['quantity', '1']])
    const arr = Buffer.concat([Buffer.from([0x92]), good, map([['event_id', 'p4'], ['event_time', base.event_time], ['metric', 'm'], ['metric', 'bytes_out'], ['quantity', '2']])])
    const items = decodePayload(arr, ctx({ format: 'msgpack' }))
    expect(recs(items).map((r) => r.event_id)).toEqual(['p3'])
    expect(rejs(items)).toEqual([expect.objectContaining({ origin: 'mqtt devices/fw-1/usage [1]', reason: 'key "metric" is given twice (at $[1].metric): which value was meant is not known' })])
  })
  it("msgpackr's extensions that read the values after them (records, sets) are not misread as keys given twice", () => {
    const mapping = { event_id: 'id', event_time: 'ts', time_format: 'iso', time_zone: 'Z', device_id: 'dev', metrics: [{ metric: 'bytes_out', quantity: 'tx' }], dimensions: {} }
    const c = ctx({ format: 'msgpack', mapping: mapping as never })
    // A Set's extension reads the array after it: a scan that skipped the extension alone read a:'tx', b:'tx' as keys.
    const set = new Packr({ useRecords: false, moreTypes: true }).pack({ id: 'r1', tags: new Set(['eu']), ts: '2026-03-01T00:00:00Z', a: 'tx', b: 'tx', tx: '10', dev: 'fw-1' })
    expect(rejs(decodePayload(set, c))).toEqual([])
    expect(recs(decodePayload(set, c)).map((r) => r.quantity)).toEqual(['10'])
    // Records (msgpackr's default Packr): rated as the object they decode to.
    const records = new Packr().pack([{ ...base, event_id: 'k1' }, { ...base, event_id: 'k2' }])
    expect(recs(decodePayload(records, ctx({ format: 'msgpack' }))).map((r) => r.event_id)).toEqual(['k1', 'k2'])
  })
  it('a quantity past the range of a JSON number says so', () => {
    const r = rejs(decodePayload(Buffer.from('{"event_id":"e1","event_time":"2026-10-01T12:00:00Z","metric":"bytes_out","quantity":1e400}'), ctx()))
    expect(r[0]!.reason).toBe("quantity must be a decimal string or number, got Infinity, a number out of range (JSON's 1e400 reads so); send a decimal string")
    const nan = rejs(decodePayload(pack({ ...base, quantity: NaN }), ctx({ format: 'msgpack' })))
    expect(nan[0]!.reason).toBe('quantity must be a decimal string or number, got NaN, a number that is no value')
  })
  it('a DEL character (0x7f) in a JSON string is text, not binary', () => {
    const r = recs(decodePayload(Buffer.from(JSON.stringify({ ...base, dimensions: { x: 'a\x7fb' } })), ctx()))
    expect(r.map((x) => x.dimensions)).toEqual([{ x: 'a\x7fb' }])
  })
  it('refuses numbers no JSON reader keeps exactly in ids, owners and dimensions, and a dimension named __proto__', () => {
    // Two readings whose ids differ only past 2^53: read as numbers they were one id, and the second was a duplicate.
    const mapping = { event_id: 'msg_id', device_id: 'serial', metrics: [{ metric: 'bytes_out', quantity: 'tx' }], dimensions: { iccid: 'iccid' }, event_time: 'ts', time_format: 'unix_s' as const, time_zone: 'Z' }
    const one = (v: Record<string, unknown>) => decodePayload(Buffer.from(JSON.stringify({ msg_id: 1, serial: 'fw-1', tx: 1, ts: 1790856000, ...v }).replace(/"@(\d+)"/g, '$1')), ctx({ mapping }))
    expect(rejs(one({ msg_id: '@1234567890123456789' })).map((x) => x.reason)).toEqual([
      'event_id field msg_id must be a string or number, got a JSON number with more digits than a JSON reader keeps exactly (it reads as 1234567890123456800); send it as a string',
    ])
    expect(rejs(one({ serial: '@98765432109876543210' }))[0]!.reason).toMatch(/^device_id field serial must be a string or number, got a JSON number with more digits/)
    expect(rejs(one({ iccid: '@89014103211118510720' }))[0]!.reason).toMatch(/^dimension iccid field iccid must be a string or number, got a JSON number with more digits/)
    expect(recs(one({ msg_id: '@9007199254740991', iccid: '8901410321111851072' })).map((r) => [r.event_id, r.dimensions])).toEqual([['9007199254740991:bytes_out', { iccid: '8901410321111851072' }]])
    // The canonical form: dimension values.
    const dims = (d: string) => decodePayload(Buffer.from(`{"event_id":"e1","event_time":"2026-10-01T12:00:00Z","metric":"bytes_out","quantity":"1","dimensions":${d}}`), ctx())
    expect(rejs(dims('{"iccid":89014103211118510720}'))[0]!.reason).toMatch(/^dimensions\.iccid must be a string, got a JSON number with more digits than a JSON reader keeps exactly \(it reads as 89014103211118510000\)/)
    expect(recs(dims('{"rate":1.1,"n":42}')).map((r) => r.dimensions)).toEqual([{ rate: '1.1', n: '42' }])
    expect(rejs(dims('{"__proto__":"x"}'))[0]!.reason).toMatch(/^dimension name "__proto__" is reserved/)
  })
  it('msgpack payloads, and invalid msgpack', () => {
    expect(recs(decodePayload(pack([base, { ...base, event_id: 'e2' }]), ctx({ format: 'msgpack' }))).map((r) => r.event_id)).toEqual(['e1', 'e2'])
    const garbage = Buffer.from([0xde, 0xad, 0xbe, 0xef])
    const r = rejs(decodePayload(garbage, ctx({ format: 'msgpack' })))[0]!
    expect(r.raw).toBe(`base64:${garbage.toString('base64')}`)
    expect(r.reason).toBe('invalid msgpack: Unexpected end of MessagePack data')
    expect(rejs(decodePayload(Buffer.from([0x01, 0x02]), ctx({ format: 'msgpack' })))[0]!.reason).toMatch(/^invalid msgpack: Data read, but end of buffer not reached/)
  })
  it('a vendor JSON mapping with records_path', () => {
    const mapping = {
      event_id: 'id', event_time: 'ts', time_format: 'unix_s' as const, time_zone: 'Z', device_id: 'dev',
      metrics: [{ metric: 'bytes_out', quantity: 'stats.tx' }, { metric: 'bytes_in', quantity: 'stats.rx' }],
      dimensions: { region: 'meta.region' }, records_path: 'items',
    }
    const payload = json({ items: [{ id: 7, ts: 1790856000, stats: { tx: 10, rx: '20' }, meta: { region: 'eu' } }, { id: 8, ts: 'soon', stats: { tx: 1 } }] })
    const items = decodePayload(payload, ctx({ mapping }))
    expect(recs(items).map((r) => [r.event_id, r.metric, r.quantity, r.event_time, r.device_id, r.dimensions])).toEqual([
      ['7:bytes_out', 'bytes_out', '10', '2026-10-01T12:00:00.000Z', 'fw-1', { region: 'eu' }],
      ['7:bytes_in', 'bytes_in', '20', '2026-10-01T12:00:00.000Z', 'fw-1', { region: 'eu' }],
    ])
    expect(rejs(items)[0]!.reason).toBe('time field ts must be a unix_s number, got "soon"')
    expect(rejs(decodePayload(json({ items: 3 }), ctx({ mapping })))[0]!.reason).toMatch(/records_path items is not an array/)
  })
})
