/**
 * RFC 5424 messages: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`.
 * Nil values (`-`) become undefined. The timestamp is kept as written (ISO-8601 with offset); the pipeline's
 * validate stage normalises it to UTC.
 */

export interface SdElement {
  readonly id: string
  readonly params: ReadonlyArray<readonly [string, string]>
}

export interface Rfc5424Message {
  readonly pri: number
  readonly timestamp?: string
  readonly hostname?: string
  readonly appName?: string
  readonly procId?: string
  readonly msgId?: string
  readonly structuredData: readonly SdElement[]
  readonly msg: string
}

export type ParseResult<T> = { readonly ok: true; readonly message: T } | { readonly ok: false; readonly error: string }

/** RFC 5424's TIMESTAMP (RFC 3339 with a zone, at most 6 fraction digits). */
export const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/

/** Reads `<PRI>` at the start; shared with RFC 3164. Returns the value and where the header continues. */
export function parsePri(text: string): { pri: number; rest: number } | { error: string } {
  // `<` 1–3 digits `>`, read by char code: this runs once per message.
  let pri = 0
  let i = 1
  if (text.charCodeAt(0) === 0x3c) {
    for (let c = text.charCodeAt(i); i <= 3 && c >= 0x30 && c <= 0x39; c = text.charCodeAt(++i)) pri = pri * 10 + (c - 0x30)
  }
  if (i === 1 || text.charCodeAt(i) !== 0x3e) {
    return { error: `not a syslog message: expected "<PRI>" at the start, got ${JSON.stringify(text.slice(0, 12))}` }
  }
  if (pri > 191) return { error: `PRI ${pri} is out of range (0–191)` }
  return { pri, rest: i + 1 }
}

/** True when the header after `<PRI>` is an RFC 5424 one (version 1). */
export function isRfc5424(text: string, afterPri: number): boolean {
  return text.startsWith('1 ', afterPri)
}

export function parseRfc5424(text: string): ParseResult<Rfc5424Message> {
  const p = parsePri(text)
  if ('error' in p) return { ok: false, error: p.error }
  if (!isRfc5424(text, p.rest)) return { ok: false, error: 'not RFC 5424: expected version "1" after <PRI>' }
  let i = p.rest + 2
  // Five space-terminated header fields, read without an intermediate array (this runs once per message).
  const field = (f: number): string | { error: string } => {
    const sp = text.indexOf(' ', i)
    if (sp < 0) return { error: `RFC 5424 header ends early: no space after ${HEADER_FIELDS[f]} (STRUCTURED-DATA must follow)` }
    const v = text.slice(i, sp)
    i = sp + 1
    return v
  }
  const ts = field(0)
  if (typeof ts !== 'string') return { ok: false, error: ts.error }
  const host = field(1)
  if (typeof host !== 'string') return { ok: false, error: host.error }
  const app = field(2)
  if (typeof app !== 'string') return { ok: false, error: app.error }
  const proc = field(3)
  if (typeof proc !== 'string') return { ok: false, error: proc.error }
  const msgid = field(4)
  if (typeof msgid !== 'string') return { ok: false, error: msgid.error }
  if (ts !== '-' && !TIMESTAMP.test(ts)) return { ok: false, error: `bad RFC 5424 TIMESTAMP ${JSON.stringify(ts)}` }
  const sd = text.charCodeAt(i) === 0x2d /* - */ ? { elements: NO_SD, end: i + 1 } : parseStructuredData(text, i)
  if ('error' in sd) return { ok: false, error: sd.error }
  i = sd.end
  let msg = ''
  if (i < text.length) {
    if (text[i] !== ' ') return { ok: false, error: `expected a space after STRUCTURED-DATA at column ${i + 1}` }
    msg = text.charCodeAt(i + 1) === 0xfeff ? text.slice(i + 2) : text.slice(i + 1)
  }
  const message: { -readonly [K in keyof Rfc5424Message]: Rfc5424Message[K] } = { pri: p.pri, structuredData: sd.elements, msg }
  if (ts !== '-') message.timestamp = ts
  if (host !== '-') message.hostname = host
  if (app !== '-') message.appName = app
  if (proc !== '-') message.procId = proc
  if (msgid !== '-') message.msgId = msgid
  return { ok: true, message }
}

const HEADER_FIELDS = ['TIMESTAMP', 'HOSTNAME', 'APP-NAME', 'PROCID', 'MSGID'] as const
const NO_SD: readonly SdElement[] = Object.freeze([])

/** STRUCTURED-DATA = "-" / 1*SD-ELEMENT; PARAM-VALUE escapes `"`, `\` and `]` with a backslash. */
function parseStructuredData(text: string, start: number): { elements: SdElement[]; end: number } | { error: string } {
  if (text[start] === '-') return { elements: [], end: start + 1 }
  if (text[start] !== '[') return { error: `expected STRUCTURED-DATA ("-" or "[") at column ${start + 1}` }
  const elements: SdElement[] = []
  let i = start
  while (text[i] === '[') {
    i++
    const idStart = i
    while (i < text.length && !' ]='.includes(text[i]!) && text[i] !== '"') i++
    const id = text.slice(idStart, i)
    if (id.length === 0) return { error: `empty SD-ID at column ${idStart + 1}` }
    const params: Array<[string, string]> = []
    while (text[i] === ' ') {
      i++
      const ns = i
      while (i < text.length && !' ]="'.includes(text[i]!)) i++
      const name = text.slice(ns, i)
      if (name.length === 0 || text[i] !== '=' || text[i + 1] !== '"') {
        return { error: `bad SD-PARAM in [${id}] at column ${ns + 1}: expected name="value"` }
      }
      i += 2
      let v = ''
      for (;;) {
        if (i >= text.length) return { error: `unterminated SD-PARAM value ${id}.${name}` }
        const ch = text[i]!
        if (ch === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\' || text[i + 1] === ']')) {
          v += text[i + 1]
          i += 2
        } else if (ch === '"') {
          i++
          break
        } else {
          v += ch
          i++
        }
      }
      params.push([name, v])
    }
    if (text[i] !== ']') return { error: `expected "]" closing [${id}] at column ${i + 1}` }
    i++
    elements.push({ id, params })
  }
  return { elements, end: i }
}
