import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { SyslogFramer, type Frame } from './framing.js'

const texts = (fs: Frame[]) => fs.map((f) => (f.ok ? f.bytes.toString() : `ERR ${f.error}`))

describe('SyslogFramer', () => {
  it('splits newline frames, drops CR, and keeps partial lines for the next chunk', () => {
    const f = new SyslogFramer(100)
    expect(texts(f.push(Buffer.from('<13>a\r\n<13>b\n<13>c')))).toEqual(['<13>a', '<13>b'])
    expect(texts(f.push(Buffer.from('d\n')))).toEqual(['<13>cd'])
  })

  it('auto-detects octet counting per message, across chunk boundaries', () => {
    const f = new SyslogFramer(100)
    expect(texts(f.push(Buffer.from('5 <13>a4 <1>b<13>line\n1')))).toEqual(['<13>a', '<1>b', '<13>line'])
    expect(texts(f.push(Buffer.from('0 <13>xyzwvu')))).toEqual(['<13>xyzwvu'])
  })

  it('treats digits not followed by a space as a line', () => {
    const f = new SyslogFramer(100)
    expect(texts(f.push(Buffer.from('12x <13>1 …\n')))).toEqual(['12x <13>1 …'])
  })

  it('an octet count over the max is fatal and stops the stream', () => {
    const f = new SyslogFramer(100)
    const out = f.push(Buffer.from('<13>ok\n101 <13>' + 'x'.repeat(101) + '\n<13>after\n'))
    expect(out[0]).toMatchObject({ ok: true })
    expect(out[1]).toMatchObject({ ok: false, fatal: true })
    expect(texts(out)[1]).toMatch(/octet count 101 exceeds the maximum message size 100/)
    expect(out).toHaveLength(2)
    expect(f.push(Buffer.from('<13>more\n'))).toEqual([])
  })

  it('a count with more digits than any max is fatal too', () => {
    const f = new SyslogFramer(100)
    const out = f.push(Buffer.from('99999999999999 <13>x'))
    expect(out).toHaveLength(1)
    expect(out[0]).toMatchObject({ ok: false, fatal: true })
  })

  it('skips an over-long line to the next newline without buffering it', () => {
    const f = new SyslogFramer(10)
    const a = f.push(Buffer.from('<13>' + 'y'.repeat(20)))
    expect(a).toHaveLength(1)
    expect(a[0]).toMatchObject({ ok: false, fatal: false })
    expect(f.push(Buffer.from('z'.repeat(5000)))).toEqual([])
    expect(texts(f.push(Buffer.from('zz\n<13>ok\n')))).toEqual(['<13>ok'])
  })

  it('reports a connection closed inside an octet-counted frame, or inside a line (no newline after it), as an error frame', () => {
    const f = new SyslogFramer(100)
    f.push(Buffer.from('20 <13>short'))
    expect(texts(f.end())).toEqual(['ERR connection closed inside an octet-counted frame: got 9 of 20 bytes'])
    // A sender killed mid-write ends the connection as one that finished: `quantity=123` cut to `quantity=1` was billed.
    const g = new SyslogFramer(100)
    expect(texts(g.push(Buffer.from('<13>done quantity=5\n<13>cut quantity=1')))).toEqual(['<13>done quantity=5'])
    const cut = g.end()
    expect(texts(cut)).toEqual(['ERR connection closed inside a message: its last 18 bytes end in no newline (a sender cut off mid-write; send the message again, newline-terminated)'])
    expect(cut[0]).toMatchObject({ ok: false, fatal: false, preview: Buffer.from('<13>cut quantity=1') })
    // Trailing CR or NUL alone after the last newline is nothing.
    const h = new SyslogFramer(100)
    h.push(Buffer.from('<13>x\n\r\0'))
    expect(h.end()).toEqual([])
  })

  it('frames the same messages however the stream is chunked (property)', () => {
    const msg = fc.stringMatching(/^<1[0-9]>[a-z =]{0,30}$/)
    fc.assert(
      fc.property(fc.array(fc.tuple(msg, fc.boolean()), { minLength: 1, maxLength: 10 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1 }), (msgs, cuts) => {
        const stream = Buffer.from(msgs.map(([m, octet]) => (octet ? `${Buffer.byteLength(m)} ${m}` : `${m}\n`)).join(''))
        const f = new SyslogFramer(64)
        const got: Frame[] = []
        let at = 0
        for (let i = 0; at < stream.length; i++) {
          const n = cuts[i % cuts.length]!
          got.push(...f.push(stream.subarray(at, at + n)))
          at += n
        }
        got.push(...f.end())
        expect(texts(got)).toEqual(msgs.map(([m]) => m))
      }),
    )
  })
})
