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
