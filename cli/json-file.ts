import { readFileSync } from 'node:fs'
import { firstInvalidUtf8 } from '../adapters/utf8-text.js'
import { ErrorCode, RateflowError, ValidationError, type Problem } from '../common/errors.js'
import { duplicateJsonKeys, jsonPathText } from '../common/json-keys.js'

/** A JSON document read from a file, with the problems of its text that parsing alone does not report. */
export interface JsonFile {
  readonly file: string
  readonly doc: unknown
  /** Object keys given more than once (JSON.parse keeps the last silently), each at its path, in the file's order. */
  readonly problems: readonly Problem[]
}

/**
 * Reads `file` as a JSON document, strictly: UTF-8 only (else BadInput naming the first invalid byte: reading as
 * 'utf8' replaced bad bytes with U+FFFD, so a plan id `café` saved as Latin-1 was stored as `caf\uFFFD` and an
 * accounts file naming `café` never matched it); a byte order mark is read past (RFC 8259 lets a reader ignore it;
 * it stopped JSON.parse at a character the message could not show); text that is not JSON is BadInput with the
 * parser's message and the line and column where it stopped. Keys given twice in one object come back as `problems`, for the caller to name with the
 * document's own.
 */
export function readJsonFile(file: string): JsonFile {
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (err) {
    throw new RateflowError(ErrorCode.BadInput, `${file}: cannot read: ${(err as Error).message}`)
  }
  const bad = firstInvalidUtf8(bytes)
  if (bad !== undefined) throw new RateflowError(ErrorCode.BadInput, `${file}: not UTF-8 (at byte ${bad}): save it as UTF-8`)
  let text = bytes.toString('utf8')
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new RateflowError(ErrorCode.BadInput, `${file}: not valid JSON${syntaxErrorPlace(text, (err as Error).message)}`)
  }
  return {
    file,
    doc,
    problems: duplicateJsonKeys(text).map((d) => ({ path: jsonPathText(d.path), message: `key ${JSON.stringify(d.key)} is given twice (lines ${d.firstLine} and ${d.line}): keep one` })),
  }
}

/**
 * ` at line L, column C: <the parser's message>` for JSON.parse's error `message` about `text`. Node 20 gives an offset
 * only ("at position 27", which no editor shows), and for an unexpected token (`[1, 2,]`, `tru`) or end none at all.
 */
function syntaxErrorPlace(text: string, message: string): string {
  const m = / at position (\d+)(?: \(line \d+ column \d+\))?$/.exec(message)
  const at = m ? Number(m[1]) : jsonSyntaxErrorOffset(text)
  const said = m ? message.slice(0, m.index) : message
  if (at < 0) return `: ${said}`
  const before = text.slice(0, at)
  const lineStart = before.lastIndexOf('\n') + 1
  // Columns in characters as editors count them: a character outside the BMP is one, not two UTF-16 units.
  return ` at line ${before.split('\n').length}, column ${Array.from(before.slice(lineStart)).length + 1}: ${said}`
}

/**
 * The offset where `text` stops being JSON (RFC 8259) as JSON.parse reads it: the first character that cannot go on
 * the document, or text.length when it ends early; -1 when it is JSON. Iterative, so no nesting overflows the stack.
 */
export function jsonSyntaxErrorOffset(text: string): number {
  const n = text.length
  let i = 0
  /** The open arrays and objects, innermost last; `opened` when the last value read opened one. */
  const open: Array<'[' | '{'> = []
  let opened = false
  const space = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
  }
  const digits = (): boolean => {
    const from = i
    while (i < n && text[i]! >= '0' && text[i]! <= '9') i++
    return i > from
  }
  // Each reader returns false with `i` at the character that cannot follow.
  const string = (): boolean => {
    for (i++; i < n; i++) {
      const c = text[i]!
      if (c === '"') {
        i++
        return true
      }
      if (c < ' ') return false
      if (c === '\\') {
        i++
        if (text[i] === 'u') {
          for (let k = 0; k < 4; k++) if (!/^[0-9A-Fa-f]$/.test(text[++i] ?? '')) return false
        } else if (i >= n || !'"\\/bfnrt'.includes(text[i]!)) return false
      }
    }
    return false
  }
  const value = (): boolean => {
    const c = text[i]
    if (c === '"') return string()
    if (c === '[' || c === '{') {
      open.push(c)
      opened = true
      i++
      return true
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      if (c === '-') i++
      if (text[i] === '0') i++
      else if (!digits()) return false
      if (text[i] === '.' && (++i, !digits())) return false
      if (text[i] === 'e' || text[i] === 'E') {
        i++
        if (text[i] === '+' || text[i] === '-') i++
        if (!digits()) return false
      }
      return true
    }
    const word = c === 't' ? 'true' : c === 'f' ? 'false' : c === 'n' ? 'null' : undefined
    if (word === undefined) return false
    for (const w of word) {
      if (text[i] !== w) return false
      i++
    }
    return true
  }
  /** A member of an object: its key, the colon and its value. */
  const member = (): boolean => {
    if (text[i] !== '"' || !string()) return false
    space()
    if (text[i] !== ':') return false
    i++
    space()
    return value()
  }
  space()
  if (!value()) return i
  for (;;) {
    const top = open[open.length - 1]
    const close = top === '[' ? ']' : '}'
    space()
    if (top === undefined) return i < n ? i : -1
    if (text[i] === close) {
      open.pop()
      i++
      opened = false
      continue
    }
    if (opened) opened = false
    else if (text[i] === ',') {
      i++
      space()
    } else return i
    if (!(top === '[' ? value() : member())) return i
  }
}

/**
 * `validate(json.doc)`, with the file's own problems named beside the document's: one ValidationError listing the
 * keys given twice and every problem `validate` reports (as a ValidationError), so that one run names them all. A
 * key given twice is a problem even when the document is otherwise valid: which of the two values was meant is
 * the writer's to say, not the parser's to guess (a catalog with `unit_price` twice was priced by the last).
 */
export function validatedJson<T>(json: JsonFile, what: string, validate: (doc: unknown) => T): T {
  let value: T
  try {
    value = validate(json.doc)
  } catch (err) {
    if (err instanceof ValidationError && json.problems.length > 0) throw new ValidationError(err.what, [...json.problems, ...err.problems])
    throw err
  }
  if (json.problems.length > 0) throw new ValidationError(what, json.problems)
  return value
}
