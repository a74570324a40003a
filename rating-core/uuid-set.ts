/**
 * A set of UUIDs in their canonical lowercase text form (`8-4-4-4-12` hex digits, e.g.
 * `a12b4869-0000-4000-a030-a12b486939f1`), each held as its 128 bits: four 32-bit words in one open-addressing
 * table (linear probing, tombstones on delete, doubled at 70 % full).
 *
 * Why: a UUID held as a string in a Set costs ~110 bytes (a 36-character string, its header and a Set slot);
 * here it costs 17 bytes per slot, 24–49 per UUID held as the table fills. Measured by `rateflow bench rating`.
 * Only the lowercase form is taken: `A12B…` is another event id than `a12b…`, and its owner keeps it as a
 * string, so whether an id is held here depends on the id alone.
 */
export class UuidSet {
  private words = new Uint32Array(4 * 16)
  /** Per slot: 0 empty, 1 held, 2 deleted (a tombstone: probing goes on past it). */
  private state = new Uint8Array(16)
  private held = 0
  private tombstones = 0
  /** Where find() would put the UUID it did not find. */
  private freeSlot = 0

  /** UUIDs held. */
  get size(): number {
    return this.held
  }

  /** Adds `id`: true when it was not held, false when it was, null when it is not a canonical lowercase UUID (not taken). */
  add(id: string): boolean | null {
    if (!uuidWords(id)) return null
    if ((this.held + this.tombstones + 1) * 10 > this.state.length * 7) this.resize()
    const at = this.find()
    if (at >= 0) return false
    // No slot held it: take the first tombstone on its probe path, else the empty slot that ended the probe.
    const slot = this.freeSlot
    if (this.state[slot] === 2) this.tombstones--
    this.state[slot] = 1
    const w = this.words
    const k = slot * 4
    w[k] = UUID_WORDS[0]!
    w[k + 1] = UUID_WORDS[1]!
    w[k + 2] = UUID_WORDS[2]!
    w[k + 3] = UUID_WORDS[3]!
    this.held++
    return true
  }

  /** Whether `id` is held; null when it is not a canonical lowercase UUID. */
  has(id: string): boolean | null {
    if (!uuidWords(id)) return null
    return this.find() >= 0
  }

  /** Removes `id`: true when it was held, false when not, null when it is not a canonical lowercase UUID. */
  delete(id: string): boolean | null {
    if (!uuidWords(id)) return null
    const at = this.find()
    if (at < 0) return false
    this.state[at] = 2
    this.held--
    this.tombstones++
    return true
  }

  /** The slot holding the UUID in UUID_WORDS, or -1 (and freeSlot set) when none does. */
  private find(): number {
    const w0 = UUID_WORDS[0]!
    const w1 = UUID_WORDS[1]!
    const w2 = UUID_WORDS[2]!
    const w3 = UUID_WORDS[3]!
    const { words, state } = this
    const mask = state.length - 1
    let slot = hash(w0, w1, w2, w3) & mask
    let free = -1
    for (;;) {
      const s = state[slot]!
      if (s === 0) {
        this.freeSlot = free >= 0 ? free : slot
        return -1
      }
      if (s === 1) {
        const k = slot * 4
        if (words[k] === w0 && words[k + 1] === w1 && words[k + 2] === w2 && words[k + 3] === w3) return slot
      } else if (free < 0) free = slot
      slot = (slot + 1) & mask
    }
  }

  /** Rebuilds the table without tombstones, twice the size when more than a third of it is held. */
  private resize(): void {
    const oldWords = this.words
    const oldState = this.state
    const slots = this.held * 3 > oldState.length ? oldState.length * 2 : oldState.length
    this.words = new Uint32Array(slots * 4)
    this.state = new Uint8Array(slots)
    this.tombstones = 0
    const mask = slots - 1
    for (let i = 0; i < oldState.length; i++) {
      if (oldState[i] !== 1) continue
      const k = i * 4
      let slot = hash(oldWords[k]!, oldWords[k + 1]!, oldWords[k + 2]!, oldWords[k + 3]!) & mask
      while (this.state[slot] !== 0) slot = (slot + 1) & mask
      this.state[slot] = 1
      this.words.set(oldWords.subarray(k, k + 4), slot * 4)
    }
  }
}

/** The words of the last UUID uuidWords read, for the call that asked: a fixed scratch, so reading one allocates nothing. */
const UUID_WORDS = new Uint32Array(4)

/**
 * Reads `id` into UUID_WORDS when it is a UUID in canonical lowercase form (36 characters, `8-4-4-4-12` digits of
 * 0-9 and a-f); false otherwise (nothing else is accepted: not uppercase, not braces, not without dashes).
 */
function uuidWords(id: string): boolean {
  if (id.length !== 36) return false
  let word = 0
  let nibbles = 0
  let w = 0
  for (let k = 0; k < 36; k++) {
    const c = id.charCodeAt(k)
    // The dashes of 8-4-4-4-12.
    if (k === 8 || k === 13 || k === 18 || k === 23) {
      if (c !== 45 /* - */) return false
      continue
    }
    let v: number
    if (c >= 48 && c <= 57) v = c - 48
    else if (c >= 97 && c <= 102) v = c - 87
    else return false
    word = (word << 4) | v
    if (++nibbles === 8) {
      UUID_WORDS[w++] = word >>> 0
      word = 0
      nibbles = 0
    }
  }
  return true
}

/** A 32-bit mix of all four words: sequential UUIDs (v7, time first) spread as well as random ones (v4). */
function hash(w0: number, w1: number, w2: number, w3: number): number {
  let h = Math.imul(w0 ^ 0x9e3779b9, 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13) ^ w1, 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16) ^ w2, 0x27d4eb2f)
  h = Math.imul(h ^ (h >>> 15) ^ w3, 0x165667b1)
  return (h ^ (h >>> 16)) >>> 0
}
