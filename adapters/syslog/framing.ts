/**
 * Splits a syslog TCP byte stream into messages. Per message, auto-detected (RFC 6587): a frame starting with
 * digits and a space is octet-counted (`LEN SP MSG`), anything else runs to the next LF (a CR before it is
 * dropped). Memory is bounded by `maxBytes` plus one chunk, whatever the peer sends.
 *
 * Broken framing becomes an error frame with a preview of the bytes:
 * - an octet count above `maxBytes` is fatal: the count cannot be trusted, so the caller closes the
 *   connection (the peer reconnects and resynchronises) rather than skip an unknown amount of data;
 * - a line longer than `maxBytes` is not fatal: its bytes are skipped up to the next LF;
 * - end of stream inside an octet-counted frame is reported with how much of it arrived.
 */
import { RAW_PREVIEW_BYTES } from '../wire.js'

export type Frame =
  | { readonly ok: true; readonly bytes: Buffer }
  | { readonly ok: false; readonly error: string; readonly preview: Buffer; readonly fatal: boolean }

const SP = 0x20
const LF = 0x0a
const CR = 0x0d
const NUL = 0x00
/** More digits than this cannot be a count under any allowed max (16 MiB has 8). */
const MAX_COUNT_DIGITS = 10

/**
 * Frames are views into the pushed chunks, not copies (one copy per message was measurable at 100k lines/s): the
 * caller must not modify a chunk after pushing it, which holds for socket data, a fresh buffer per read.
 */
export class SyslogFramer {
  private buf: Buffer = Buffer.alloc(0)
  /** Skipping the rest of an over-long line up to the next LF. */
  private discarding = false
  private closed = false

  constructor(private readonly maxBytes: number) {}

  /** Feeds a chunk; returns the complete frames it finishes, in order. After a fatal error, returns nothing. */
  push(chunk: Buffer): Frame[] {
    if (this.closed) return []
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const out: Frame[] = []
    let i = 0
    const b = this.buf
    while (i < b.length) {
      if (this.discarding) {
        const nl = b.indexOf(LF, i)
        if (nl < 0) {
          i = b.length
          break
        }
        this.discarding = false
        i = nl + 1
        continue
      }
      const c = b[i]!
      if (c === LF || c === CR || c === NUL) {
        i++
        continue
      }
      if (c >= 0x30 && c <= 0x39) {
        let j = i
        // Scan past MAX_COUNT_DIGITS so an absurd count is reported as one rather than read as a line.
        while (j < b.length && j - i <= 2 * MAX_COUNT_DIGITS && b[j]! >= 0x30 && b[j]! <= 0x39) j++
        if (j === b.length && j - i <= 2 * MAX_COUNT_DIGITS) break // the count may continue in the next chunk
        if (b[j] === SP) {
          const countText = b.toString('latin1', i, j)
          const count = Number(countText)
          if (count > this.maxBytes || j - i > MAX_COUNT_DIGITS) {
            out.push({ ok: false, error: `octet count ${countText} exceeds the maximum message size ${this.maxBytes}; closing the connection`, preview: Buffer.from(b.subarray(i, i + RAW_PREVIEW_BYTES)), fatal: true })
            this.closed = true
            this.buf = Buffer.alloc(0)
            return out
          }
          if (count === 0) {
            out.push({ ok: false, error: 'octet count 0: an empty frame', preview: Buffer.from(b.subarray(i, j + 1)), fatal: false })
            i = j + 1
            continue
          }
          if (b.length - (j + 1) < count) break // wait for the rest of the frame
          out.push({ ok: true, bytes: b.subarray(j + 1, j + 1 + count) })
          i = j + 1 + count
          continue
        }
        // Digits not followed by a space: not a count, so the frame is a line.
      }
      const nl = b.indexOf(LF, i)
      const end = nl < 0 ? b.length : nl
      if (end - i > this.maxBytes) {
        out.push({ ok: false, error: `line longer than the maximum message size ${this.maxBytes} bytes; skipped to the next newline`, preview: Buffer.from(b.subarray(i, i + RAW_PREVIEW_BYTES)), fatal: false })
        if (nl < 0) {
          this.discarding = true
          i = b.length
        } else i = nl + 1
        continue
      }
      if (nl < 0) break // wait for the newline
      out.push({ ok: true, bytes: b.subarray(i, b[nl - 1] === CR ? nl - 1 : nl) })
      i = nl + 1
    }
    this.buf = i >= b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(i))
    return out
  }

  /**
   * The connection is being closed on our side (shutdown) while the peer has not ended it: bytes of a message that
   * has not ended yet are one error frame (raw kept, not rated: the message may be cut), so nothing vanishes.
   */
  cut(reason: string): Frame[] {
    if (this.closed) return []
    this.closed = true
    const b = this.buf
    this.buf = Buffer.alloc(0)
    if (this.discarding || b.length === 0) return []
    return [{ ok: false, error: `${reason}: ${b.length} bytes of a message that had not ended`, preview: Buffer.from(b.subarray(0, RAW_PREVIEW_BYTES)), fatal: false }]
  }

  /**
   * End of stream: bytes after the last newline, or a partial octet-counted frame, are one error frame (raw kept, not
   * rated). A sender killed mid-write closes the connection as cleanly as one that finished: a last line taken as a
   * message billed `quantity=123` cut to `quantity=1`, and `event_id=evt-100` cut to `evt-10` as another event.
   */
  end(): Frame[] {
    if (this.closed) return []
    this.closed = true
    const b = this.buf
    this.buf = Buffer.alloc(0)
    if (this.discarding || b.length === 0) return []
    const m = /^(\d+) /.exec(b.toString('latin1', 0, Math.min(b.length, MAX_COUNT_DIGITS + 2)))
    if (m) {
      const got = b.length - m[0].length
      return [{ ok: false, error: `connection closed inside an octet-counted frame: got ${got} of ${m[1]} bytes`, preview: Buffer.from(b.subarray(0, RAW_PREVIEW_BYTES)), fatal: false }]
    }
    let end = b.length
    while (end > 0 && (b[end - 1] === CR || b[end - 1] === NUL)) end--
    if (end === 0) return []
    return [
      {
        ok: false,
        error: `connection closed inside a message: its last ${end} bytes end in no newline (a sender cut off mid-write; send the message again, newline-terminated)`,
        preview: Buffer.from(b.subarray(0, Math.min(end, RAW_PREVIEW_BYTES))),
        fatal: false,
      },
    ]
  }
}
