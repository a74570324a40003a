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
 * parser's message. Keys given twice in one object come back as `problems`, for the caller to name with the
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
    throw new RateflowError(ErrorCode.BadInput, `${file}: not valid JSON: ${(err as Error).message}`)
  }
  return {
    file,
    doc,
    problems: duplicateJsonKeys(text).map((d) => ({ path: jsonPathText(d.path), message: `key ${JSON.stringify(d.key)} is given twice (lines ${d.firstLine} and ${d.line}): keep one` })),
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
