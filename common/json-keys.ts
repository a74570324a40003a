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

/** The path to an object or array being read: the key or index it stands at, and the path of its parent. */
interface PathNode {
  readonly at: string | number
  readonly up: PathNode | undefined
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
  /** Where this object or array stands (undefined at the root). */
  node: PathNode | undefined
}

/** A key given twice, its path built when asked for: a copy per key of a path thousands deep ran out of memory. */
class Twice implements DuplicateKey {
  constructor(
    private readonly node: PathNode | undefined,
    readonly key: string,
    readonly firstLine: number,
    readonly line: number,
  ) {}
  get path(): (string | number)[] {
    const path: (string | number)[] = [this.key]
    for (let n = this.node; n !== undefined; n = n.up) path.push(n.at)
    return path.reverse()
  }
}

/** What one pass over a JSON text found: its keys given twice, and how deep its objects and arrays nest. */
export interface JsonKeyScan {
  /** In the text's order; the first `maxFound` of them when more were given. */
  readonly twice: DuplicateKey[]
  /** How many keys were given twice in all. */
  readonly twiceCount: number
  /** The deepest nesting of objects and arrays (0 for a scalar, 1 for `{}` or `[]`). */
  readonly depth: number
}

/**
 * The keys given twice in one object of `text`, which must be valid JSON (JSON.parse accepted it), in the text's
 * order, and its depth. JSON.parse keeps the last value of such a key silently. One pass over the text: strings are
 * skipped whole (a brace inside one is text), and each member's name is decoded as JSON.parse decodes it, so `"a"` and
 * `"\u0061"` are the same key. Costs about what JSON.parse of the text does (an MQTT payload is checked on every
 * message), and memory in proportion to the keys and the depth, however many keys are given twice how deep.
 */
export function scanJsonKeys(text: string, maxFound = Infinity): JsonKeyScan {
  let found: DuplicateKey[] | undefined
  let count = 0
  let depth = 0
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
          if (count++ < maxFound) (found ??= []).push(new Twice(top.node, key, top.lines![seen]!, line))
        } else {
          top.index?.set(key, top.keys.length)
          top.keys.push(key)
          top.lines!.push(line)
        }
        top.at = key
      }
      i = j
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const node = top === undefined ? undefined : { at: top.at, up: top.node }
      stack.push((top = c === 0x7b ? { keys: [], lines: [], at: '', expectKey: true, node } : { at: 0, expectKey: false, node }))
      if (stack.length > depth) depth = stack.length
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop()
      top = stack[stack.length - 1]
    } else if (c === 0x3a /* : */) top!.expectKey = false
    else if (c === 0x2c /* , */) {
      if (top!.keys !== undefined) top!.expectKey = true
      else top!.at = (top!.at as number) + 1
    } else if (c === 0x0a) line++
  }
  return { twice: found ?? [], twiceCount: count, depth }
}

/**
 * The keys given twice in one object of `text` (see scanJsonKeys), the first `maxFound` of them: a file's problems
 * name the first 100, which is plenty to fix it by, where naming each of a generated file's many thousand (each
 * with a path as deep as the file nests) ran out of memory.
 */
export function duplicateJsonKeys(text: string, maxFound = 100): DuplicateKey[] {
  return scanJsonKeys(text, maxFound).twice
}
