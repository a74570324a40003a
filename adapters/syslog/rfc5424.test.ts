import { describe, expect, it } from 'vitest'
import { parseRfc5424 } from './rfc5424.js'

describe('parseRfc5424', () => {
  it('parses header, several SD elements with escapes, BOM and body', () => {
    const r = parseRfc5424('<165>1 2026-10-01T12:00:01.5+02:00 fw1 app 42 ID7 [a@1 x="1" y="q\\"\\]\\\\"][b@2 z=""] \uFEFFmetric=m')
    expect(r).toEqual({
      ok: true,
      message: {
        pri: 165, timestamp: '2026-10-01T12:00:01.5+02:00', hostname: 'fw1', appName: 'app', procId: '42', msgId: 'ID7',
        structuredData: [{ id: 'a@1', params: [['x', '1'], ['y', 'q"]\\']] }, { id: 'b@2', params: [['z', '']] }],
        msg: 'metric=m',
      },
    })
  })
  it('maps nil values to undefined and allows no MSG', () => {
    const r = parseRfc5424('<13>1 - - - - - -')
    expect(r).toEqual({ ok: true, message: { pri: 13, structuredData: [], msg: '' } })
  })
  it('names what is wrong', () => {
    expect(parseRfc5424('<13>1 2026-10-01 h a p m - x')).toEqual({ ok: false, error: 'bad RFC 5424 TIMESTAMP "2026-10-01"' })
    expect(parseRfc5424('<13>1 - h a')).toMatchObject({ ok: false, error: 'RFC 5424 header ends early: no space after APP-NAME (STRUCTURED-DATA must follow)' })
    expect(parseRfc5424('<13>1 - h a p m [x@1 k="v" x')).toMatchObject({ ok: false, error: expect.stringMatching(/unterminated|bad SD-PARAM|expected "\]"/) })
    expect(parseRfc5424('<13>1 - h a p m [x@1 k=v]')).toMatchObject({ ok: false, error: expect.stringMatching(/bad SD-PARAM in \[x@1\]/) })
    expect(parseRfc5424('<999>1 - - - - - -')).toEqual({ ok: false, error: 'PRI 999 is out of range (0–191)' })
    expect(parseRfc5424('hello')).toMatchObject({ ok: false, error: expect.stringMatching(/expected "<PRI>"/) })
    expect(parseRfc5424('<13>1 - h a p m -x')).toMatchObject({ ok: false, error: expect.stringMatching(/expected a space after STRUCTURED-DATA/) })
  })
})
