/** TabSeparated text for ClickHouse inserts: pure string helpers, safe to use in worker threads. */

/** Escapes one value for TabSeparated input. */
export function tsv(value: string): string {
  // Fast path: most ids and decimals need no escaping.
  if (!/[\t\n\\\r]/.test(value)) return value
  return value.replace(/[\t\n\\\r]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\\\'))
}

/**
 * A Map(String,String) literal as one TabSeparated field: `{'k':'v',…}`, each key and value a quoted string
 * (tsvQuoted). Nothing else is escaped: ClickHouse reads a Map field of TabSeparated input with its own parser,
 * quoted strings and their escapes straight from the field's bytes, not after unescaping the field as TSV (escaping the
 * whole literal again doubled every backslash, and a value with a quote, `o'brien`, failed the insert).
 */
export function tsvMap(m: Record<string, string> | undefined): string {
  if (!m) return '{}'
  let out = '{'
  let first = true
  for (const k in m) {
    const v = m[k] as string
    out += (first ? '' : ',') + tsvQuoted(k) + ':' + tsvQuoted(v)
    first = false
  }
  return out + '}'
}

/** An Array(String) literal as one TabSeparated field: `['a','b']`, each a quoted string (tsvQuoted). */
export function tsvArray(values: readonly string[]): string {
  return '[' + values.map(tsvQuoted).join(',') + ']'
}

/**
 * A quoted string inside a Map or Array field of TabSeparated input: single-quoted, with backslash, quote, tab,
 * newline and carriage return escaped (`\\ \' \t \n \r`), so the field holds no raw tab or line end to cut the row.
 */
export function tsvQuoted(s: string): string {
  if (!/[\\'\t\n\r]/.test(s)) return "'" + s + "'"
  return "'" + s.replace(/[\\'\t\n\r]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\' + c)) + "'"
}

/** A ClickHouse string literal in SQL: single-quoted, backslashes and single quotes escaped. Inside TabSeparated input, tsvQuoted. */
export function chString(s: string): string {
  return "'" + s.replace(/[\\']/g, (c) => '\\' + c) + "'"
}

/** `2026-10-01T00:00:00.000Z` (normalised UTC ISO) → `2026-10-01 00:00:00.000`, the DateTime64 text form. */
export function chTime(iso: string): string {
  return iso.slice(0, 10) + ' ' + iso.slice(11, 23)
}

/** The other way: a UTC DateTime64 as ClickHouse prints it (`2026-10-01 00:00:00.000`) → epoch ms. */
export function chTimeMs(text: string): number {
  return Date.parse(text.replace(' ', 'T') + 'Z')
}

const ESCAPED: Readonly<Record<string, string>> = { b: '\b', f: '\f', r: '\r', n: '\n', t: '\t', '0': '\0', a: '\x07', v: '\v' }

/**
 * One value of ClickHouse's TabSeparated output, unescaped: `\b \f \r \n \t \0 \a \v \xHH` and a backslash before
 * any other character (`\\`, `\'`) stand for that character. The inverse of ClickHouse's escaping, so any string
 * it stored comes back as it was.
 */
export function fromTsv(text: string): string {
  let i = text.indexOf('\\')
  if (i < 0) return text
  let out = text.slice(0, i)
  while (i < text.length) {
    const c = text[i]!
    if (c !== '\\' || i + 1 >= text.length) {
      out += c
      i++
      continue
    }
    const e = text[i + 1]!
    if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      out += String.fromCharCode(parseInt(text.slice(i + 2, i + 4), 16))
      i += 4
      continue
    }
    out += ESCAPED[e] ?? e
    i += 2
  }
  return out
}
