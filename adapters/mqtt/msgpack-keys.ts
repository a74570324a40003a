/**
 * What msgpack decoding does not say about a message: a map key given twice (the decoder keeps the last value
 * silently, as JSON.parse does) and how deep its maps and arrays nest. One pass over the bytes, no values built
 * but the keys of maps.
 */

/** A map key given twice: where the second one stands (keys and indexes from the root), and the key as text. */
export interface MsgpackTwice {
  readonly path: readonly (string | number)[]
  readonly key: string
}

export interface MsgpackKeyScan {
  /** In the message's order. */
  readonly twice: MsgpackTwice[]
  /** The deepest nesting of maps and arrays (0 for a scalar), as far as the scan read. */
  readonly depth: number
}

interface Frame {
  /** Items in all and left to read: 2 per entry for a map (key, value), 1 per element for an array. */
  readonly total: number
  left: number
  /** Keys seen so far (maps only). */
  readonly keys?: Set<string>
  /** Where this map or array stands in its parent: a key or an index (undefined at the root). */
  readonly pos: string | number | undefined
  /** The key last read (maps): the position of the value being read. */
  key: string
}

const utf8 = new TextDecoder('utf-8')

/** The `n` bytes at `at` as text when they are all ASCII (a key's usual case, without a decoder call), else undefined. */
function asciiKey(bytes: Uint8Array, at: number, n: number): string | undefined {
  let key = ''
  for (let k = at; k < at + n; k++) {
    const b = bytes[k]!
    if (b >= 0x80) return undefined
    key += String.fromCharCode(b)
  }
  return key
}

/**
 * Scans the first msgpack value of `bytes`, which must decode (the decoder accepted it; a value cut short ends the
 * scan where it stops). A key that is a string counts as that string, a number or nil/boolean as the text the
 * decoder turns it into (`1` and `"1"` are one key of the object it builds); other key kinds are not compared.
 * The scan stops once the nesting passes `maxDepth` (the depth it returns is then maxDepth + 1).
 */
export function scanMsgpackKeys(bytes: Uint8Array, maxDepth = Infinity): MsgpackKeyScan {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const twice: MsgpackTwice[] = []
  const stack: Frame[] = []
  let depth = 0
  let i = 0
  while (i < bytes.length) {
    const top = stack[stack.length - 1]
    const asKey = top?.keys !== undefined && (top.total - top.left) % 2 === 0
    const b = bytes[i++]!
    // The item's own length in bytes after its type byte, and what it opens (a map's or an array's count).
    let skip = 0
    let opens: 'map' | 'array' | undefined
    let count = 0
    let key: string | undefined
    let strLen = -1
    let ext: number | undefined
    if (b <= 0x7f) key = String(b)
    else if (b <= 0x8f) [opens, count] = ['map', b & 0x0f]
    else if (b <= 0x9f) [opens, count] = ['array', b & 0x0f]
    else if (b <= 0xbf) strLen = b & 0x1f
    else if (b >= 0xe0) key = String(b - 0x100)
    else {
      switch (b) {
        case 0xc0: key = 'null'; break
        case 0xc2: key = 'false'; break
        case 0xc3: key = 'true'; break
        case 0xc4: skip = 1 + (bytes[i] ?? 0); break
        case 0xc5: skip = 2 + (i + 2 <= bytes.length ? view.getUint16(i) : 0); break
        case 0xc6: skip = 4 + (i + 4 <= bytes.length ? view.getUint32(i) : 0); break
        case 0xc7: ext = bytes[i + 1]; skip = 2 + (bytes[i] ?? 0); break
        case 0xc8: ext = bytes[i + 2]; skip = 3 + (i + 2 <= bytes.length ? view.getUint16(i) : 0); break
        case 0xc9: ext = bytes[i + 4]; skip = 5 + (i + 4 <= bytes.length ? view.getUint32(i) : 0); break
        case 0xca: key = i + 4 <= bytes.length ? String(view.getFloat32(i)) : undefined; skip = 4; break
        case 0xcb: key = i + 8 <= bytes.length ? String(view.getFloat64(i)) : undefined; skip = 8; break
        case 0xcc: key = String(bytes[i]); skip = 1; break
        case 0xcd: key = i + 2 <= bytes.length ? String(view.getUint16(i)) : undefined; skip = 2; break
        case 0xce: key = i + 4 <= bytes.length ? String(view.getUint32(i)) : undefined; skip = 4; break
        case 0xcf: key = i + 8 <= bytes.length ? String(view.getBigUint64(i)) : undefined; skip = 8; break
        case 0xd0: key = i + 1 <= bytes.length ? String(view.getInt8(i)) : undefined; skip = 1; break
        case 0xd1: key = i + 2 <= bytes.length ? String(view.getInt16(i)) : undefined; skip = 2; break
        case 0xd2: key = i + 4 <= bytes.length ? String(view.getInt32(i)) : undefined; skip = 4; break
        case 0xd3: key = i + 8 <= bytes.length ? String(view.getBigInt64(i)) : undefined; skip = 8; break
        case 0xd4: ext = bytes[i]; skip = 2; break
        case 0xd5: ext = bytes[i]; skip = 3; break
        case 0xd6: ext = bytes[i]; skip = 5; break
        case 0xd7: ext = bytes[i]; skip = 9; break
        case 0xd8: ext = bytes[i]; skip = 17; break
        case 0xd9: strLen = bytes[i] ?? 0; i += 1; break
        case 0xda: strLen = i + 2 <= bytes.length ? view.getUint16(i) : 0; i += 2; break
        case 0xdb: strLen = i + 4 <= bytes.length ? view.getUint32(i) : 0; i += 4; break
        case 0xdc: [opens, count] = ['array', i + 2 <= bytes.length ? view.getUint16(i) : 0]; i += 2; break
        case 0xdd: [opens, count] = ['array', i + 4 <= bytes.length ? view.getUint32(i) : 0]; i += 4; break
        case 0xde: [opens, count] = ['map', i + 2 <= bytes.length ? view.getUint16(i) : 0]; i += 2; break
        case 0xdf: [opens, count] = ['map', i + 4 <= bytes.length ? view.getUint32(i) : 0]; i += 4; break
        default: return { twice, depth } // 0xc1 is never used: not msgpack from here on
      }
    }
    // An extension other than the timestamp (-1) may be one of msgpackr's that read the values after it as their own
    // (records, sets, errors, structured clones): from here the items cannot be told apart, so the scan ends, with
    // what it found before (a payload that uses them is not checked further; none is refused for them).
    if (ext !== undefined && ext !== 0xff) return { twice, depth }
    if (strLen >= 0) {
      if (asKey) key = strLen <= 64 ? asciiKey(bytes, i, strLen) ?? utf8.decode(bytes.subarray(i, i + strLen)) : utf8.decode(bytes.subarray(i, i + strLen))
      skip = strLen
    }
    i += skip
    // This item's position in its parent, and the parent's bookkeeping.
    let pos: string | number | undefined
    if (top !== undefined) {
      if (asKey) {
        if (key !== undefined) {
          if (top.keys!.has(key)) twice.push({ path: [...stack.slice(1).map((f) => f.pos ?? ''), key], key })
          else top.keys!.add(key)
        }
        top.key = key ?? ''
      } else pos = top.keys !== undefined ? top.key : (top.total - top.left)
      top.left--
    }
    if (opens !== undefined) {
      if (stack.length + 1 > depth) depth = stack.length + 1
      if (depth > maxDepth) break
      if (count > 0) {
        const total = opens === 'map' ? count * 2 : count
        stack.push(opens === 'map' ? { total, left: total, keys: new Set<string>(), pos, key: '' } : { total, left: total, pos, key: '' })
        continue
      }
    }
    // Close every map and array this item completed; past the root value, the scan is done.
    while (stack.length > 0 && stack[stack.length - 1]!.left === 0) stack.pop()
    if (stack.length === 0) break
  }
  return { twice, depth }
}
