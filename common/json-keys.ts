import { jsonMemberPath } from './strings.js'

/** A key given twice in one JSON object. */
export interface DuplicateKey {
  /** Where the second one stands: member names and array indexes from the document's root. */
  readonly path: readonly (string | number)[]
  readonly key: string
  /** 1-based lines of the first and the second. */
  readonly firstLine: number
  readonly line: number
}

/** `$`, `$.a[0]["b c"]`: the JSON path of `path` as problems name it. */
export function jsonPathText(path: readonly (string | number)[]): string {
  let p = '$'
  for (const at of path) p = typeof at === 'number' ? `${p}[${at}]` : jsonMemberPath(p, at)
  return p
}

interface Frame {
  /** Keys seen so far and the line each was first given on, side by side (objects only; a few keys each, as a rule). */
  keys?: string[]
  lines?: number[]
  /** keys by position, once there are many. */
  index?: Map<string, number>
  /** The key being read (objects), or the element's index (arrays). */
  at: string | number
  expectKey: boolean
}

/**
 * The keys given twice in one object of `text`, which must be valid JSON (JSON.parse accepted it), in the text's
 * order. JSON.parse keeps the last value of such a key silently. One pass over the text: strings are skipped whole
 * (a brace inside one is text), and each member's name is decoded as JSON.parse decodes it, so `"a"` and `"\u0061"`
 * are the same key. Costs about what JSON.parse of the text does (an MQTT payload is checked on every message).
 */
export function duplicateJsonKeys(text: string): DuplicateKey[] {
  let found: DuplicateKey[] | undefined
  const stack: Frame[] = []
  let top: Frame | undefined
  let line = 1
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22 /* " */) {
      // The closing quote: the next one not escaped (preceded by an even number of backslashes).
      let j = text.indexOf('"', i + 1)
      for (;;) {
        let k = j - 1
        while (text.charCodeAt(k) === 0x5c) k--
        if ((j - 1 - k) % 2 === 0) break
        j = text.indexOf('"', j + 1)
      }
      if (top?.keys !== undefined && top.expectKey) {
        const raw = text.slice(i + 1, j)
        const key = raw.includes('\\') ? (JSON.parse(text.slice(i, j + 1)) as string) : raw
        // Past a few keys, a Map: an object of 100,000 keys compared each with all before it took minutes.
        if (top.keys.length === 32 && top.index === undefined) top.index = new Map(top.keys.map((k, n) => [k, n]))
        const seen = top.index !== undefined ? (top.index.get(key) ?? -1) : top.keys.indexOf(key)
        if (seen >= 0) {
          ;(found ??= []).push({ path: [...stack.slice(0, -1).map((f) => f.at), key], key, firstLine: top.lines![seen]!, line })
        } else {
          top.index?.set(key, top.keys.length)
          top.keys.push(key)
          top.lines!.push(line)
        }
        top.at = key
      }
      i = j
    } else if (c === 0x7b /* { */) stack.push((top = { keys: [], lines: [], at: '', expectKey: true }))
    else if (c === 0x5b /* [ */) stack.push((top = { at: 0, expectKey: false }))
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop()
      top = stack[stack.length - 1]
    } else if (c === 0x3a /* : */) top!.expectKey = false
    else if (c === 0x2c /* , */) {
      if (top!.keys !== undefined) top!.expectKey = true
      else top!.at = (top!.at as number) + 1
    } else if (c === 0x0a) line++
  }
  return found ?? []
}
