import { DedupeIndex } from './dedupe-index.js'

/**
 * The rater's dedupe keys, held in memory only inside the late-arrival horizon (ARCHITECTURE: "dedupe must be
 * exact inside the late-arrival horizon"), so a rater that runs for months holds a bounded number of keys.
 *
 * A key is held while `now − horizon ≤ max(its event time, when it was accepted)`: an accepted key stays at least
 * `horizon` after its acceptance (long after its flush committed) and after its event time (a future-dated event
 * stays until its own time has passed). Keys are kept in generations by that time, `horizon / 2` wide, and a whole
 * generation is dropped once all of its keys are past the horizon (`evict`): memory holds at most 1.5 × the horizon
 * of keys, and a probe visits at most three generations (a few more while future-dated events are held).
 *
 * What the owner must do for keys it no longer holds: an event whose time is before `now − horizon`
 * (`isLate`) may duplicate a key that was dropped, or that was committed before the owner started and not
 * loaded (the owner loads only the keys it would hold: event time, or acceptance when later, inside the horizon). The owner checks such events
 * against the store's committed keys before adding them (pipeline/rater.ts). Every other event's original, if
 * there is one, has the same event time, so it is inside the horizon and held here. An event id reused by its
 * source with another event time, further apart than the horizon, is therefore a new event: outside the horizon,
 * only events with the same (source, event_id, event_time) are caught.
 */
export class HorizonIndex {
  /** Generations by number (`floor(time / width)`), oldest first in `order`. */
  private readonly generations = new Map<number, DedupeIndex>()
  private order: number[] = []
  private readonly width: number
  /** Whether a generation was ever dropped: keys of any source may then be missing (see `mayMissKeys`). */
  private dropped = false
  // The last generation asked for: events of a batch are mostly held until the same time (their acceptance).
  private lastNumber = Number.NaN
  private lastGeneration: DedupeIndex | undefined

  /**
   * `horizonMs`: the late-arrival horizon, at least 2 ms. `maxPrefixes` as DedupeIndex's (smaller in tests).
   */
  constructor(
    readonly horizonMs: number,
    private readonly maxPrefixes?: number,
  ) {
    if (!(Number.isSafeInteger(horizonMs) && horizonMs >= 2)) throw new RangeError(`dedupe horizon ${horizonMs} ms: must be a whole number of ms, at least 2`)
    this.width = Math.floor(horizonMs / 2)
  }

  /** Keys held. */
  get size(): number {
    let n = 0
    for (const g of this.generations.values()) n += g.size
    return n
  }

  /** Generations held (for logs and tests). */
  get generationCount(): number {
    return this.generations.size
  }

  /** True once keys were dropped: from then on the owner must check every late event against the store. */
  get mayMissKeys(): boolean {
    return this.dropped
  }

  /** True when an event at `eventMs` is before the horizon at `nowMs`: its original may not be held here. */
  isLate(eventMs: number, nowMs: number): boolean {
    return eventMs < nowMs - this.horizonMs
  }

  /**
   * Accepts the key of an event at `eventMs`, seen at `nowMs`: true when no generation holds it (it is added, to be
   * held until `max(eventMs, nowMs)` is past the horizon), false when one does (a duplicate). Not the whole check for
   * a late event: see the class comment.
   */
  add(source: string, eventId: string, eventMs: number, nowMs: number): boolean {
    const target = this.generation(Math.max(eventMs, nowMs))
    if (this.generations.size > 1) {
      for (const g of this.generations.values()) if (g !== target && g.has(source, eventId)) return false
    }
    return target.add(source, eventId)
  }

  /**
   * Puts back a committed key read from the store (event at `eventMs`): held until its event time is past the horizon.
   * An add seen at its own event time.
   */
  load(source: string, eventId: string, eventMs: number): void {
    this.add(source, eventId, eventMs, eventMs)
  }

  /** True when the key is held. */
  has(source: string, eventId: string): boolean {
    for (const g of this.generations.values()) if (g.has(source, eventId)) return true
    return false
  }

  /** Removes the key (an accepted event that turned out a reject); true when it was held. */
  delete(source: string, eventId: string): boolean {
    for (const [n, g] of this.generations) {
      if (!g.delete(source, eventId)) continue
      // Left empty (a future-dated event accepted, then refused by its model): dropped now, as no evict would drop it
      // before its time, and every add probes every generation held. No key goes with it.
      if (g.size === 0) {
        this.generations.delete(n)
        this.order = this.order.filter((x) => x !== n)
        if (n === this.lastNumber) this.lastNumber = Number.NaN
      }
      return true
    }
    return false
  }

  /** Drops every generation whose keys are all past the horizon at `nowMs`; returns how many keys went. */
  evict(nowMs: number): number {
    const edge = nowMs - this.horizonMs
    let gone = 0
    while (this.order.length > 0 && (this.order[0]! + 1) * this.width <= edge) {
      const n = this.order.shift()!
      gone += this.generations.get(n)!.size
      this.generations.delete(n)
      this.dropped = true
    }
    if (gone > 0 || !this.generations.has(this.lastNumber)) this.lastNumber = Number.NaN
    return gone
  }

  /** The generation holding keys held until `time` (made when missing, kept in order). */
  private generation(time: number): DedupeIndex {
    const n = Math.floor(time / this.width)
    if (n === this.lastNumber) return this.lastGeneration!
    let g = this.generations.get(n)
    if (g === undefined) {
      g = new DedupeIndex(this.maxPrefixes)
      this.generations.set(n, g)
      this.order.push(n)
      if (this.order.length > 1 && this.order[this.order.length - 2]! > n) this.order.sort((a, b) => a - b)
    }
    this.lastNumber = n
    this.lastGeneration = g
    return g
  }
}
