import type { Catalog, Meter, Plan, Schedule, UsageCharge } from '../catalog/types.js'
import { detached } from '../common/strings.js'
import { STORE_INTEGER_DIGITS } from './decimal.js'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { chargeRef, type StagedCharge } from './stage.js'
import {
  foldUsageEvent,
  runningTotalOf,
  type FoldedUsage,
  type MeterState,
  type RatingContext,
  type RunningTotal,
  type UsageEventInput,
} from './usage-rater.js'

/** A usage charge as the partition owner prices it: the charge, its meter, its catalog's schedules and its plan's period. */
export interface ResolvedCharge {
  readonly charge: UsageCharge
  readonly meter: Meter
  readonly schedules: Schedule[]
  /** The billing period of the plan the charge is of, in its catalog version: the length of its totals' periods. */
  readonly billingPeriod: Plan['billing_period']
  /** Epoch ms at which the next catalog version takes over (exclusive end of this version's prices); Infinity for the latest. */
  readonly versionEndMs: number
}

/** Every usage charge of these catalog versions by its chargeRef (`version\0plan\0charge`); charges whose meter is missing are left out. */
export function chargeTable(catalogs: readonly Catalog[]): Map<string, ResolvedCharge> {
  const table = new Map<string, ResolvedCharge>()
  const froms = catalogs.map((c) => Date.parse(c.effective_from))
  for (const [i, cat] of catalogs.entries()) {
    // The earliest effective_from after this version's: versions are append-only, but the list need not be sorted.
    let versionEndMs = Infinity
    for (const from of froms) if (from > froms[i]! && from < versionEndMs) versionEndMs = from
    for (const plan of cat.plans) {
      for (const charge of plan.charges) {
        if (charge.kind !== 'usage') continue
        const meter = cat.meters.find((m) => m.id === charge.meter)
        if (meter) table.set(chargeRef(cat.version, plan.id, charge.id), { charge, meter, schedules: cat.schedules ?? [], billingPeriod: plan.billing_period, versionEndMs })
      }
    }
  }
  return table
}

/** One running total's slot: the Map is probed once per charge, and the slot is written in place. */
interface Cell {
  t: RunningTotal | undefined
}

/**
 * The running period totals of one partition owner, by totals key (stage.ts totalsKey), and the fold of a
 * staged event into them (invariant 4: each amount is the increment of its total). In memory only: the owner
 * rebuilds them from stored rated rows when it starts (fold), so they may run ahead of what is committed.
 */
export class RunningTotals {
  private readonly cells = new Map<string, Cell>()

  /**
   * `charges` resolves a StagedCharge's chargeRef; it is read per event, so a new table can be swapped in.
   * `subscriptionEndMs`, when given, is a subscription's exclusive end in epoch ms (Infinity when open): a
   * time_weighted_avg reading holds no longer than it (holdEndOf). Without it, readings hold to the period end.
   * `onMissingCharge`, when given, is called once for a chargeRef the table does not hold, before that is an error:
   * the owner may reload its guiding data then and swap the new table in (setCharges). Why: staging runs in other
   * threads, which load guiding data when a batch tells them to and read the files as they are at that moment, so
   * a catalog version applied a moment after the owner's own reload can reach a staged event before the owner.
   */
  constructor(
    private charges: ReadonlyMap<string, ResolvedCharge>,
    private readonly onMissingCharge?: (chargeRef: string) => void,
    private readonly subscriptionEndMs?: (subscriptionId: string) => number,
  ) {}

  /** Uses another charge table from now on (guiding data reloaded); totals are kept. */
  setCharges(charges: ReadonlyMap<string, ResolvedCharge>): void {
    this.charges = charges
  }

  /** Running totals held. */
  get size(): number {
    return this.cells.size
  }

  /** The total under `key`, or undefined before its first event. */
  get(key: string): RunningTotal | undefined {
    return this.cells.get(key)?.t
  }

  /** Every total held, by key: what a checkpoint of the owner's state records (see `restore`). */
  *entries(): IterableIterator<[string, RunningTotal]> {
    for (const [key, cell] of this.cells) if (cell.t !== undefined) yield [key, cell.t]
  }

  /**
   * Puts back the total under `key` as a checkpoint recorded it (its MeterState, `meterStateOf`). Folding the
   * events after the checkpoint into it gives what folding every event would (usage-rater.test, "through a JSON
   * round trip of the state midway").
   */
  restore(key: string, state: MeterState): void {
    this.cell(key).t = runningTotalOf(state)
  }

  /**
   * Folds one staged event of `source` into the totals of all its charges and returns its rated_usage lines. If a charge
   * cannot price it (e.g. a time_rated moment no schedule covers), every total it moved is put back and the
   * error is returned: the event becomes a reject and no total moved for it.
   */
  foldEvent(charges: readonly StagedCharge[], source: string): string | Error {
    this.ev.source = source
    if (charges.length === 1) {
      // Most events feed one charge: no undo list to allocate.
      try {
        return this.foldCharge(charges[0]!, this.cell(charges[0]!.totalsKey))
      } catch (err) {
        return err as Error
      }
    }
    const saved: Array<[Cell, RunningTotal | undefined]> = []
    let lines = ''
    try {
      for (const c of charges) {
        const cell = this.cell(c.totalsKey)
        saved.push([cell, cell.t])
        lines += this.foldCharge(c, cell)
      }
      return lines
    } catch (err) {
      for (const [cell, t] of saved.reverse()) cell.t = t
      return err as Error
    }
  }

  /**
   * Folds an event of `resolved` into the total under `key` (a rebuild from stored rows); throws when it cannot be
   * priced. A time_weighted_avg reading holds as foldEvent holds it (holdEndOf), whatever `ctx.holdEndMs` says, and
   * the row is priced as stored (RatingContext.stored: no limit for new events refuses it).
   */
  fold(key: string, resolved: ResolvedCharge, ev: UsageEventInput, ctx: RatingContext): FoldedUsage {
    const cell = this.cell(key)
    const r = foldUsageEvent(resolved.charge, resolved.meter, cell.t, ev, { ...ctx, holdEndMs: this.holdEndOf(key, resolved), stored: true })
    cell.t = r.next
    return r
  }

  private cell(key: string): Cell {
    let cell = this.cells.get(key)
    if (cell === undefined) {
      cell = { t: undefined }
      // Kept for good: a key sliced out of a batch's wire text would keep all of that text alive.
      this.cells.set(detached(key), cell)
    }
    return cell
  }

  /**
   * Until when a time_weighted_avg reading of this total holds (RatingContext.holdEndMs): the next catalog version
   * or the end of the subscription the total belongs to (its key's first part), whichever is first. The subscription is
   * looked up for readings of such meters only, from the guiding data in force, as staging guided the event by.
   */
  private holdEndOf(totalsKey: string, resolved: ResolvedCharge): number {
    if (resolved.meter.aggregation !== 'time_weighted_avg' || this.subscriptionEndMs === undefined) return resolved.versionEndMs
    return Math.min(resolved.versionEndMs, this.subscriptionEndMs(totalsKey.slice(0, totalsKey.indexOf('\u0000'))))
  }

  /** The charge under `chargeRef` after onMissingCharge has had its chance to reload; throws when still missing. */
  private missing(chargeRef: string): ResolvedCharge {
    this.onMissingCharge?.(chargeRef)
    const resolved = this.charges.get(chargeRef)
    if (!resolved) throw new Error(`charge ${chargeRef.replaceAll('\u0000', '/')} missing from the rater's catalog snapshot`)
    return resolved
  }

  // The event and context handed to the fold, reused: foldUsageEvent keeps neither object (only the strings in
  // them), and one event and context object per charge were half of what a fold allocated.
  private readonly ev: UsageEventInput = { event_id: '', source: '', event_time: '', ms: 0, quantity: '', dimensions: {} }
  private readonly ctx: RatingContext = { schedules: [], timezone: '', periodStart: '', periodEnd: '', holdEndMs: Infinity }

  /** Folds one charge of an event into its cell; returns its rated_usage line. */
  private foldCharge(c: StagedCharge, cell: Cell): string {
    const resolved = this.charges.get(c.chargeRef) ?? this.missing(c.chargeRef)
    const { ev, ctx } = this
    ev.event_id = c.eventId
    ev.event_time = c.eventIso
    ev.ms = c.eventMs
    ev.quantity = c.quantity
    ev.dimensions = c.dimensions
    ctx.schedules = resolved.schedules
    ctx.timezone = c.timezone
    ctx.periodStart = c.periodStartIso
    ctx.periodEnd = c.periodEndIso
    ctx.holdEndMs = this.holdEndOf(c.totalsKey, resolved)
    const r = foldUsageEvent(resolved.charge, resolved.meter, cell.t, ev, ctx)
    // Checked before the total moves: a value the store cannot hold would fail the flush's insert, and the batch,
    // delivered again after every restart, would stop the rater for good (a poison message). It is the event's reject.
    if (!fitsStore(r.amount) || !fitsStore(r.metered)) {
      throw new RateflowError(
        ErrorCode.BadInput,
        `charge ${c.chargeRef.split('\u0000')[2]}: ${!fitsStore(r.amount) ? `amount ${r.amount}` : `metered quantity ${r.metered}`} has more than ${STORE_INTEGER_DIGITS} integer digits, more than rated_usage's Decimal(38, 9) holds`,
      )
    }
    // The period's total too: each amount fitting, their sum in the store (what an invoice reads) wrapped around to a
    // negative number, without an error, once it passed 29 integer digits.
    if (r.next.total >= STORE_NANO_LIMIT || r.next.total <= -STORE_NANO_LIMIT) {
      throw new RateflowError(
        ErrorCode.BadInput,
        `charge ${c.chargeRef.split('\u0000')[2]}: the period's total would pass ${STORE_INTEGER_DIGITS} integer digits, more than rated_usage's Decimal(38, 9) sums hold`,
      )
    }
    cell.t = r.next
    return c.prefix + r.metered + '\t' + r.amount + c.suffix
  }
}

export { STORE_INTEGER_DIGITS }

/** 10^38 nano-units: a total in nano-units fits Decimal(38, 9) when its magnitude is below it. */
const STORE_NANO_LIMIT = 10n ** BigInt(STORE_INTEGER_DIGITS + 9)

/** True when canonical decimal text (no leading zeros, at most 9 fraction digits) fits the store's Decimal(38, 9). */
function fitsStore(s: string): boolean {
  const dot = s.indexOf('.')
  return (dot < 0 ? s.length : dot) - (s.charCodeAt(0) === 45 ? 1 : 0) <= STORE_INTEGER_DIGITS
}
