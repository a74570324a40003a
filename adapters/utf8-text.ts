import { isUtf8 } from 'node:buffer'

/**
 * Bytes to text for inputs read as a stream (CSV files), without losing a byte that is not UTF-8.
 *
 * Why not `setEncoding('utf8')` / TextDecoder: both turn every invalid byte into U+FFFD, so `caf\xe9` and
 * `caf\xe8` (Latin-1 exports) became the same event id `caf\uFFFD`, the second was counted a duplicate and never
 * billed, and the stored text no longer said what the file held. Here an invalid byte 0xNN becomes the lone
 * surrogate U+DC00+0xNN (the "surrogateescape" of other platforms): UTF-8 can never encode a surrogate, so such a
 * character in the decoded text always stands for one invalid byte, and `originalBytes` gets the input back.
 * A row holding one is rejected by the adapter with its exact bytes.
 *
 * Cost on valid input: one SIMD validation per chunk (`isUtf8`) before the usual decode.
 */
export class EscapingUtf8Decoder {
  /** The bytes of a character cut by the chunk boundary, put in front of the next chunk. */
  private carry: Buffer | undefined
  /** True once any byte was decoded as an escape: from then on, rows must be checked with `hasInvalidBytes`. */
  invalidSeen = false

  /** The text of `chunk`, up to its last complete character (the rest is decoded with the next chunk). */
  write(chunk: Buffer): string {
    const buf = this.carry === undefined ? chunk : Buffer.concat([this.carry, chunk])
    const end = completeEnd(buf)
    this.carry = end < buf.length ? Buffer.from(buf.subarray(end)) : undefined
    return this.decode(buf.subarray(0, end))
  }

  /** The end of the input: a character still cut short is invalid, and its bytes are escaped. */
  end(): string {
    const rest = this.carry
    this.carry = undefined
    return rest === undefined ? '' : this.decode(rest)
  }

  private decode(b: Buffer): string {
    if (isUtf8(b)) return b.toString('utf8')
    this.invalidSeen = true
    return decodeEscaping(b)
  }
}

// With the u flag a surrogate pair is one code point, so only a lone U+DC80–U+DCFF matches: the second half of a
// real character such as U+1F480 (D83D DC80) does not.
const ESCAPED = /[\uDC80-\uDCFF]/u

/** True when `s` (text from EscapingUtf8Decoder) holds a byte that was not valid UTF-8. */
export function hasInvalidBytes(s: string): boolean {
  return ESCAPED.test(s)
}

/** The first invalid byte of `s` and the 1-based position of the character standing for it; undefined if none. */
export function firstInvalidByte(s: string): { byte: number; position: number } | undefined {
  const m = ESCAPED.exec(s)
  return m ? { byte: m[0].charCodeAt(0) - 0xdc00, position: m.index + 1 } : undefined
}

/** The offset of the first byte of `b` that belongs to no valid UTF-8 character (validLength's rules), or undefined. */
export function firstInvalidUtf8(b: Buffer): number | undefined {
  if (isUtf8(b)) return undefined
  for (let i = 0; i < b.length; ) {
    if (b[i]! < 0x80) i++
    else {
      const len = validLength(b, i)
      if (len === 0) return i
      i += len
    }
  }
  return undefined
}

/** The bytes `s` was decoded from: UTF-8 of its characters, each escape its own byte. */
export function originalBytes(s: string): Buffer {
  const parts: Buffer[] = []
  let from = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    // A low surrogate after a high one is half of a real character, not an escaped byte.
    if (c >= 0xdc80 && c <= 0xdcff && !(i > 0 && isHighSurrogate(s.charCodeAt(i - 1)))) {
      parts.push(Buffer.from(s.slice(from, i), 'utf8'), Buffer.of(c - 0xdc00))
      from = i + 1
    }
  }
  parts.push(Buffer.from(s.slice(from), 'utf8'))
  return Buffer.concat(parts)
}

const isHighSurrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdbff

/** The length of the prefix of `b` that ends on a character boundary (a trailing multi-byte start is left out). */
function completeEnd(b: Buffer): number {
  const n = b.length
  // Look back over at most three bytes for the lead byte of the last character.
  for (let k = 1; k <= 3 && k <= n; k++) {
    const c = b[n - k]!
    if (c < 0x80) return n
    if (c >= 0xc0) return k < leadLength(c) ? n - k : n
    // A continuation byte: look further back.
  }
  return n
}

/** How many bytes a character starting with lead byte `c` takes (1 for bytes that cannot start one). */
function leadLength(c: number): number {
  if (c >= 0xf0) return 4
  if (c >= 0xe0) return 3
  if (c >= 0xc0) return 2
  return 1
}

const isCont = (c: number | undefined): boolean => c !== undefined && c >= 0x80 && c <= 0xbf

/** The length of the valid UTF-8 character at `i` (RFC 3629: no overlongs, surrogates or values past U+10FFFF), or 0. */
function validLength(b: Buffer, i: number): number {
  const c = b[i]!
  if (c >= 0xc2 && c <= 0xdf) return isCont(b[i + 1]) ? 2 : 0
  if (c >= 0xe0 && c <= 0xef) {
    const c1 = b[i + 1]
    if (c1 === undefined || (c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 > 0x9f)) return 0
    return isCont(c1) && isCont(b[i + 2]) ? 3 : 0
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const c1 = b[i + 1]
    if (c1 === undefined || (c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 > 0x8f)) return 0
    return isCont(c1) && isCont(b[i + 2]) && isCont(b[i + 3]) ? 4 : 0
  }
  return 0
}

/** `b` as text, each byte that does not belong to a valid character escaped as U+DC00 + byte. */
function decodeEscaping(b: Buffer): string {
  let out = ''
  let run = 0
  let i = 0
  while (i < b.length) {
    if (b[i]! < 0x80) {
      i++
      continue
    }
    const len = validLength(b, i)
    if (len > 0) {
      i += len
      continue
    }
    out += b.toString('utf8', run, i) + String.fromCharCode(0xdc00 + b[i]!)
    i++
    run = i
  }
  return out + b.toString('utf8', run, b.length)
}
