import { describe, expect, it } from 'vitest'
import { RateflowError } from '../common/errors.js'
import { parseNatsUrl } from './nats-url.js'

const failure = (value: string): RateflowError => {
  try {
    parseNatsUrl(value)
  } catch (err) {
    return err as RateflowError
  }
  throw new Error(`${value} was read`)
}

describe('parseNatsUrl', () => {
  it('takes user:password@ or token@ off each server, percent-decoded, as the client is to log in', () => {
    expect(parseNatsUrl('nats://127.0.0.1:4222')).toEqual({ servers: ['nats://127.0.0.1:4222'], auth: undefined })
    expect(parseNatsUrl('nats://rfuser:S3cretNatsPw@127.0.0.1:14222')).toEqual({ servers: ['nats://127.0.0.1:14222'], auth: { user: 'rfuser', pass: 'S3cretNatsPw' } })
    expect(parseNatsUrl('tls://tok@nats.example:4222')).toEqual({ servers: ['tls://nats.example:4222'], auth: { token: 'tok' } })
    expect(parseNatsUrl('u%40x:p%40ss%3Aw%2Frd%2C%25@h:4222')).toEqual({ servers: ['h:4222'], auth: { user: 'u@x', pass: 'p@ss:w/rd,%' } })
    // A password's "@" left as it is still belongs to it; its digits are never read as the port.
    expect(parseNatsUrl('nats://u:p@ss@h:4222')).toEqual({ servers: ['nats://h:4222'], auth: { user: 'u', pass: 'p@ss' } })
    expect(parseNatsUrl('nats://u:1234@h:4222').servers).toEqual(['nats://h:4222'])
    expect(parseNatsUrl('nats://u:p@h1:4222, u:p@h2:4223')).toEqual({ servers: ['nats://h1:4222', 'h2:4223'], auth: { user: 'u', pass: 'p' } })
  })

  it('servers with different credentials, or some without: bad usage naming NATS_URL, the passwords masked', () => {
    for (const value of ['nats://u:a@h1:4222,nats://u:b@h2:4222', 'nats://u:a@h1:4222,nats://h2:4222', 'tok@h1:4222,nats://u:tok@h2:4222']) {
      const err = failure(value)
      expect([value, err.code, err.message]).toEqual([value, 'BAD_USAGE', expect.stringMatching(/^NATS_URL: ".*" and ".*" carry different credentials: /)])
      expect(err.message).not.toMatch(/:a@|:b@|tok@/)
    }
  })

  it('a server the client cannot read, or bad percent-encoding: bad usage quoting it masked', () => {
    expect(failure('nats://u:secret@127.0.0.1:99999').message).toBe('NATS_URL: "nats://u:***@127.0.0.1:99999" is not a NATS server URL (e.g. nats://127.0.0.1:4222; several are separated by commas)')
    expect(failure('nats://:secret@h:4222').message).toBe('NATS_URL: "nats://:***@h:4222" is not a NATS server URL (e.g. nats://127.0.0.1:4222; several are separated by commas)')
    expect(failure('nats://@h:4222').message).toContain('"nats://***@h:4222" is not a NATS server URL')
    expect(failure('nats://u:se%zzcret@h:4222').message).toBe('NATS_URL: "nats://u:***@h:4222": the user name, password or token before "@" is not valid percent-encoding (write a "%" in it as %25)')
    // A comma in a password, not percent-encoded: two servers, the first of them holding the password's start.
    for (const value of ['nats://u:sec,ret@h:4222', 'nats://u:12,34@h:4222']) {
      const err = failure(value)
      expect([value, err.code]).toEqual([value, 'BAD_USAGE'])
      expect(err.message).not.toMatch(/u:sec|ret@|u:12|34@/)
    }
    // …cut anywhere, with an @ in the password too: no piece of the password is shown, as a host or a user name.
    const leaks: Array<[string, RegExp]> = [
      ['nats://rf:a,b,c@127.0.0.1:14222', /rf:a|"b|b,|c@/],
      ['nats://rf:x,tls://y@127.0.0.1:14222', /rf:x|y@/],
      ['nats://rf:123,def:ghi@127.0.0.1:14222', /123|def|ghi/],
      ['nats://rf:se@cret,more@127.0.0.1:14222', /se@|cret|more/],
      ['nats://rf:p@ss,w:rd/x@[::1]:14222', /p@|ss|w:|rd/],
    ]
    for (const [value, secret] of leaks) {
      const err = failure(value)
      expect([value, err.code]).toEqual([value, 'BAD_USAGE'])
      // What it quotes of the value (the rest of the message is fixed text, which says `user:password@`).
      const quotedParts = [...err.message.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join(' ')
      expect(quotedParts, value).not.toMatch(secret)
    }
  })
})
