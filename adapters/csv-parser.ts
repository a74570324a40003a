/**
 * A streaming CSV row parser (RFC 4180: `,` between fields, `"` quotes a field, `""` is a quote inside one;
 * rows end at LF, CRLF or a lone CR) that reports, per row, the physical line it starts on.
 *
 * Why not fast-csv: it parses about 130k rows/s on the 2-core reference machine, below the 300k rows/s the CSV
 * adapter must reach; most rows have no quotes at all, and for those this parser is one indexOf and one split.
 *
 * Compatible with what the adapter did with fast-csv (`headers: false, ignoreEmpty: true, trim: false`):
 * - a row whose fields are all empty or whitespace is skipped;
 * - a field is quoted when its first non-space character is `"` (the spaces before it are dropped, spaces after
 *   the closing quote too); a `"` inside an unquoted field is an ordinary character;
 * - a UTF-8 byte order mark at the start of the input is dropped.
 * Stricter where fast-csv failed the whole file, so one bad row no longer stops the rest:
 * - text after a closing quote (`"ab"c,`) makes that row an error item with its raw text; parsing resumes at the
 *   next line; when the quoted field ran over line breaks first, each of its lines is an error item of its own (a
 *   quote never closed, "closed" by a later row's quote, or one not doubled: which rows were meant cannot be told);
 * - an unfinished row longer than `maxRowChars` (say, a quote never closed) becomes an error item with a preview of
 *   its first RAW_PREVIEW_BYTES characters, and the input is skipped to the next line break: memory stays bounded
 *   by `maxRowChars` plus one chunk, whatever the file holds;
 * - a quote still open at the end of the input is an error item, not an exception.
 */
import { RAW_PREVIEW_BYTES } from './wire.js'

/** One parsed row, or a row that could not be parsed. `line` is the 1-based physical line the row starts on. */
export type CsvItem =
  | {
      readonly ok: true
      readonly fields: string[]
      readonly raw: string
      /** The row's text as the input has it, when `raw` was written back from quoted fields (quotes and spaces differ). */
      readonly exact?: string
      readonly line: number
    }
  | { readonly ok: false; readonly error: string; readonly raw: string; readonly line: number }

/** Rows longer than this (in UTF-16 code units) are errors: 1 MiB is far above any usage row. */
export const DEFAULT_MAX_ROW_CHARS = 1 << 20

const QUOTE = 0x22
const COMMA = 0x2c
const LF = 0x0a
const CR = 0x0d

/** True when every field is empty or whitespace (fast-csv's `ignoreEmpty` rule). */
function blankRow(fields: readonly string[]): boolean {
  for (const f of fields) if (f.length > 0 && f.trim().length > 0) return false
  return true
}

/** True for the whitespace fast-csv skips before a quote or after a closing one (space and tab). */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09
}

/** Re-serialises parsed fields as one CSV line, quoting where needed: the `raw` of a row that held quotes. */
export function toCsvLine(row: readonly string[]): string {
  let out = ''
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!
    if (i) out += ','
    out += /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v
  }
  return out
}

/** The reason of a line longer than the parser takes. */
function overLong(maxRowChars: number): string {
  return `row longer than ${maxRowChars} characters (a quote never closed?); skipped to the next line break, raw keeps its first ${RAW_PREVIEW_BYTES} characters`
}

/** Where the physical line holding `start` ends (LF, CRLF or a lone CR) and where the next one starts; the text's end if it has no break. */
function lineEnd(text: string, start: number): { end: number; next: number } {
  const nl = text.indexOf('\n', start)
  const cr = text.indexOf('\r', start)
  if (cr >= 0 && (nl < 0 || cr < nl)) return { end: cr, next: text.charCodeAt(cr + 1) === LF ? cr + 2 : cr + 1 }
  return nl >= 0 ? { end: nl, next: nl + 1 } : { end: text.length, next: text.length }
}

/** Feed text chunks with `push`, then call `end`; each call returns the items it completed, in order. */
export class CsvRowParser {
  private rest = ''
  private line = 1
  private started = false
  /** Skipping the remainder of an over-long row up to the next line break. */
  private discarding = false

  constructor(private readonly maxRowChars: number = DEFAULT_MAX_ROW_CHARS) {}

  /** Parses as many complete rows as `chunk` finishes. */
  push(chunk: string): CsvItem[] {
    let text = this.rest.length === 0 ? chunk : this.rest + chunk
    if (!this.started && text.length > 0) {
      this.started = true
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    return this.scan(text, false)
  }

  /** The physical line the row in progress (not yet complete) starts on. */
  get pendingLine(): number {
    return this.line
  }

  /**
   * Gives up on the input part way (its source failed): returns the text of the row in progress, which is incomplete,
   * and forgets it. Nothing is parsed from it.
   */
  abandon(): string {
    const rest = this.rest
    this.rest = ''
    return rest
  }

  /**
   * End of input: a last row without a line break is a row. A quote still open is an error item for the line it
   * opened on, and the lines after that one are parsed as rows again (see slowRow).
   */
  end(): CsvItem[] {
    const text = this.rest
    this.rest = ''
    return this.scan(text, true)
  }

  private scan(text: string, final: boolean): CsvItem[] {
    const out: CsvItem[] = []
    const n = text.length
    let pos = 0
    // Next quote / CR at or after pos (-1: none in the rest of the text); refreshed only once pos passes them,
    // so rows without quotes cost one indexOf for the newline and nothing else.
    let nextQuote = -2
    let nextCr = -2
    while (pos < n) {
      if (this.discarding) {
        // The rest of an over-long line, up to its line break: LF, CRLF or a lone CR (a CR-only file has no LF at all).
        const brk = lineEnd(text, pos)
        if (brk.end === n) {
          pos = n
          break
        }
        // A CR at the end of the text may be the first half of a CRLF: decide with the next chunk.
        if (brk.next === n && text.charCodeAt(brk.end) === CR && !final) {
          pos = brk.end
          break
        }
        this.discarding = false
        this.line++
        pos = brk.next
        continue
      }
      const nl = text.indexOf('\n', pos)
      if (nextQuote !== -1 && nextQuote < pos) nextQuote = text.indexOf('"', pos)
      if (nextCr !== -1 && nextCr < pos) nextCr = text.indexOf('\r', pos)
      const lfAt = nl < 0 ? n : nl
      const quoteInLine = nextQuote !== -1 && nextQuote < lfAt
      // A CR right before the LF is part of the line break; any other CR ends a row itself (slow path).
      const crInLine = nextCr !== -1 && nextCr < lfAt && !(nl >= 0 && nextCr === nl - 1)
      if (!quoteInLine && !crInLine) {
        if (nl < 0 && !final) break
        const end = nl >= 0 && nl > pos && text.charCodeAt(nl - 1) === CR ? nl - 1 : lfAt
        if (end - pos > this.maxRowChars) {
          // Over the limit though complete in this chunk: the same reject as a line that outgrew it while pending.
          out.push({ ok: false, error: overLong(this.maxRowChars), raw: text.slice(pos, pos + RAW_PREVIEW_BYTES), line: this.line })
          this.line++
          pos = lfAt + 1
          continue
        }
        const raw = text.slice(pos, end)
        const fields = raw.split(',')
        if (!blankRow(fields)) out.push({ ok: true, fields, raw, line: this.line })
        this.line++
        pos = lfAt + 1
        continue
      }
      const r = this.slowRow(text, pos, final)
      if (r === undefined) break
      if (r.item && (!r.item.ok || !blankRow(r.item.fields))) out.push(r.item)
      if (r.items) out.push(...r.items)
      this.line += r.lines
      pos = r.next
    }
    this.rest = pos >= n ? '' : text.slice(pos)
    if (!final && this.rest.length > this.maxRowChars) {
      const first = lineEnd(this.rest, 0)
      if (first.next < this.rest.length) {
        // A row this long that spans lines is a quote never closed. Only its first line is the bad row: the lines
        // after it are read as rows again, so one stray quote costs one reject, not the rest of the file.
        const rest = this.rest
        out.push({
          ok: false,
          error: `a quoted field opened on this line is still open after ${this.maxRowChars} characters (a quote never closed?); this line is rejected and the lines after it are read as rows again`,
          raw: first.end <= this.maxRowChars ? rest.slice(0, first.end) : rest.slice(0, RAW_PREVIEW_BYTES),
          line: this.line,
        })
        this.line++
        this.rest = ''
        for (const item of this.scan(rest.slice(first.next), false)) out.push(item)
        return out
      }
      // A row within the limit whose own break, a CR at the end, waits for the next chunk (a CRLF's first half?): the
      // CR made the text longer than the limit, not the row.
      if (first.end === this.rest.length - 1 && first.end <= this.maxRowChars) return out
      out.push({
        ok: false,
        error: overLong(this.maxRowChars),
        raw: this.rest.slice(0, RAW_PREVIEW_BYTES),
        line: this.line,
      })
      // Line breaks inside the dropped part still count, so later rows keep their true line numbers.
      for (let i = this.rest.indexOf('\n'); i >= 0; i = this.rest.indexOf('\n', i + 1)) this.line++
      if (first.end === this.rest.length) {
        // No line break yet: skip the rest of the line as it comes.
        this.discarding = true
        this.rest = ''
      } else if (first.end === this.rest.length - 1 && this.rest.charCodeAt(first.end) === CR) {
        // Its own break is a CR at the end, maybe a CRLF's first half: kept, so the skip ends on it (and on an LF after
        // it), not on the next row's break.
        this.discarding = true
        this.rest = '\r'
      } else {
        // Complete with its LF or CRLF (counted above): nothing more to skip.
        this.rest = ''
      }
    }
    return out
  }

  /**
   * One row that holds a quote or a lone CR, character by character from `start`. Undefined: the row is not
   * complete in `text` (and the input goes on). `lines` is how many line breaks the row spans, its own included.
   */
  private slowRow(text: string, start: number, final: boolean): { item?: CsvItem; items?: CsvItem[]; next: number; lines: number } | undefined {
    const n = text.length
    const fields: string[] = []
    let i = start
    let lines = 0
    let quoted = false
    for (;;) {
      // At the start of a field.
      let j = i
      while (j < n && isSpace(text.charCodeAt(j))) j++
      if (j < n && text.charCodeAt(j) === QUOTE) {
        quoted = true
        let v = ''
        let from = j + 1
        let k = from
        let closed = false
        while (k < n) {
          const c = text.charCodeAt(k)
          if (c === QUOTE) {
            if (k + 1 < n && text.charCodeAt(k + 1) === QUOTE) {
              v += text.slice(from, k + 1)
              k += 2
              from = k
              continue
            }
            if (k + 1 >= n && !final) return undefined // `""` may straddle the chunk boundary
            v += text.slice(from, k)
            closed = true
            k++
            break
          }
          if (c === LF || (c === CR && !(k + 1 < n && text.charCodeAt(k + 1) === LF))) lines++
          k++
        }
        if (!closed) {
          if (!final) return undefined
          // Only the line the quote opened on is the bad row: the lines after it are read as rows again, so a stray
          // quote does not swallow the rest of the file into one reject.
          const first = lineEnd(text, start)
          return {
            item: {
              ok: false,
              error: 'a quoted field opened on this line is not closed before the end of the file; the lines after this one are read as rows of their own',
              raw: text.slice(start, first.end),
              line: this.line,
            },
            next: first.next,
            lines: 1,
          }
        }
        while (k < n && isSpace(text.charCodeAt(k))) k++
        if (k >= n && !final) return undefined
        fields.push(v)
        const c = k < n ? text.charCodeAt(k) : -1
        if (c === COMMA) {
          i = k + 1
          continue
        }
        if (c === -1 || c === LF || c === CR) return this.rowEnd(text, start, k, fields, quoted, lines, final)
        if (lines > 0) {
          // A quoted field over line breaks with text after its closing quote: a quote never closed on the first line,
          // "closed" by a later row's quote, or a field over lines with a quote not doubled. Which rows were meant
          // cannot be told, so none is billed: each line is a reject of its own, counted and kept whole, to fix and
          // ingest again. (One reject of the whole span hid the rows in it from the counts; the first line alone
          // rejected, the next lines read as rows, billed the rest of a broken field when it looked like a row.)
          const brk = lineEnd(text, k)
          if (!final && (brk.end === n || (brk.end === n - 1 && text.charCodeAt(brk.end) === CR))) return undefined
          const items: CsvItem[] = []
          let p = start
          for (let l = 0; l <= lines; l++) {
            const le = l < lines ? lineEnd(text, p) : brk
            // A blank line is no row, here as anywhere: counted as a line, not as a reject.
            if (le.end === p) {
              p = le.next
              continue
            }
            items.push({
              ok: false,
              error:
                l === 0
                  ? `a quoted field opened on this line runs to ${lines === 1 ? 'the next line' : `${lines} lines below`}, where text follows its closing quote (a quote never closed, or one inside a field not doubled: ""); this line and the ${lines === 1 ? 'next' : `${lines} next`} are rejected, each on its own`
                  : `a line of the quoted field opened on line ${this.line} (text follows its closing quote on line ${this.line + lines}): rejected with it`,
              raw: text.slice(p, le.end),
              line: this.line + l,
            })
            p = le.next
          }
          return { items, next: brk.next, lines: lines + 1 }
        }
        // Text after the closing quote: the row is broken; skip it up to its line break (LF, CRLF or a lone CR).
        const brk = lineEnd(text, k)
        // The break may be in the next chunk, or a CR at the very end may be a CRLF's first half.
        if (!final && (brk.end === n || (brk.end === n - 1 && text.charCodeAt(brk.end) === CR))) return undefined
        return {
          item: {
            ok: false,
            error: `column ${fields.length}: text after the closing quote (a quote inside a field must be doubled: "")`,
            raw: text.slice(start, brk.end),
            line: this.line,
          },
          next: brk.next,
          lines: lines + 1,
        }
      }
      // Unquoted field: up to the next comma or row end.
      let k = i
      while (k < n) {
        const c = text.charCodeAt(k)
        if (c === COMMA || c === LF || c === CR) break
        k++
      }
      if (k >= n && !final) return undefined
      fields.push(text.slice(i, k))
      if (k < n && text.charCodeAt(k) === COMMA) {
        i = k + 1
        continue
      }
      return this.rowEnd(text, start, k, fields, quoted, lines, final)
    }
  }

  /** Completes a row at position `k` (a row delimiter or the end of the text). */
  private rowEnd(text: string, start: number, k: number, fields: string[], quoted: boolean, lines: number, final: boolean): { item: CsvItem; next: number; lines: number } | undefined {
    const n = text.length
    let next = k
    if (k < n) {
      if (text.charCodeAt(k) === CR) {
        // A CR at the end of the chunk may be the first half of a CRLF.
        if (k + 1 >= n && !final) return undefined
        next = k + 1 < n && text.charCodeAt(k + 1) === LF ? k + 2 : k + 1
      } else next = k + 1
    }
    if (k - start > this.maxRowChars) {
      return { item: { ok: false, error: overLong(this.maxRowChars), raw: text.slice(start, start + RAW_PREVIEW_BYTES), line: this.line }, next, lines: lines + 1 }
    }
    if (!quoted) return { item: { ok: true, fields, raw: text.slice(start, k), line: this.line }, next, lines: lines + 1 }
    return { item: { ok: true, fields, raw: toCsvLine(fields), exact: text.slice(start, k), line: this.line }, next, lines: lines + 1 }
  }
}
