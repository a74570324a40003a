/**
 * The `key=value` message body (CONTRACT §8): pairs separated by whitespace, values bare or double-quoted with
 * `\"` and `\\` escapes. Appliance traffic logs (FortiGate and alike) use the same shape.
 */
import type { PartialRecord } from '../mapping.js'

export type KvResult = { readonly ok: true; readonly fields: Map<string, string> } | { readonly ok: false; readonly error: string }

const KEY = /[A-Za-z0-9_.\-@:/]/

/** Parses a body; the error names the column (1-based) where parsing stopped. */
export function parseKv(text: string): KvResult {
  const fields = new Map<string, string>()
  let i = 0
  const n = text.length
  while (i < n) {
    while (i < n && /\s/.test(text[i]!)) i++
    if (i >= n) break
    const start = i
    while (i < n && KEY.test(text[i]!)) i++
    const key = text.slice(start, i)
    if (key.length === 0 || text[i] !== '=') {
      const word = text.slice(start, Math.min(n, start + 20)).split(/\s/)[0]
      return { ok: false, error: `expected key=value at column ${start + 1}, got ${JSON.stringify(word)}` }
    }
    i++ // '='
    let value: string
    if (text[i] === '"') {
      i++
      let v = ''
      let closed = false
      while (i < n) {
        const ch = text[i]!
        if (ch === '\\' && i + 1 < n && (text[i + 1] === '"' || text[i + 1] === '\\')) {
          v += text[i + 1]
          i += 2
        } else if (ch === '"') {
          closed = true
          i++
          break
        } else {
          v += ch
          i++
        }
      }
      if (!closed) return { ok: false, error: `unterminated quoted value of ${key} (opened at column ${start + key.length + 2})` }
      if (i < n && !/\s/.test(text[i]!)) return { ok: false, error: `expected a space after the quoted value of ${key} at column ${i + 1}` }
      value = v
    } else {
      const vs = i
      while (i < n && !/\s/.test(text[i]!)) i++
      value = text.slice(vs, i)
    }
    if (fields.has(key)) return { ok: false, error: `duplicate key ${key} at column ${start + 1}` }
    fields.set(key, value)
  }
  return { ok: true, fields }
}

const CANONICAL = new Set(['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric', 'quantity'])

/**
 * The canonical record of a key=value body. `sd` holds RFC 5424 structured-data params (by plain name); they
 * supply canonical fields and `dim.*` the body does not set, and any other SD param is metadata and ignored
 * (logger adds `timeQuality` to every message). Unknown body keys are an error: a typo must not vanish.
 */
export function canonicalFromKv(body: ReadonlyMap<string, string>, sd: ReadonlyMap<string, string>): PartialRecord | { error: string } {
  const fields = new Map<string, string>()
  for (const [k, v] of sd) if (CANONICAL.has(k) || k.startsWith('dim.')) fields.set(k, v)
  for (const [k, v] of body) {
    if (!CANONICAL.has(k) && !(k.startsWith('dim.') && k.length > 4)) {
      return { error: `unknown key ${k} (canonical keys: ${[...CANONICAL].join(', ')}, dim.<name>; other shapes need a mapping)` }
    }
    fields.set(k, v)
  }
  const metric = fields.get('metric')
  const quantity = fields.get('quantity')
  if (metric === undefined || metric === '') return { error: 'missing metric=' }
  if (quantity === undefined || quantity === '') return { error: 'missing quantity=' }
  const p: PartialRecord = { metric, quantity }
  for (const k of ['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id'] as const) {
    const v = fields.get(k)
    if (v !== undefined && v !== '') p[k] = v
  }
  const dims: Record<string, string> = {}
  for (const [k, v] of fields) if (k.startsWith('dim.')) dims[k.slice(4)] = v
  if (Object.keys(dims).length > 0) p.dimensions = dims
  return p
}
