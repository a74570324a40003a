import { isUtf8 } from 'node:buffer'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { EscapingUtf8Decoder, firstInvalidByte, hasInvalidBytes, originalBytes } from './utf8-text.js'

/** Decodes `bytes` fed in chunks of the given sizes (cycled). */
function decodeChunked(bytes: Buffer, sizes: readonly number[]): { text: string; invalidSeen: boolean } {
  const d = new EscapingUtf8Decoder()
  let text = ''
  let i = 0
  let s = 0
  while (i < bytes.length) {
    const size = Math.max(1, sizes[s++ % sizes.length]!)
    text += d.write(bytes.subarray(i, i + size))
    i += size
  }
  text += d.end()
  return { text, invalidSeen: d.invalidSeen }
}

describe('EscapingUtf8Decoder', () => {
  it('decodes valid UTF-8 as Buffer.toString does, a character cut by any chunk boundary included', () => {
    const bytes = Buffer.from('id,zone\né-1,Zürich\n€,😀 ok\n', 'utf8')
    for (let size = 1; size <= 6; size++) {
      expect(decodeChunked(bytes, [size])).toEqual({ text: bytes.toString('utf8'), invalidSeen: false })
    }
  })

  it('keeps each byte that is not UTF-8: Latin-1 ids stay apart and their bytes come back exactly', () => {
    const a = decodeChunked(Buffer.from([0x63, 0x61, 0x66, 0xe9]), [2]).text // "café" in Latin-1
    const b = decodeChunked(Buffer.from([0x63, 0x61, 0x66, 0xe8]), [2]).text
    expect(a).not.toBe(b)
    expect(hasInvalidBytes(a)).toBe(true)
    expect(firstInvalidByte(a)).toEqual({ byte: 0xe9, position: 4 })
    expect([...originalBytes(a)]).toEqual([0x63, 0x61, 0x66, 0xe9])
    expect(hasInvalidBytes('café 😀 \uFFFD')).toBe(false)
    // 💀 is U+1F480, D83D DC80 in UTF-16: its second half is not an escaped byte.
    const mixed = Buffer.concat([Buffer.from('💀'), Buffer.from([0xe9]), Buffer.from('💩')])
    const skull = decodeChunked(mixed, [3]).text
    expect(firstInvalidByte(skull)).toEqual({ byte: 0xe9, position: 3 })
    expect(originalBytes(skull).equals(mixed)).toBe(true)
    expect(hasInvalidBytes('💀💩💯')).toBe(false)
    expect(firstInvalidByte('plain')).toBeUndefined()
  })

  it('escapes overlong forms, encoded surrogates, values past U+10FFFF and a character cut by the end of the input', () => {
    for (const bad of [[0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80], [0xe2, 0x82], [0x80]]) {
      const input = Buffer.from([0x61, ...bad])
      for (const size of [1, 2, 5]) {
        const { text, invalidSeen } = decodeChunked(input, [size])
        expect(invalidSeen).toBe(true)
        expect(text.slice(0, 1)).toBe('a')
        expect(text.length).toBe(1 + bad.length) // every byte of the bad sequence escaped on its own
        expect(originalBytes(text).equals(input)).toBe(true)
      }
    }
  })

  it('gives back the exact input bytes for any bytes in any chunking, and the usual text for valid UTF-8', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }), (arr, sizes) => {
        const bytes = Buffer.from(arr)
        const { text, invalidSeen } = decodeChunked(bytes, sizes)
        expect(originalBytes(text).equals(bytes)).toBe(true)
        expect(invalidSeen).toBe(!isUtf8(bytes))
        if (!invalidSeen) expect(text).toBe(bytes.toString('utf8'))
      }),
      { numRuns: 2000 },
    )
  })
})
