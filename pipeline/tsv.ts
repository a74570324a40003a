/** TabSeparated text for ClickHouse inserts: pure string helpers, safe to use in worker threads. */

/** Escapes one value for TabSeparated input. */
export function tsv(value: string): string {
  // Fast path: most ids and decimals need no escaping.
  if (!/[\t\n\\\r]/.test(value)) return value
  return value.replace(/[\t\n\\\r]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\\\'))
}

/** A Map(String,String) literal for TabSeparated input. */
export function tsvMap(m: Record<string, string> | undefined): string {
  if (!m) return '{}'
  let out = '{'
  let first = true
  for (const k in m) {
    const v = m[k] as string
    out += (first ? '' : ',') + chString(k) + ':' + chString(v)
    first = false
  }
  return tsv(out + '}')
}

/** A ClickHouse string literal: single-quoted, backslashes and single quotes escaped (in SQL, and in Map/Array text). */
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
