import type { FoldInput } from '../rating-core/running-totals.js'
import { NO_DIMENSIONS, type StagedBatch, type StagedCharge, type StagedRecord } from '../rating-core/stage.js'

/**
 * A StagedBatch as it crosses from a pool worker to the rater: the rows it may write as bytes, every other string of
 * the batch in one string, and the lengths, counts and row offsets in one Int32Array. The pool worker hands over
 * `ints` and `rows` by transfer, not copies (rating-worker.ts).
 *
 * Why: structured clone of the object form cost ~9 µs per event here (each record an object of objects, built
 * property by property on the receiving side), about as much as staging itself. One flat string and two arrays cost
 * a memcpy at most; the rater rebuilds the records with fixed-shape literals and sliced strings.
 *
 * Why rows as bytes: the rater used to build each rated row as text around the amount it folded, flatten each
 * batch's rows, and encode them to UTF-8 for the insert (~1.5 µs per event on its thread, measured in a profile of
 * `bench e2e`). Now staging lays the rows out as the insert reads them, with a slot of zeros where each rated row's
 * quantity and amount go; the rater writes the two numbers into their slots (ClickHouse reads leading zeros in a
 * decimal) and hands the store runs of these bytes, not copies.
 */
export interface StagedWire {
  readonly text: string
  readonly ints: Int32Array
  /** usage_events lines of every record, in order, then the rated_usage row of every charge, in order (UTF-8). */
  readonly rows: Uint8Array
}

/** Characters of a rated row's quantity slot and amount slot. A value longer than its slot makes the row be rebuilt. */
export const METERED_SLOT = 12
export const AMOUNT_SLOT = 16
/** What staging writes between a rated row's prefix and suffix: both slots zeroed, the tab between them. */
const SLOTS = '0'.repeat(METERED_SLOT) + '\t' + '0'.repeat(AMOUNT_SLOT)

/** A staged batch as the rater applies it (decodeStaged). */
export interface AppliedBatch {
  readonly batchId: string
  readonly read: number
  readonly rejectLines: string[]
  readonly records: AppliedRecord[]
  /** As StagedWire.rows: a record's usage line is rows[previous record's usageEnd, its usageEnd). */
  readonly rows: Uint8Array
  /** Where the rated rows start in `rows` (the end of the usage lines). */
  readonly ratedFrom: number
}

export interface AppliedRecord extends Omit<StagedRecord, 'usageLine' | 'charges'> {
  /** Byte offset in `rows` where this record's usage line ends (it starts where the record before it ends). */
  readonly usageEnd: number
  readonly charges: AppliedCharge[]
}

export interface AppliedCharge extends FoldInput {
  /** Byte offset in `rows` where this charge's rated row ends (it starts where the charge before it ends, or at ratedFrom). */
  readonly rowEnd: number
  /** Byte offset in `rows` of its quantity slot (METERED_SLOT bytes, a tab, then AMOUNT_SLOT bytes of the amount slot). */
  readonly slot: number
}

// Strings of their own, in the text: per record eventId, suspendLine (when it has one), raw, origin (when it has
// one), and when it has charges their eventIso and quantity (a record's charges share them, and its event id and
// time); per charge its dimensions (when its meter reads them). The rest repeat across a batch and go once, in its
// table of shared strings, grouped per charge context: totalsKey, chargeRef, timezone, periodStartIso,
// periodEndIso (one context per running total and batch, in practice). The ints: per record charges, hasSuspend,
// hasOrigin, source (shared), eventMs in two halves, and usageEnd; per charge its context (as -1 - context when it
// carries dimensions), rowEnd and slot; per context its five shared strings.
const INTS_PER_RECORD = 7
const INTS_PER_CHARGE = 3
const INTS_PER_CONTEXT = 5
const TWO_32 = 4_294_967_296
const HEADER = 7 // read, records, reject lines, shared strings, contexts, ints of the records and charges, ratedFrom

/** The strings a charge shares with every charge of its running total in a batch. */
interface Context {
  readonly totalsKey: string
  readonly chargeRef: string
  readonly timezone: string
  readonly periodStartIso: string
  readonly periodEndIso: string
}

/**
 * Encodes a staged batch for the trip to the rater. decodeStaged gives back every field of `b`, with its usage lines
 * and rated rows as bytes (a rated row with its quantity and amount slots zeroed in place of those two values).
 * Throws when a record's charges do not share its event id, time and quantity (stageBatch gives each charge the
 * record's).
 *
 * Strings that repeat across the batch's events (totals keys, charge refs, time zones, periods, sources) are sent
 * once and referred to by index: fewer bytes to join and copy, and on the rater's thread one string per distinct
 * value instead of a slice per event, whose hash is then computed once per batch by the lookups that use it. A
 * charge refers to its five through one context, found by its totals key (one hash probe per charge, not five).
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
  const contexts = new Map<string, Array<Context & { index: number }>>()
  const contextInts: number[] = []
  const contextOf = (c: StagedCharge): number => {
    const list = contexts.get(c.totalsKey)
    if (list !== undefined) {
      for (const x of list) {
        if (x.chargeRef === c.chargeRef && x.timezone === c.timezone && x.periodStartIso === c.periodStartIso && x.periodEndIso === c.periodEndIso) return x.index
      }
    }
    const x = {
      totalsKey: c.totalsKey,
      chargeRef: c.chargeRef,
      timezone: c.timezone,
      periodStartIso: c.periodStartIso,
      periodEndIso: c.periodEndIso,
      index: contextInts.length / INTS_PER_CONTEXT,
    }
    contextInts.push(ref(c.totalsKey), ref(c.chargeRef), ref(c.timezone), ref(c.periodStartIso), ref(c.periodEndIso))
    if (list === undefined) contexts.set(c.totalsKey, [x])
    else list.push(x)
    return x.index
  }
  const receivedAt = b.records[0]?.receivedAt ?? ''
  let charges = 0
  for (const r of b.records) charges += r.charges.length
  const structure = new Int32Array(b.records.length * INTS_PER_RECORD + charges * INTS_PER_CHARGE)
  const own: string[] = []
  // The rows, as text first: usage lines, then rated rows. Offsets count characters here; they are bytes when the
  // text is ASCII, and are counted again in bytes when it is not (rowOffsetsInBytes).
  const usage: string[] = new Array(b.records.length)
  const rated: string[] = []
  let usageAt = 0
  for (let i = 0; i < b.records.length; i++) {
    usage[i] = b.records[i]!.usageLine
    usageAt += usage[i]!.length
  }
  let ratedAt = usageAt
  let s = 0
  for (const r of b.records) {
    // stageBatch stamps one received_at per batch; the wire carries it once.
    if (r.receivedAt !== receivedAt) throw new Error(`staged batch ${b.batchId}: records received at different times`)
    structure[s++] = r.charges.length
    structure[s++] = r.suspendLine === undefined ? 0 : 1
    structure[s++] = r.origin === undefined ? 0 : 1
    structure[s++] = ref(r.source)
    // An integer of ms (|ms| < 2^53) as its high and low 32 bits; the low half is read back unsigned.
    const hi = Math.floor(r.eventMs / TWO_32)
    structure[s++] = hi
    structure[s++] = r.eventMs - hi * TWO_32
    s++ // usageEnd: set below, once the offsets are known in bytes
    own.push(r.eventId)
    if (r.suspendLine !== undefined) own.push(r.suspendLine)
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
      rated.push(c.prefix, SLOTS, c.suffix)
      ratedAt += c.prefix.length + SLOTS.length + c.suffix.length
      structure[s++] = ratedAt
      structure[s++] = ratedAt - c.suffix.length - SLOTS.length
    }
  }
  const usageText = usage.join('')
  const ratedText = rated.join('')
  const usageBytes = Buffer.byteLength(usageText)
  const ascii = usageBytes === usageText.length && Buffer.byteLength(ratedText) === ratedText.length
  // An ArrayBuffer of its own (not a slice of Node's shared pool), so that it can be transferred.
  const rows = Buffer.allocUnsafeSlow(usageBytes + Buffer.byteLength(ratedText))
  // ASCII is its own UTF-8: copied as one byte per character.
  rows.write(usageText, 0, ascii ? 'latin1' : 'utf8')
  rows.write(ratedText, usageBytes, ascii ? 'latin1' : 'utf8')
  if (!ascii) rowOffsetsInBytes(b, structure, usage, rated)
  // usageEnd of each record, in bytes.
  let u = 0
  s = 0
  for (let i = 0; i < b.records.length; i++) {
    u += ascii ? usage[i]!.length : Buffer.byteLength(usage[i]!)
    structure[s + 6] = u
    s += INTS_PER_RECORD + b.records[i]!.charges.length * INTS_PER_CHARGE
  }
  const parts = [b.batchId, b.rejectLines.join(''), receivedAt].concat(shared, own)
  const ints = new Int32Array(HEADER + structure.length + contextInts.length + parts.length)
  ints[0] = b.read
  ints[1] = b.records.length
  ints[2] = b.rejectLines.length
  ints[3] = shared.length
  ints[4] = contextInts.length / INTS_PER_CONTEXT
  ints[5] = structure.length
  ints[6] = u
  ints.set(structure, HEADER)
  ints.set(contextInts, HEADER + structure.length)
  const lengths = HEADER + structure.length + contextInts.length
  for (let i = 0; i < parts.length; i++) ints[lengths + i] = parts[i]!.length
  return { text: parts.join(''), ints, rows }
}

/** Rewrites each charge's rowEnd and slot in bytes (the rows' text is not ASCII). */
function rowOffsetsInBytes(b: StagedBatch, structure: Int32Array, usage: readonly string[], rated: readonly string[]): void {
  let at = 0
  for (const line of usage) at += Buffer.byteLength(line)
  let s = 0
  let part = 0
  for (const r of b.records) {
    s += INTS_PER_RECORD
    for (let c = 0; c < r.charges.length; c++) {
      at += Buffer.byteLength(rated[part]!)
      structure[s + 2] = at
      at += SLOTS.length + Buffer.byteLength(rated[part + 2]!)
      structure[s + 1] = at
      part += 3
      s += INTS_PER_CHARGE
    }
  }
}

/**
 * Rebuilds the staged batch. Strings are slices of `text` (a shared one is sliced once and referred to by every
 * event that uses it); objects are built with one shape each.
 */
export function decodeStaged(w: StagedWire): AppliedBatch {
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
  const contexts: Context[] = new Array(nContexts)
  for (let k = 0, c = contextAt; k < nContexts; k++) {
    contexts[k] = {
      totalsKey: shared[ints[c++]!]!,
      chargeRef: shared[ints[c++]!]!,
      timezone: shared[ints[c++]!]!,
      periodStartIso: shared[ints[c++]!]!,
      periodEndIso: shared[ints[c++]!]!,
    }
  }
  const records: AppliedRecord[] = new Array(n)
  let s = HEADER
  for (let i = 0; i < n; i++) {
    const nCharges = ints[s++]!
    const hasSuspend = ints[s++] === 1
    const hasOrigin = ints[s++] === 1
    const source = shared[ints[s++]!]!
    const hi = ints[s++]!
    const eventMs = hi * TWO_32 + (ints[s++]! >>> 0)
    const usageEnd = ints[s++]!
    const eventId = next()
    const suspendLine = hasSuspend ? next() : undefined
    const raw = next()
    const origin = hasOrigin ? next() : undefined
    const charges: AppliedCharge[] = new Array(nCharges)
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
          rowEnd: ints[s++]!,
          slot: ints[s++]!,
        }
      }
    }
    records[i] = { eventId, eventMs, usageEnd, suspendLine, charges, source, raw, origin, receivedAt }
  }
  // Reject lines are TSV (newlines inside values escaped), so each one ends at its own \n.
  const rejectLines = nRejects === 0 ? [] : rejectText.split('\n', nRejects).map((l) => l + '\n')
  return { batchId, read, rejectLines, records, rows: w.rows, ratedFrom: ints[6]! }
}

/**
 * Writes `value` (a decimal's text) right-aligned into the slot of `width` bytes at `at`, whose bytes are ASCII
 * zeros: `-12.5` in 8 bytes is `-00012.5`. False, and nothing written, when it does not fit.
 */
export function writeSlot(rows: Uint8Array, at: number, width: number, value: string): boolean {
  const n = value.length
  if (n > width) return false
  let from = 0
  if (n > 0 && value.charCodeAt(0) === 45 /* - */) {
    rows[at] = 45
    from = 1
  }
  const end = at + width
  for (let i = n - 1, p = end - 1; i >= from; i--, p--) rows[p] = value.charCodeAt(i)
  return true
}
