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

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/

/** Reads `<PRI>` at the start; shared with RFC 3164. Returns the value and where the header continues. */
export function parsePri(text: string): { pri: number; rest: number } | { error: string } {
  const m = /^<(\d{1,3})>/.exec(text)
  if (!m) return { error: `not a syslog message: expected "<PRI>" at the start, got ${JSON.stringify(text.slice(0, 12))}` }
  const pri = Number(m[1])
  if (pri > 191) return { error: `PRI ${pri} is out of range (0–191)` }
  return { pri, rest: m[0].length }
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
  const fields: string[] = []
  for (let f = 0; f < 5; f++) {
    const sp = text.indexOf(' ', i)
    if (sp < 0) return { ok: false, error: `RFC 5424 header ends early: no space after ${["TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID"][f]} (STRUCTURED-DATA must follow)` }
    fields.push(text.slice(i, sp))
    i = sp + 1
  }
  const [ts, host, app, proc, msgid] = fields as [string, string, string, string, string]
  if (ts !== '-' && !TIMESTAMP.test(ts)) return { ok: false, error: `bad RFC 5424 TIMESTAMP ${JSON.stringify(ts)}` }
  const sd = parseStructuredData(text, i)
  if ('error' in sd) return { ok: false, error: sd.error }
  i = sd.end
  let msg = ''
  if (i < text.length) {
    if (text[i] !== ' ') return { ok: false, error: `expected a space after STRUCTURED-DATA at column ${i + 1}` }
    msg = text.slice(i + 1)
    if (msg.startsWith('\uFEFF')) msg = msg.slice(1)
  }
  const nil = (v: string): string | undefined => (v === '-' ? undefined : v)
  const message: Rfc5424Message = {
    pri: p.pri,
    structuredData: sd.elements,
    msg,
    ...(nil(ts) !== undefined && { timestamp: ts }),
    ...(nil(host) !== undefined && { hostname: host }),
    ...(nil(app) !== undefined && { appName: app }),
    ...(nil(proc) !== undefined && { procId: proc }),
    ...(nil(msgid) !== undefined && { msgId: msgid }),
  }
  return { ok: true, message }
}

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
