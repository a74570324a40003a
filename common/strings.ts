/**
 * A copy of `s` that shares no storage with a larger string.
 *
 * Why: V8 represents a slice of 13 characters or more as a view into its parent, so a short string sliced
 * out of a batch's wire text keeps the whole text (hundreds of KB) alive for as long as it is held. What a
 * rater keeps for good (a dedupe key, a running-total key) is detached first: measured, a Set of sliced keys
 * held ~29 KB per key instead of ~100 bytes. The concatenation is flattened into a new string of the key's
 * own length by the slice that follows it.
 */
export function detached(s: string): string {
  // Below 13 characters (V8's minimum for a slice view or a concatenation node) a string is always its own copy.
  if (s.length < 13) return s
  return (' ' + s).slice(1)
}

/**
 * Compares two strings as ClickHouse sorts String columns: by their UTF-8 bytes, which is Unicode code point order.
 * JavaScript's `<` compares UTF-16 code units instead, which puts a character above U+FFFF (a surrogate pair,
 * 0xD800–0xDFFF) before one in U+E000–U+FFFF; for well-formed strings the two orders differ only there. A lone
 * surrogate has no UTF-8 (the store holds U+FFFD for it): none reaches the rater, as the adapters refuse them.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    // A surrogate against a unit at or above U+E000: the surrogate's character (≥ U+10000) is the larger.
    if (x >= 0xd800 && y >= 0xd800) {
      const xs = x < 0xe000
      const ys = y < 0xe000
      if (xs !== ys) return xs ? 1 : -1
    }
    return x < y ? -1 : 1
  }
  return a.length - b.length
}

/**
 * True when `s` is well-formed UTF-16, with no lone surrogate (a JSON escape `\ud800` with no pair): what UTF-8, file
 * names, msgpack and the store can hold as it is. (String.prototype.isWellFormed, which the ES2022 library types lack.)
 */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed()
}

/**
 * The JSON path of member `key` of the object at `path`: `$.a.key` for a name as JavaScript writes one, `$.a["a b"]`
 * for any other (a key with a dot, a space or a quote read as two steps of the path, or none).
 */
export function jsonMemberPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`
}
