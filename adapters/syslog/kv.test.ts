import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { canonicalFromBodyText, canonicalFromKv, parseKv } from './kv.js'

describe('parseKv', () => {
  it('reads bare and double-quoted values with escapes', () => {
    const r = parseKv('event_id=e1  metric=bytes_out quantity=1200 dim.region="eu west" msg="say \\"hi\\" \\\\ ok"')
    expect(r.ok && Object.fromEntries(r.fields)).toEqual({
      event_id: 'e1', metric: 'bytes_out', quantity: '1200', 'dim.region': 'eu west', msg: 'say "hi" \\ ok',
    })
  })
  it('reports where parsing stopped', () => {
    expect(parseKv('a=1 garbage b=2')).toEqual({ ok: false, error: 'expected key=value at column 5, got "garbage"' })
    expect(parseKv('a="open')).toEqual({ ok: false, error: 'unterminated quoted value of a (opened at column 3)' })
    expect(parseKv('a=1 a=2')).toEqual({ ok: false, error: 'duplicate key a at column 5' })
    expect(parseKv('a="x"b=1').ok).toBe(false)
  })
  it('accepts empty values and an empty body', () => {
    const r = parseKv('a= b=""')
    expect(r.ok && Object.fromEntries(r.fields)).toEqual({ a: '', b: '' })
    expect(parseKv('   ')).toEqual({ ok: true, fields: new Map() })
  })
})

describe('canonicalFromKv', () => {
  const m = (o: Record<string, string>) => new Map(Object.entries(o))
  it('maps canonical keys and dim.*; SD fills gaps, the body wins, other SD params are ignored', () => {
    expect(canonicalFromKv(m({ metric: 'bytes_out', quantity: '5', 'dim.region': 'eu' }), m({ device_id: 'fw-9', metric: 'x', tzKnown: '1', 'dim.site': 'a' }))).toEqual({
      metric: 'bytes_out', quantity: '5', device_id: 'fw-9', dimensions: { region: 'eu', site: 'a' },
    })
  })
  it('rejects unknown keys and missing metric or quantity', () => {
    expect(canonicalFromKv(m({ metric: 'a', quantity: '1', colour: 'red' }), m({}))).toMatchObject({ error: expect.stringMatching(/^unknown key colour/) })
    expect(canonicalFromKv(m({ quantity: '1' }), m({}))).toEqual({ error: 'missing metric=' })
    expect(canonicalFromKv(m({ metric: 'a' }), m({}))).toEqual({ error: 'missing quantity=' })
  })
})

describe('canonicalFromBodyText (the fast path of decodeSyslog)', () => {
  it('gives what parseKv + canonicalFromKv give, or undefined so the caller takes that general path', () => {
    const key = fc.constantFrom('event_id', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric', 'quantity', 'dim.region', 'dim.x', 'dim.', 'dim.__proto__', 'colour', 'a b', '', 'Metric')
    const value = fc.oneof(fc.stringMatching(/^[a-z0-9.:=-]{0,5}$/), fc.constantFrom('"q v"', '"a\\"b"', 'ü', '', '"'))
    const sep = fc.constantFrom(' ', '  ', '\t', '\u00a0')
    const body = fc.array(fc.tuple(key, value, sep), { maxLength: 8 }).map((ps) => ps.map(([k, v, s]) => `${k}=${v}${s}`).join(''))
    const bodies = fc.oneof(body, fc.constant('event_id=e1 device_id=fw-1 metric=bytes_out quantity=12 dim.region=eu'))
    fc.assert(
      fc.property(bodies, (b) => {
        const kv = parseKv(b)
        const general = kv.ok ? canonicalFromKv(kv.fields, new Map()) : { error: kv.error }
        const fast = canonicalFromBodyText(b)
        if (fast !== undefined) expect(fast).toEqual(general)
        if (/^[ -~]*$/.test(b) && !b.includes('"') && !('error' in general) && !/dim\.__proto__/.test(b)) expect(fast).toBeDefined()
      }),
      { numRuns: 3000 },
    )
  })
})
