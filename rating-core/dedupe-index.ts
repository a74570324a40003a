import { lowerBound } from '../common/sorted.js'
import { detached } from '../common/strings.js'
import { UuidSet } from './uuid-set.js'

/**
 * The set of accepted (source, event_id) keys a partition owner dedupes against: exact, in memory, per source.
 *
 * Why per source and not one Set of `source\0event_id`: the source is the same for a whole batch, so the
 * joined key repeated it in every entry and had to be built per event.
 *
 * Why numbered ids apart: many sources number their events (a CSV export's `e-<row>`, a device's sequence
 * counter `<device>-<seq>`). An id that is a prefix followed by a canonical decimal below 10^9 (no leading
 * zero) is held as that number under its prefix: a small integer needs no string behind it, so an insert
 * touches no key text. Numbers are kept in pages of 65,536, each a sorted array of 16-bit values while sparse
 * and a bitmap once dense: a run of row numbers or a counter costs about a bit per id, scattered numbers a few
 * bytes.
 *
 * Why UUIDs apart: a canonical lowercase UUID is held as its 128 bits in an open-addressing table (uuid-set.ts),
 * ~30 bytes instead of ~110 as a string in a Set.
 *
 * Every other id (uppercase UUIDs, leading zeros, longer numbers, long prefixes, prefixes past a source's first
 * 4,096) is held as a string. An id is held in one form only: the form depends on the id and on whether its
 * prefix has numbers, and a prefix that has them keeps them. Measured by `rateflow bench rating` (bytes per
 * remembered key). Ids held as strings are detached copies: an id sliced out of a batch's wire text would
 * otherwise keep the whole text alive (common/strings.ts).
 */
export class DedupeIndex {
  private readonly bySource = new Map<string, SourceIds>()
  // The last source's ids: one Map probe per batch rather than per event. `lastSourceIn` is the caller's last
  // string for it, as given: a batch's records share one, and comparing the same string is a pointer test. It
  // may be a slice of a batch's text; only the last one is held.
  private lastSourceIn: string | undefined
  private lastIds: SourceIds | undefined
  private count = 0

  /** `maxPrefixes`: numbered prefixes per source (4,096; smaller in tests, to reach the limit). */
  constructor(private readonly maxPrefixes = MAX_PREFIXES) {}

  /** Keys held. */
  get size(): number {
    return this.count
  }

  /** Adds the key; true when it was new (accept the event), false when it was there (a duplicate). One probe. */
  add(source: string, eventId: string): boolean {
    if (!this.idsOf(source).add(eventId)) return false
    this.count++
    return true
  }

  /** True when the key is held. */
  has(source: string, eventId: string): boolean {
    return this.bySource.get(source)?.has(eventId) ?? false
  }

  /** Removes the key (an accepted event that turned out a reject); true when it was there. */
  delete(source: string, eventId: string): boolean {
    const removed = this.bySource.get(source)?.delete(eventId) ?? false
    if (removed) this.count--
    return removed
  }

  private idsOf(source: string): SourceIds {
    if (source === this.lastSourceIn) {
      // Equal text, maybe another string: the next comparisons of this batch's source are then by identity.
      this.lastSourceIn = source
      return this.lastIds!
    }
    // A copy: the caller's source may be a slice of a batch's wire text.
    const own = detached(source)
    let ids = this.bySource.get(own)
    if (ids === undefined) {
      ids = new SourceIds(this.maxPrefixes)
      this.bySource.set(own, ids)
    }
    this.lastSourceIn = source
    this.lastIds = ids
    return ids
  }
}

/** At most 9 digits: every such number is below 2^30, a small integer in every V8 configuration. */
const MAX_DIGITS = 9
/**
 * A prefix of at most this many characters: a counter's prefix is short (`e-`, `fw-0001-03-`); an id whose digits
 * end a long random token (a UUID ending in digits) would make one prefix per id, each with a Set of its own.
 */
const MAX_PREFIX = 20
/** Prefixes per source: past it, ids under new prefixes are held as strings (bounds what random short tokens cost). */
const MAX_PREFIXES = 4096

/** The event ids of one source: UUIDs as their 128 bits, numbered ids by prefix (as NumberSets), the others as strings. */
class SourceIds {
  constructor(private readonly maxPrefixes: number) {}

  private readonly strings = new Set<string>()
  private readonly uuids = new UuidSet()
  private readonly numbered = new Map<string, NumberSet>()
  // The last prefix's numbers: ids of a source mostly share one prefix, so the prefix is compared, not sliced and hashed.
  private lastPrefix: string | undefined
  private lastNumbers: NumberSet | undefined

  add(id: string): boolean {
    const uuid = this.uuids.add(id)
    if (uuid !== null) return uuid
    const split = numberedSplit(id)
    const numbers = split < 0 ? undefined : this.numbersOf(id, split, true)
    if (numbers === undefined) {
      const before = this.strings.size
      this.strings.add(detached(id))
      return this.strings.size !== before
    }
    return numbers.add(numberAt(id, split))
  }

  has(id: string): boolean {
    return this.apply(id, 'has')
  }

  delete(id: string): boolean {
    return this.apply(id, 'delete')
  }

  /** `op` on the form `id` is held in (a lookup: it makes no prefix numbers). */
  private apply(id: string, op: 'has' | 'delete'): boolean {
    const uuid = this.uuids[op](id)
    if (uuid !== null) return uuid
    const split = numberedSplit(id)
    const numbers = split < 0 ? undefined : this.numbersOf(id, split, false)
    return numbers === undefined ? this.strings[op](id) : numbers[op](numberAt(id, split))
  }

  /**
   * The numbers under the prefix `id.slice(0, split)`, or undefined when ids under it are held as strings: its
   * Set is made on the first add while there is room for another prefix. A prefix never loses its Set, so the
   * form an id is held in never changes once it is held.
   */
  private numbersOf(id: string, split: number, create: boolean): NumberSet | undefined {
    const last = this.lastPrefix
    if (last !== undefined && last.length === split && id.startsWith(last)) return this.lastNumbers
    const prefix = detached(id.slice(0, split))
    let numbers = this.numbered.get(prefix)
    if (numbers === undefined) {
      if (!create || this.numbered.size >= this.maxPrefixes) return undefined
      numbers = new NumberSet()
      this.numbered.set(prefix, numbers)
    }
    this.lastPrefix = prefix
    this.lastNumbers = numbers
    return numbers
  }
}

/**
 * Where the number of a numbered id starts (the length of its prefix), or -1 when the id is not numbered:
 * a prefix of at most MAX_PREFIX characters, then 1 to MAX_DIGITS decimal digits, the first of them not a 0
 * unless it is the only one.
 */
function numberedSplit(id: string): number {
  let k = id.length
  const stop = Math.max(0, k - MAX_DIGITS - 1)
  while (k > stop) {
    const c = id.charCodeAt(k - 1)
    if (c < 48 || c > 57) break
    k--
  }
  const digits = id.length - k
  if (digits === 0 || digits > MAX_DIGITS || k > MAX_PREFIX) return -1
  if (digits > 1 && id.charCodeAt(k) === 48) return -1
  return k
}

/** The decimal value of the digits from `at` to the end (numberedSplit checked them). */
function numberAt(id: string, at: number): number {
  let v = 0
  for (let k = at; k < id.length; k++) v = v * 10 + (id.charCodeAt(k) - 48)
  return v
}

/** Numbers per page: a page's bitmap is 2^16 bits, 8 KiB. */
const PAGE_BITS = 16
const PAGE_MASK = (1 << PAGE_BITS) - 1
/**
 * A page keeps its numbers as a sorted array of 16-bit values until it has this many (4 KiB), then as a bitmap
 * (8 KiB, which never grows again): a scattered page costs ~2-4 bytes per number, a dense one a bit.
 */
const DENSE_AT = 2048

/** The numbers of one page (n >>> 16): their low 16 bits, sorted, while sparse; then a bitmap. */
class Page {
  private sorted: Uint16Array | null = new Uint16Array(8)
  private n = 0
  private bits: Uint32Array | null = null

  add(low: number): boolean {
    const bits = this.bits
    if (bits !== null) {
      const w = low >>> 5
      const m = 1 << (low & 31)
      if ((bits[w]! & m) !== 0) return false
      bits[w] = bits[w]! | m
      return true
    }
    let a = this.sorted!
    const at = this.find(low)
    if (at < this.n && a[at] === low) return false
    if (this.n + 1 >= DENSE_AT) {
      const b = new Uint32Array(1 << (PAGE_BITS - 5))
      for (let k = 0; k < this.n; k++) b[a[k]! >>> 5] = b[a[k]! >>> 5]! | (1 << (a[k]! & 31))
      b[low >>> 5] = b[low >>> 5]! | (1 << (low & 31))
      this.bits = b
      this.sorted = null
      return true
    }
    if (this.n === a.length) {
      const grown = new Uint16Array(a.length * 2)
      grown.set(a)
      a = this.sorted = grown
    }
    a.copyWithin(at + 1, at, this.n)
    a[at] = low
    this.n++
    return true
  }

  has(low: number): boolean {
    const bits = this.bits
    if (bits !== null) return (bits[low >>> 5]! & (1 << (low & 31))) !== 0
    const at = this.find(low)
    return at < this.n && this.sorted![at] === low
  }

  delete(low: number): boolean {
    const bits = this.bits
    if (bits !== null) {
      const w = low >>> 5
      const m = 1 << (low & 31)
      if ((bits[w]! & m) === 0) return false
      bits[w] = bits[w]! & ~m
      return true
    }
    const a = this.sorted!
    const at = this.find(low)
    if (at >= this.n || a[at] !== low) return false
    a.copyWithin(at, at + 1, this.n)
    this.n--
    return true
  }

  /** The first index of the sorted values not below `low`. */
  private find(low: number): number {
    return lowerBound(this.sorted!, this.n, low)
  }
}

/**
 * A set of numbers below 2^30 in pages of 65,536: counters and row numbers come in runs, so most pages end up
 * dense and cost a bit per number; a sparse page a few bytes per number.
 */
class NumberSet {
  private readonly pages = new Map<number, Page>()
  // Numbers of a feed mostly fall in the page of the one before.
  private lastIndex = -1
  private lastPage: Page | undefined

  add(n: number): boolean {
    return this.page(n >>> PAGE_BITS, true)!.add(n & PAGE_MASK)
  }

  has(n: number): boolean {
    return this.page(n >>> PAGE_BITS, false)?.has(n & PAGE_MASK) ?? false
  }

  delete(n: number): boolean {
    return this.page(n >>> PAGE_BITS, false)?.delete(n & PAGE_MASK) ?? false
  }

  private page(index: number, create: boolean): Page | undefined {
    if (index === this.lastIndex) return this.lastPage
    let p = this.pages.get(index)
    if (p === undefined) {
      if (!create) return undefined
      p = new Page()
      this.pages.set(index, p)
    }
    this.lastIndex = index
    this.lastPage = p
    return p
  }
}
