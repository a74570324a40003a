import { NO_DIMENSIONS, type StagedBatch, type StagedCharge, type StagedRecord } from '../rating-core/stage.js'

/**
 * A StagedBatch as it crosses from a pool worker to the rater: every string of the batch in one string, and
 * the lengths and counts in one Int32Array (transferred, not copied).
 *
 * Why: structured clone of the object form cost ~9 µs per event here (each record an object of objects, built
 * property by property on the receiving side), about as much as staging itself. One flat string and an
 * integer array cost a memcpy each; the rater rebuilds the records with fixed-shape literals and sliced strings.
 */
export interface StagedWire {
  readonly text: string
  readonly ints: Int32Array
}

// Strings of their own, in the text: per record eventId, usageLine, suspendLine and suspendReason (when it has one), rejectReason
// (when it has one), raw, origin (when
// it has one), and when it has charges their eventIso and quantity (a record's charges share them, and its event id
// and time); per charge its dimensions (when its meter reads them) and prefix. The rest repeat across a batch and go
// once, in its table of shared strings, grouped per charge context: totalsKey, chargeRef, timezone, periodStartIso,
// periodEndIso, suffix (one context per running total and batch, in practice). The ints: per record charges,
// held (HELD | REFUSED bits), hasOrigin, source (shared), and eventMs in two halves; per charge its context (as -1 - context when it
// carries dimensions); per context its six shared strings.
const INTS_PER_RECORD = 6
const INTS_PER_CONTEXT = 6
const TWO_32 = 4_294_967_296
const HEADER = 6 // read, records, reject lines, shared strings, contexts, ints of the records and charges
/** A record's flags: it has a suspendLine (and suspendReason); it has a rejectReason. */
const HELD = 1
const REFUSED = 2

/** The strings a charge shares with every charge of its running total in a batch. */
interface Context {
  readonly totalsKey: string
  readonly chargeRef: string
  readonly timezone: string
  readonly periodStartIso: string
  readonly periodEndIso: string
  readonly suffix: string
  /** Its index in the batch's context table. */
  readonly index: number
}

/**
 * Encodes a staged batch for the trip to the rater; `decodeStaged(encodeStaged(b))` deep-equals `b`. Throws when a
 * record's charges do not share its event id, time and quantity (stageBatch gives each charge the record's).
 *
 * Strings that repeat across the batch's events (totals keys, charge refs, time zones, periods, row suffixes,
 * sources) are sent once and referred to by index: fewer bytes to join and copy, and on the rater's thread one
 * string per distinct value instead of a slice per event, whose hash is then computed once per batch by the
 * lookups that use it. A charge refers to its six through one context, found by its totals key (one hash probe
 * per charge instead of six).
 */
export function encodeStaged(b: StagedBatch): StagedWire {
  const shared: string[] = []
  const index = new Map<string, number>()
  const ref = (v: string): number => {
    let i = index.get(v)
    if (i === undefined) {
      i = shared.length
      shared.push(v)
      index.set(v, i)
    }
    return i
  }
  // Contexts by totals key; a key with more than one (not seen from stageBatch, but the wire does not rely on it)
  // keeps each of them.
  const contexts = new Map<string, Context[]>()
  const contextInts: number[] = []
  const contextOf = (c: StagedCharge): number => {
    const list = contexts.get(c.totalsKey)
    if (list !== undefined) {
      for (const x of list) {
        if (x.chargeRef === c.chargeRef && x.timezone === c.timezone && x.periodStartIso === c.periodStartIso && x.periodEndIso === c.periodEndIso && x.suffix === c.suffix) {
          return x.index
        }
      }
    }
    const x: Context = {
      totalsKey: c.totalsKey,
      chargeRef: c.chargeRef,
      timezone: c.timezone,
      periodStartIso: c.periodStartIso,
      periodEndIso: c.periodEndIso,
      suffix: c.suffix,
      index: contextInts.length / INTS_PER_CONTEXT,
    }
    contextInts.push(ref(c.totalsKey), ref(c.chargeRef), ref(c.timezone), ref(c.periodStartIso), ref(c.periodEndIso), ref(c.suffix))
    if (list === undefined) contexts.set(c.totalsKey, [x])
    else list.push(x)
    return x.index
  }
  const receivedAt = b.records[0]?.receivedAt ?? ''
  let charges = 0
  for (const r of b.records) charges += r.charges.length
  const structure = new Int32Array(b.records.length * INTS_PER_RECORD + charges)
  const own: string[] = []
  let s = 0
  for (const r of b.records) {
    // stageBatch stamps one received_at per batch; the wire carries it once.
    if (r.receivedAt !== receivedAt) throw new Error(`staged batch ${b.batchId}: records received at different times`)
    structure[s++] = r.charges.length
    structure[s++] = (r.suspendLine === undefined ? 0 : HELD) | (r.rejectReason === undefined ? 0 : REFUSED)
    structure[s++] = r.origin === undefined ? 0 : 1
    structure[s++] = ref(r.source)
    // An integer of ms (|ms| < 2^53) as its high and low 32 bits; the low half is read back unsigned.
    const hi = Math.floor(r.eventMs / TWO_32)
    structure[s++] = hi
    structure[s++] = r.eventMs - hi * TWO_32
    own.push(r.eventId, r.usageLine)
    if (r.suspendLine !== undefined) own.push(r.suspendLine, r.suspendReason ?? '')
    if (r.rejectReason !== undefined) own.push(r.rejectReason)
    own.push(r.raw)
    if (r.origin !== undefined) own.push(r.origin)
    const first = r.charges[0]
    if (first === undefined) continue
    own.push(first.eventIso, first.quantity)
    for (const c of r.charges) {
      if (c.eventMs !== r.eventMs || c.eventId !== r.eventId || c.eventIso !== first.eventIso || c.quantity !== first.quantity) {
        throw new Error(`staged batch ${b.batchId}: a charge of event ${r.eventId} has another event id, time or quantity than the event`)
      }
      const k = contextOf(c)
      if (c.dimensions === NO_DIMENSIONS) structure[s++] = k
      else {
        structure[s++] = -1 - k
        own.push(JSON.stringify(c.dimensions))
      }
      own.push(c.prefix)
    }
  }
  const parts = [b.batchId, b.rejectLines.join(''), receivedAt].concat(shared, own)
  const ints = new Int32Array(HEADER + structure.length + contextInts.length + parts.length)
  ints[0] = b.read
  ints[1] = b.records.length
  ints[2] = b.rejectLines.length
  ints[3] = shared.length
  ints[4] = contextInts.length / INTS_PER_CONTEXT
  ints[5] = structure.length
  ints.set(structure, HEADER)
  ints.set(contextInts, HEADER + structure.length)
  const lengths = HEADER + structure.length + contextInts.length
  for (let i = 0; i < parts.length; i++) ints[lengths + i] = parts[i]!.length
  return { text: parts.join(''), ints }
}

/**
 * Rebuilds the staged batch. Strings are slices of `text` (a shared one is sliced once and referred to by every
 * event that uses it); objects are built with one shape each.
 */
export function decodeStaged(w: StagedWire): StagedBatch {
  const { text, ints } = w
  const read = ints[0]!
  const n = ints[1]!
  const nRejects = ints[2]!
  const nShared = ints[3]!
  const nContexts = ints[4]!
  const contextAt = HEADER + ints[5]!
  // The string lengths follow the records', charges' and contexts' ints.
  let len = contextAt + nContexts * INTS_PER_CONTEXT
  let pos = 0
  const next = (): string => {
    const l = ints[len++]!
    const out = text.slice(pos, pos + l)
    pos += l
    return out
  }
  const batchId = next()
  const rejectText = next()
  const receivedAt = next()
  const shared: string[] = new Array(nShared)
  for (let i = 0; i < nShared; i++) shared[i] = next()
  const contexts: Array<Omit<Context, 'index'>> = new Array(nContexts)
  for (let k = 0, c = contextAt; k < nContexts; k++) {
    contexts[k] = {
      totalsKey: shared[ints[c++]!]!,
      chargeRef: shared[ints[c++]!]!,
      timezone: shared[ints[c++]!]!,
      periodStartIso: shared[ints[c++]!]!,
      periodEndIso: shared[ints[c++]!]!,
      suffix: shared[ints[c++]!]!,
    }
  }
  const records: StagedRecord[] = new Array(n)
  let s = HEADER
  for (let i = 0; i < n; i++) {
    const nCharges = ints[s++]!
    const flags = ints[s++]!
    const hasSuspend = (flags & HELD) !== 0
    const hasOrigin = ints[s++] === 1
    const source = shared[ints[s++]!]!
    const hi = ints[s++]!
    const eventMs = hi * TWO_32 + (ints[s++]! >>> 0)
    const eventId = next()
    const usageLine = next()
    const suspendLine = hasSuspend ? next() : undefined
    const suspendReason = hasSuspend ? next() : undefined
    const rejectReason = (flags & REFUSED) !== 0 ? next() : undefined
    const raw = next()
    const origin = hasOrigin ? next() : undefined
    const charges: StagedCharge[] = new Array(nCharges)
    if (nCharges > 0) {
      const eventIso = next()
      const quantity = next()
      for (let c = 0; c < nCharges; c++) {
        const k = ints[s++]!
        const x = contexts[k < 0 ? -1 - k : k]!
        const dimensions = k < 0 ? (JSON.parse(next()) as Record<string, string>) : NO_DIMENSIONS
        charges[c] = {
          totalsKey: x.totalsKey,
          chargeRef: x.chargeRef,
          quantity,
          dimensions,
          eventIso,
          eventMs,
          eventId,
          timezone: x.timezone,
          periodStartIso: x.periodStartIso,
          periodEndIso: x.periodEndIso,
          prefix: next(),
          suffix: x.suffix,
        }
      }
    }
    records[i] = { eventId, eventMs, usageLine, suspendLine, suspendReason, rejectReason, charges, source, raw, origin, receivedAt }
  }
  // Reject lines are TSV (newlines inside values escaped), so each one ends at its own \n.
  const rejectLines = nRejects === 0 ? [] : rejectText.split('\n', nRejects).map((l) => l + '\n')
  return { batchId, read, rejectLines, records }
}
