/**
 * `rateflow bench rating`: events/s per thread through validate → dedupe → guide → rate, for per_unit, graduated
 * and time_rated charges, against a straightforward reference implementation measured in the same run, plus the
 * bytes of memory one remembered dedupe key costs.
 *
 * Rateflow's path is the production code composed in one thread: `stageBatch` (what a pool worker runs: validate,
 * guide through the GuidingIndex, match the plan's usage charges, TSV text) and then what the rater's `apply` does
 * (dedupe in a DedupeIndex, fold each charge's running total with RunningTotals, build the rated_usage line: the
 * same classes the rater runs). The reference does the same work the obvious way, in this file: regular expressions and
 * Date.parse to validate, a Set to dedupe, a Map from device to its bindings scanned linearly, Intl for the local
 * month, big.js arithmetic that recomputes the model on the running total per event, and a block-by-block walk
 * for time_rated sessions. It builds no TSV text, which favours it. Both must produce the same amount for every
 * event, or the benchmark fails.
 *
 * Timing: each batch is decoded from msgpack just before it is fed (as a pool worker receives it), and only the
 * feeding is timed, in CPU time of the process, so a shared machine's waits for a core do not count; wall-clock
 * rates of the same rounds are reported beside them.
 */
import { execFileSync } from 'node:child_process'
import BigImport from 'big.js'
import { validateAccounts } from '../catalog/accounts.js'
import { GuidingIndex } from '../catalog/guiding.js'
import type { Account, AccountsDocument, Catalog, Meter, Schedule, Subscription, TimeRatedCharge, UsageCharge } from '../catalog/types.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import { decodeBatch, encodeBatch } from '../pipeline/queue.js'
import type { UsageBatch, WireRecord } from '../rating-core/record.js'
import { chargeTable, RunningTotals, type ResolvedCharge } from '../rating-core/running-totals.js'
import { detached } from '../common/strings.js'
import { DedupeIndex } from '../rating-core/dedupe-index.js'
import { stageBatch } from '../rating-core/stage.js'
import { perSecond, ratio, saveResult } from './results.js'
import { CSV_HEADER, deviceId, prng, sampleAccounts, sampleCsvLines, type SampleSize } from './sample-data.js'

// big.js ships CommonJS types with `export =`; under NodeNext the default import is the constructor.
// An independent constructor, so the settings below do not leak into other users of big.js.
const Big = BigImport()
type Big = InstanceType<typeof BigImport>
// Plain notation for every amount (no "1e-9"), so its string compares with Rateflow's canonical form.
Big.NE = -60
Big.PE = 80

/** The three models with a throughput goal, in events/s per thread. */
export const RATING_GOALS = Object.freeze({ per_unit: 1_000_000, graduated: 1_000_000, time_rated: 300_000 })
/** A usage model the benchmark measures. */
export type BenchModel = keyof typeof RATING_GOALS

/**
 * One model's figures. Rates are events per second of CPU time the process used (user + system, every thread,
 * so the collector's helper threads count too): on a shared machine a thread that waits for a core does not slow
 * the figure down. The wall-clock rates of the same rounds are kept beside them. Best of the timed rounds; medians too.
 */
export interface ModelFigures {
  model: BenchModel
  events: number
  rounds: number
  rateflow_events_per_s: number
  reference_events_per_s: number
  /** rateflow / reference, best against best. */
  ratio: number
  goal_events_per_s: number
  /** rateflow_events_per_s >= goal_events_per_s. */
  met: boolean
  rateflow_median_events_per_s: number
  reference_median_events_per_s: number
  rateflow_wall_events_per_s: number
  reference_wall_events_per_s: number
  /** The floor (FloorRun): the least per-event work, on the same batches, best of the same rounds. */
  floor_events_per_s: number
  /** rateflow / floor, best against best: the share of the bare minimum's speed Rateflow reaches. */
  ratio_to_floor: number
  /** floor_events_per_s >= goal_events_per_s: false when the goal lies above even the bare minimum's speed in this run. */
  goal_within_floor: boolean
  counts: Counts
}

/** Bytes (heap and ArrayBuffers) one remembered dedupe key costs, as the rater keeps them (DedupeIndex), and in one Set of joined keys. */
export interface KeyBytes {
  shape: string
  example: string
  keys: number
  bytes_per_key: number
  joined_set_bytes_per_key: number
}

/** What one run writes to bench/out/rating-<time>.json. */
export interface RatingResult {
  date: string
  node: string
  models: ModelFigures[]
  dedupe: KeyBytes[]
}

/** What became of a run's inputs; both implementations must agree on every count. */
export interface Counts {
  read: number
  rated: number
  duplicates: number
  rejected: number
  suspended: number
}

// ---- scenario --------------------------------------------------------------------------------

const SOURCE = 'csv:oct-export'
const BATCH = 1000
/** Every rated row carries the same receive time: the rater's clock is not what is measured. */
const RECEIVED_AT_MS = Date.parse('2026-11-01T00:00:00Z')

/** One model's inputs and the guiding snapshot they are rated against. */
export interface Scenario {
  model: BenchModel
  catalog: Catalog
  accounts: AccountsDocument
  guiding: GuidingIndex
  charges: Map<string, ResolvedCharge>
  /** The batches as JetStream carries them (msgpack); each round decodes them afresh, outside the timed part. */
  encoded: Uint8Array[]
  events: number
}

function usageCharges(model: BenchModel): UsageCharge[] {
  switch (model) {
    case 'per_unit':
      return [
        { id: 'egress', kind: 'usage', meter: 'egress_gb', model: 'per_unit', unit_price: '0.08' },
        { id: 'api', kind: 'usage', meter: 'api_calls', model: 'per_unit', unit_price: '0.0004', free_units: '1000' },
      ]
    case 'graduated':
      return [
        {
          id: 'egress',
          kind: 'usage',
          meter: 'egress_gb',
          model: 'graduated',
          tiers: [
            { up_to: '1', unit_price: '0.12', flat_fee: '2' },
            { up_to: '5', unit_price: '0.09' },
            { up_to: '20', unit_price: '0.065', flat_fee: '1.5' },
            { up_to: null, unit_price: '0.04' },
          ],
        },
        {
          id: 'api',
          kind: 'usage',
          meter: 'api_calls',
          model: 'graduated',
          tiers: [
            { up_to: '500', unit_price: '0' },
            { up_to: '5000', unit_price: '0.0007' },
            { up_to: null, unit_price: '0.00035' },
          ],
          maximum: '40',
        },
      ]
    case 'time_rated':
      return [
        {
          id: 'calls',
          kind: 'usage',
          meter: 'call_seconds',
          model: 'time_rated',
          rates: [
            {
              schedule: 'day',
              connect_fee: '0.05',
              steps: [
                { from: '0', unit_price: '0.02', per: '60', increment: '60' },
                { from: '60', unit_price: '0.02', per: '60', increment: '1' },
              ],
            },
            { schedule: 'evening', connect_fee: '0.03', steps: [{ from: '0', unit_price: '0.012', per: '60', increment: '1' }] },
            { schedule: 'weekend', steps: [{ from: '0', unit_price: '0.006', per: '60', increment: '60' }] },
          ],
          max_cost_per_event: '1.5',
          max_cost_strategy: 'free',
          rounding: { decimals: 4, mode: 'up' },
        },
      ]
  }
}

/** A monthly plan with the model's usage charges, on the sample meters (and a call meter for time_rated). */
export function ratingCatalog(model: BenchModel): Catalog {
  return validateCatalog({
    version: `bench-${model}`,
    effective_from: '2026-01-01T00:00:00Z',
    currency: 'USD',
    meters: [
      { id: 'egress_gb', metric: 'bytes_out', aggregation: 'sum', scale: '0.000000001', group_by: ['region'] },
      { id: 'api_calls', metric: 'api_calls', aggregation: 'sum' },
      { id: 'call_seconds', metric: 'session_seconds', aggregation: 'sum' },
    ],
    schedules: [
      { id: 'day', weekdays: [1, 2, 3, 4, 5], from: '00:00', to: '18:00' },
      { id: 'evening', weekdays: [1, 2, 3, 4, 5], from: '18:00', to: '24:00' },
      { id: 'weekend', weekdays: [6, 7], from: '00:00', to: '24:00' },
    ],
    plans: [
      {
        id: 'sase-pro',
        billing_period: 'month',
        charges: [{ id: 'platform', kind: 'recurring', amount: '300', billing: 'in_advance', proration: 'daily' }, ...usageCharges(model)],
      },
    ],
  })
}

/**
 * The inputs of one model: `events` records in batches of 1,000, as a worker decodes them from a JetStream
 * message. Realistic guiding: 1,000 accounts × 10 devices, half in Europe/Berlin, half in America/New_York.
 * Faults as a real feed has them: every 50th record re-sends an earlier one (a duplicate), every 1,000th has a
 * bad quantity (a reject), every 2,000th comes from a device not bound yet (suspended).
 */
export function ratingScenario(model: BenchModel, events: number): Scenario {
  const size: SampleSize = { customers: 1000, devicesPerAccount: 10 }
  const catalog = ratingCatalog(model)
  const accounts = validateAccounts(sampleAccounts(size))
  const guiding = new GuidingIndex([catalog], accounts)
  const charges = chargeTable([catalog])
  const records = model === 'time_rated' ? callRecords(events, size) : sampleRecords(events, size)
  const rnd = prng(11)
  for (let i = 0; i < records.length; i++) {
    if (i % 50 === 49) records[i] = { ...records[Math.floor(rnd() * i)]!, origin: `usage.csv:${i + 2}` }
    else if (i % 1000 === 500) records[i] = { ...records[i]!, quantity: '12kB' }
    else if (i % 2000 === 1234) records[i] = { ...records[i]!, device_id: 'fw-unbound-1' }
  }
  const encoded: Uint8Array[] = []
  for (let i = 0; i < records.length; i += BATCH) {
    encoded.push(encodeBatch({ id: `${SOURCE}:bench:${i / BATCH}`, records: records.slice(i, i + BATCH), rejects: [] }))
  }
  return { model, catalog, accounts, guiding, charges, encoded, events: records.length }
}

/** Records as the CSV adapter makes them from the sample file (bytes_out with a region, api_calls without). */
function sampleRecords(events: number, size: SampleSize): WireRecord[] {
  const out: WireRecord[] = []
  let line = 1
  for (const text of sampleCsvLines({ events, size, seed: 5 })) {
    if (text === CSV_HEADER) continue
    line++
    const [event_id, event_time, device_id, , , metric, quantity, region] = text.split(',')
    out.push({
      event_id: event_id!,
      source: SOURCE,
      event_time: event_time!,
      device_id: device_id!,
      metric: metric!,
      quantity: quantity!,
      dimensions: region ? { region } : {},
      raw: text,
      origin: `usage.csv:${line}`,
    })
  }
  return out
}

/**
 * Call sessions over October 2026 (which holds Berlin's fall-back night): mostly short calls, some long ones,
 * whole seconds and a few half seconds, so sessions cross 18:00, midnight and the weekend now and then.
 */
function callRecords(events: number, size: SampleSize): WireRecord[] {
  const rnd = prng(9)
  const start = Date.parse('2026-10-01T00:00:00Z')
  const span = 31 * 86_400_000
  const out: WireRecord[] = []
  for (let i = 0; i < events; i++) {
    const c = 1 + Math.floor(rnd() * size.customers)
    const d = 1 + Math.floor(rnd() * size.devicesPerAccount)
    const t = new Date(start + Math.floor(rnd() * span / 1000) * 1000).toISOString()
    const kind = rnd()
    const secs = kind < 0.6 ? 5 + Math.floor(rnd() * 175) : kind < 0.9 ? 180 + Math.floor(rnd() * 720) : 900 + Math.floor(rnd() * 2700)
    const quantity = i % 10 === 3 ? `${secs}.5` : String(secs)
    const device = deviceId(c, d)
    out.push({
      event_id: `call-${i}`,
      source: SOURCE,
      event_time: t,
      device_id: device,
      metric: 'session_seconds',
      quantity,
      dimensions: {},
      raw: `call-${i},${t},${device},,,session_seconds,${quantity}`,
      origin: `usage.csv:${i + 2}`,
    })
  }
  return out
}

// ---- Rateflow's path -------------------------------------------------------------------------

/** Amounts per dedupe key (comma-joined when an event feeds several charges), for the equality check. */
export type Amounts = Map<string, string>

/** One run over a scenario's batches: fed one batch at a time, it keeps its dedupe index, totals and counts. */
export interface RatingRun {
  batch(b: UsageBatch): void
  readonly counts: Counts
}

/**
 * Rateflow, one thread: stageBatch (the worker's part), then the rater's apply (dedupe, running-total fold,
 * rated_usage line). A new run starts with an empty dedupe index and no totals.
 */
export class RateflowRun implements RatingRun {
  readonly counts: Counts = { read: 0, rated: 0, duplicates: 0, rejected: 0, suspended: 0 }
  private readonly seen = new DedupeIndex()
  private readonly totals: RunningTotals
  /** Lengths of the text produced, so no step can be skipped as unused. */
  sink = 0

  constructor(
    private readonly s: Scenario,
    private readonly amounts: Amounts | null = null,
  ) {
    this.totals = new RunningTotals(s.charges)
  }

  batch(batch: UsageBatch): void {
    const { s, seen, totals, counts, amounts } = this
    const staged = stageBatch(batch, s.guiding, RECEIVED_AT_MS)
    counts.read += staged.read
    counts.rejected += staged.rejectLines.length
    let rated = ''
    let usage = ''
    for (const rec of staged.records) {
      if (!seen.add(rec.source, rec.eventId)) {
        counts.duplicates++
        continue
      }
      if (rec.rejectReason !== undefined) {
        seen.delete(rec.source, rec.eventId)
        counts.rejected++
        continue
      }
      usage += rec.usageLine
      if (rec.suspendLine !== undefined) {
        usage += rec.suspendLine
        counts.suspended++
        continue
      }
      const lines = totals.foldEvent(rec.charges, rec.source)
      if (typeof lines !== 'string') throw lines
      rated += lines
      if (amounts !== null) amounts.set(rec.source + '\u0000' + rec.eventId, ratedAmounts(lines))
      counts.rated++
    }
    this.sink += rated.length + usage.length
  }
}

/** The amount column of each rated_usage line (sixth from the end: currency, catalog_version, period_start, received_at and batch_id follow it), comma-joined. */
function ratedAmounts(lines: string): string {
  return lines
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const cols = l.split('\t')
      return cols[cols.length - 6]!
    })
    .join(',')
}

// ---- the floor -------------------------------------------------------------------------------

/**
 * The least work any implementation must do per event, and nothing else: the dedupe key made and inserted
 * into a Set (one probe), the device looked up in a Map, the quantity's digits read into a BigInt, multiplied
 * by a price and added to the owner's total, the amount printed, and one row of text appended to the batch's
 * output. No validation, no effective dating, no period, no group, no escaping, no catalog lookup: a lower bound
 * of the per-event cost on this machine, measured in the same run, so a goal above it cannot be met by any
 * layout of the work in one thread. Its amounts are not billing amounts and are not compared.
 */
export class FloorRun implements RatingRun {
  readonly counts: Counts = { read: 0, rated: 0, duplicates: 0, rejected: 0, suspended: 0 }
  private readonly seen = new Set<string>()
  /** Lengths of the text produced, so no step can be skipped as unused. */
  sink = 0

  constructor(private readonly owners: Map<string, { subscription: string; total: bigint }>) {}

  /** The owners of a scenario's devices, each with a zero total. */
  static owners(s: Scenario): Map<string, { subscription: string; total: bigint }> {
    const owners = new Map<string, { subscription: string; total: bigint }>()
    for (const customer of s.accounts.customers) {
      for (const account of customer.accounts) {
        for (const sub of account.subscriptions) for (const d of sub.devices ?? []) owners.set(d.device_id, { subscription: sub.id, total: 0n })
      }
    }
    return owners
  }

  batch(batch: UsageBatch): void {
    const { seen, owners, counts } = this
    let out = ''
    for (const r of batch.records) {
      counts.read++
      const n = seen.size
      seen.add(r.source + '\u0000' + r.event_id)
      if (seen.size === n) {
        counts.duplicates++
        continue
      }
      const owner = owners.get(r.device_id ?? '')
      if (owner === undefined) {
        counts.suspended++
        continue
      }
      const q = r.quantity
      let digits = 0
      for (let k = 0; k < q.length; k++) {
        const d = q.charCodeAt(k) - 48
        if (d >= 0 && d <= 9) digits = digits * 10 + d
      }
      const amount = BigInt(digits) * 80_000_000n
      owner.total += amount
      out += r.event_id + '\t' + owner.subscription + '\t' + r.event_time + '\t' + q + '\t' + amount.toString() + '\n'
      counts.rated++
    }
    this.sink += out.length
  }
}

// ---- the reference ---------------------------------------------------------------------------

const REF_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/
const REF_QUANTITY = /^\d{1,29}(\.\d{1,9})?$/

/** The event time in ms, or undefined when the record is not valid. */
function refValidate(r: WireRecord): number | undefined {
  if (!r.source || !r.event_id || !r.metric || !r.event_time) return undefined
  if (!r.device_id && !r.account_id && !r.subscription_id) return undefined
  if (!REF_TIME.test(r.event_time) || !REF_QUANTITY.test(r.quantity)) return undefined
  const ms = Date.parse(r.event_time)
  return Number.isNaN(ms) ? undefined : ms
}

interface RefBinding {
  from: number
  to: number
  subscription: Subscription
  account: Account
}

/** The reference's rating state of one (subscription, charge, month, group). */
interface RefTotal {
  q: Big
  /** The model applied to q, each line rounded half-even to 9 decimals, clamped. */
  t: Big
}

/** Parsed once per charge: the reference recomputes the model per event, it does not re-read the catalog. */
interface RefCharge {
  charge: UsageCharge
  meter: Meter
  scale: Big
}

class Reference {
  private readonly bindings = new Map<string, RefBinding[]>()
  private readonly formatters = new Map<string, Intl.DateTimeFormat>()
  private readonly offsets = new Map<string, number>()
  private readonly windowsOf = new Map<TimeRatedCharge, { rate: TimeRatedCharge['rates'][number]; weekdays: number[]; from: number; to: number }[]>()
  private readonly charges: RefCharge[]

  constructor(private readonly catalog: Catalog, accounts: AccountsDocument) {
    for (const customer of accounts.customers) {
      for (const account of customer.accounts) {
        for (const subscription of account.subscriptions) {
          for (const d of subscription.devices ?? []) {
            const list = this.bindings.get(d.device_id) ?? []
            list.push({ from: Date.parse(d.from), to: d.to ? Date.parse(d.to) : Infinity, subscription, account })
            this.bindings.set(d.device_id, list)
          }
        }
      }
    }
    const plan = catalog.plans[0]!
    if (catalog.plans.length !== 1 || plan.billing_period !== 'month') throw new Error('reference: one monthly plan only')
    this.charges = []
    for (const charge of plan.charges) {
      if (charge.kind !== 'usage') continue
      const meter = catalog.meters.find((m) => m.id === charge.meter)!
      this.charges.push({ charge, meter, scale: new Big(meter.scale ?? '1') })
    }
  }

  /** A run with an empty dedupe index and no totals. */
  start(amounts: Amounts | null = null): RatingRun {
    const seen = new Set<string>()
    const totals = new Map<string, RefTotal>()
    const counts: Counts = { read: 0, rated: 0, duplicates: 0, rejected: 0, suspended: 0 }
    return { counts, batch: (batch) => this.batch(batch, seen, totals, counts, amounts) }
  }

  private batch(batch: UsageBatch, seen: Set<string>, totals: Map<string, RefTotal>, counts: Counts, amounts: Amounts | null): void {
    for (const r of batch.records) {
      counts.read++
      const ms = refValidate(r)
      if (ms === undefined) {
        counts.rejected++
        continue
      }
      const key = r.source + '\u0000' + r.event_id
      if (seen.has(key)) {
        counts.duplicates++
        continue
      }
      const binding = this.bindings.get(r.device_id ?? '')?.find((b) => b.from <= ms && ms < b.to)
      const sub = binding?.subscription
      const inForce = sub !== undefined && Date.parse(sub.start) <= ms && (!sub.end || ms < Date.parse(sub.end))
      if (binding === undefined || !inForce || sub!.status !== 'active' || ms < Date.parse(this.catalog.effective_from)) {
        seen.add(key)
        counts.suspended++
        continue
      }
      const dims = r.dimensions ?? {}
      const month = this.localMonth(ms, binding.account)
      let joined = ''
      let priced = 0
      for (const c of this.charges) {
        if (c.meter.metric !== r.metric) continue
        const group = (c.meter.group_by ?? []).map((g) => dims[g] ?? '').join('\u0001')
        const totalsKey = `${binding.subscription.id}\u0000${c.charge.id}\u0000${month}\u0000${group}`
        let amount: Big
        if (c.charge.model === 'time_rated') {
          amount = this.session(c.charge, ms, r.quantity, binding.account.timezone)
        } else {
          const prior = totals.get(totalsKey) ?? { q: new Big(0), t: new Big(0) }
          const q = prior.q.plus(new Big(r.quantity).times(c.scale))
          const t = refModel(c.charge, q)
          totals.set(totalsKey, { q, t })
          amount = t.minus(prior.t)
        }
        joined += (joined === '' ? '' : ',') + amount.toString()
        priced++
      }
      if (priced === 0) {
        counts.rejected++
        continue
      }
      seen.add(key)
      if (amounts !== null) amounts.set(key, joined)
      counts.rated++
    }
  }

  /** `year-month` of the period holding `ms`: local month of the account, shifted when before the cycle day. */
  private localMonth(ms: number, account: Account): string {
    const p = this.parts(ms, account.timezone)
    let y = p.year
    let m = p.month
    if (p.day < account.bill_cycle_day) {
      m--
      if (m === 0) {
        m = 12
        y--
      }
    }
    return `${y}-${m}`
  }

  private parts(ms: number, tz: string): { year: number; month: number; day: number; hour: number; minute: number; second: number } {
    let f = this.formatters.get(tz)
    if (f === undefined) {
      f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' })
      this.formatters.set(tz, f)
    }
    const parts = f.formatToParts(new Date(ms))
    const get = (type: string) => Number(parts.find((x) => x.type === type)!.value)
    return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour'), minute: get('minute'), second: get('second') }
  }

  /** The charge's rates with their schedule's weekdays and [from, to) minutes of the local day. */
  private windows(charge: TimeRatedCharge): { rate: TimeRatedCharge['rates'][number]; weekdays: number[]; from: number; to: number }[] {
    let w = this.windowsOf.get(charge)
    if (w === undefined) {
      w = charge.rates.map((rate) => {
        const sch = (this.catalog.schedules ?? []).find((x) => x.id === rate.schedule)!
        return { rate, weekdays: sch.weekdays, from: hhmm(sch.from), to: hhmm(sch.to) }
      })
      this.windowsOf.set(charge, w)
    }
    return w
  }

  /** Offset of the zone at `ms` in ms, asked of Intl once per zone and minute (no zone changes offset mid-minute). */
  private offset(tz: string, ms: number): number {
    const minute = Math.floor(ms / 60_000)
    const k = tz + minute
    let o = this.offsets.get(k)
    if (o === undefined) {
      const p = this.parts(minute * 60_000, tz)
      o = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - minute * 60_000
      this.offsets.set(k, o)
    }
    return o
  }

  /**
   * One session, block by block: at each block's start, the local time picks the rate and the elapsed time
   * picks the step; the block costs increment × unit_price / per; the next block starts where it ends. The
   * exact sum is rounded once, then capped. Block starts are whole milliseconds, so the reference takes
   * durations with at most 3 decimals (the benchmark's have at most 1).
   */
  private session(charge: TimeRatedCharge, startMs: number, seconds: string, tz: string): Big {
    const durMs = Number(new Big(seconds).times(1000))
    if (!Number.isInteger(durMs)) throw new Error(`reference: ${seconds} s has sub-millisecond digits`)
    if (durMs === 0) return new Big(0)
    // Exact sum as a fraction num / den of big.js integers (0.02 per 60 s does not terminate).
    let num = new Big(0)
    let den = new Big(1)
    const addFraction = (n: Big, d: Big) => {
      if (d.eq(den)) num = num.plus(n)
      else {
        num = num.times(d).plus(n.times(den))
        den = den.times(d)
      }
    }
    let blocks = 0
    let current: TimeRatedCharge['rates'][number]['steps'][number] | undefined
    const flush = () => {
      if (current !== undefined && blocks > 0) {
        addFraction(new Big(current.increment).times(blocks).times(current.unit_price), new Big(current.per))
      }
      blocks = 0
    }
    const windows = this.windows(charge)
    let pos = 0
    while (pos < durMs) {
      const at = startMs + pos
      const local = at + this.offset(tz, at)
      const day = Math.floor(local / 86_400_000)
      const minuteOfDay = (local - day * 86_400_000) / 60_000
      const weekday = ((day + 3) % 7) + 1 // 1970-01-01 was a Thursday (ISO 4)
      const w = windows.find((x) => x.weekdays.includes(weekday) && minuteOfDay >= x.from && minuteOfDay < x.to)
      if (w === undefined) throw new Error(`reference: no rate at ${new Date(at).toISOString()}`)
      if (pos === 0 && w.rate.connect_fee !== undefined) addFraction(new Big(w.rate.connect_fee), new Big(1))
      let step = w.rate.steps[0]!
      for (const st of w.rate.steps) if (Number(st.from) * 1000 <= pos) step = st
      if (step !== current) {
        flush()
        current = step
      }
      blocks++
      pos += Number(step.increment) * 1000
    }
    flush()
    const r = charge.rounding ?? { decimals: 9, mode: 'half_even' as const }
    const rm = r.mode === 'up' ? Big.roundUp : r.mode === 'down' ? Big.roundDown : Big.roundHalfEven
    Big.DP = r.decimals
    Big.RM = rm
    let total = num.div(den)
    const cap = charge.max_cost_per_event === undefined ? undefined : new Big(charge.max_cost_per_event)
    if (cap !== undefined && total.gt(cap)) total = cap
    return total
  }
}

function hhmm(s: string): number {
  const [h, m] = s.split(':')
  return Number(h) * 60 + Number(m)
}

/** The model applied to period quantity q, big.js all the way: each line rounded half-even to 9 decimals, then clamped. */
function refModel(charge: UsageCharge, q: Big): Big {
  const r9 = (x: Big) => x.round(9, Big.roundHalfEven)
  let total: Big
  if (charge.model === 'per_unit') {
    let qb = q.minus(charge.free_units ?? '0')
    if (qb.lt(0)) qb = new Big(0)
    total = r9(qb.times(charge.unit_price))
  } else if (charge.model === 'graduated') {
    let qb = q.minus(charge.free_units ?? '0')
    if (qb.lt(0)) qb = new Big(0)
    total = new Big(0)
    let prev = new Big(0)
    for (let k = 0; k < charge.tiers.length; k++) {
      const tier = charge.tiers[k]!
      if (k > 0 && qb.lte(prev)) break // tier k is reached when Q is above the previous (inclusive) up_to
      const top = tier.up_to === null || qb.lt(tier.up_to) ? qb : new Big(tier.up_to)
      const share = top.gt(prev) ? top.minus(prev) : new Big(0)
      total = total.plus(r9(share.times(tier.unit_price ?? '0').plus(tier.flat_fee ?? '0')))
      if (tier.up_to === null) break
      prev = new Big(tier.up_to)
    }
  } else {
    throw new Error(`reference: model ${charge.model} is not covered`)
  }
  if (charge.minimum !== undefined && total.lt(charge.minimum)) total = new Big(charge.minimum)
  if (charge.maximum !== undefined && total.gt(charge.maximum)) total = new Big(charge.maximum)
  return total
}

// ---- measuring -------------------------------------------------------------------------------

/** Both implementations on the same inputs; throws, naming the first differences, unless every amount and count agrees. */
function check(s: Scenario, ref: Reference): void {
  const mine: Amounts = new Map()
  const theirs: Amounts = new Map()
  const x = new RateflowRun(s, mine)
  const y = ref.start(theirs)
  for (const bytes of s.encoded) {
    x.batch(decodeBatch(bytes))
    y.batch(decodeBatch(bytes))
  }
  const a = x.counts
  const b = y.counts
  const problems: string[] = []
  if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(`counts: rateflow ${JSON.stringify(a)}, reference ${JSON.stringify(b)}`)
  if (mine.size !== theirs.size) problems.push(`rated keys: rateflow ${mine.size}, reference ${theirs.size}`)
  for (const [k, v] of mine) {
    const w = theirs.get(k)
    if (w !== v) problems.push(`${k.replace('\u0000', '/')}: rateflow ${v}, reference ${w}`)
    if (problems.length >= 5) break
  }
  if (a.rated === 0 || a.duplicates === 0 || a.rejected === 0 || a.suspended === 0) {
    problems.push(`the scenario must exercise every outcome: ${JSON.stringify(a)}`)
  }
  if (problems.length > 0) throw new Error(`bench rating (${s.model}): Rateflow and the reference disagree:\n  ${problems.join('\n  ')}`)
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : Math.round((s[m - 1]! + s[m]!) / 2)
}

/**
 * Measures one model: a checked run of both (which also warms both up), then `rounds` timed rounds each,
 * interleaved so both see the same machine state.
 */
export function benchModel(model: BenchModel, events: number, rounds: number): ModelFigures {
  const s = ratingScenario(model, events)
  const ref = new Reference(s.catalog, s.accounts)
  check(s, ref)
  timed(s, new RateflowRun(s))
  timed(s, new FloorRun(FloorRun.owners(s)))
  let counts: Counts | undefined
  const mine: Timing[] = []
  const theirs: Timing[] = []
  const floors: Timing[] = []
  for (let k = 0; k < rounds; k++) {
    const run = new RateflowRun(s)
    mine.push(timed(s, run))
    counts = run.counts
    theirs.push(timed(s, ref.start()))
    floors.push(timed(s, new FloorRun(FloorRun.owners(s))))
  }
  const best = Math.max(...mine.map((x) => x.cpu))
  const refBest = Math.max(...theirs.map((x) => x.cpu))
  const floorBest = Math.max(...floors.map((x) => x.cpu))
  const goal = RATING_GOALS[model]
  return {
    model,
    events: s.events,
    rounds,
    rateflow_events_per_s: best,
    reference_events_per_s: refBest,
    ratio: ratio(best, refBest),
    goal_events_per_s: goal,
    met: best >= goal,
    rateflow_median_events_per_s: median(mine.map((x) => x.cpu)),
    reference_median_events_per_s: median(theirs.map((x) => x.cpu)),
    rateflow_wall_events_per_s: Math.max(...mine.map((x) => x.wall)),
    reference_wall_events_per_s: Math.max(...theirs.map((x) => x.wall)),
    floor_events_per_s: floorBest,
    ratio_to_floor: ratio(best, floorBest),
    goal_within_floor: floorBest >= goal,
    counts: counts!,
  }
}

interface Timing {
  /** events per CPU-second */
  cpu: number
  /** events per wall-clock second */
  wall: number
}

/**
 * Feeds every batch to `run`, timing only the run: each batch is decoded from its msgpack bytes just before, as a
 * pool worker receives it, so records are as fresh in the caches as in production and decoding is not counted.
 */
function timed(s: Scenario, run: RatingRun): Timing {
  let cpuUs = 0
  let wallMs = 0
  for (const bytes of s.encoded) {
    const batch = decodeBatch(bytes)
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    run.batch(batch)
    wallMs += performance.now() - t0
    const c = process.cpuUsage(c0)
    cpuUs += c.user + c.system
  }
  if (run.counts.read !== s.events) throw new Error(`bench rating: read ${run.counts.read} of ${s.events} events`)
  return { cpu: perSecond(s.events, cpuUs / 1000), wall: perSecond(s.events, wallMs) }
}

const KEY_SHAPES = [
  { shape: 'CSV row id', source: 'csv:oct-export', id: (i: number) => `e-${i}` },
  // Numbered, but scattered over 10^9 (about 65 per page of 65,536): the DedupeIndex's sparse pages.
  { shape: 'scattered number', source: 'syslog:fw-edge', id: (i: number) => `seq-${(i * 104_729) % 999_999_937}` },
  { shape: 'UUID', source: 'mqtt:plant-7', id: (i: number) => uuidLike(i) },
] as const

function uuidLike(i: number): string {
  const h = (i * 2654435761 >>> 0).toString(16).padStart(8, '0')
  const n = i.toString(16).padStart(12, '0')
  // 8-4-4-4-12 lowercase hex digits, version 4, variant 10: a canonical UUID, unique per i (n is i in 12 digits).
  return `${h}-${n.slice(0, 4)}-4${n.slice(4, 7)}-a${n.slice(7, 10)}-${h}${n.slice(8, 12)}`
}

/**
 * Bytes per remembered key (heap and ArrayBuffers), for each key shape: in the rater's DedupeIndex (per source:
 * UUIDs as 128 bits, numbered ids as numbers, other ids as strings), and, for comparison, in one Set of
 * `source\0event_id` strings detached the same way. Needs `--expose-gc`:
 * heapUsed is read after full collections, before and after the structure is built. The keys arrive as the
 * rater gets them: slices of a batch's text (1,000 keys per text), dropped once the batch is applied.
 */
export function measureKeyBytes(keys: number): KeyBytes[] {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('measureKeyBytes needs node --expose-gc')
  return KEY_SHAPES.map(({ shape, source, id }) => ({
    shape,
    example: `${source}\\0${id(12345)}`,
    keys,
    bytes_per_key: heapPerKey(keys, gc, () => {
      const index = new DedupeIndex()
      forEachSliced(keys, id, (k) => index.add(source, k))
      if (index.size !== keys || !index.has(source, id(keys - 1))) throw new Error('dedupe index lost a key')
      return index
    }),
    joined_set_bytes_per_key: heapPerKey(keys, gc, () => {
      const set = new Set<string>()
      forEachSliced(keys, (i) => `${source}\u0000${id(i)}`, (k) => set.add(detached(k)))
      if (set.size !== keys) throw new Error('dedupe set lost a key')
      return set
    }),
  }))
}

/** Calls `use` with key(i) for i < keys, each a slice of a text holding 1,000 keys, as a batch's wire text holds them. */
function forEachSliced(keys: number, key: (i: number) => string, use: (k: string) => void): void {
  for (let first = 0; first < keys; first += 1000) {
    const parts: string[] = []
    for (let i = first; i < Math.min(first + 1000, keys); i++) parts.push(key(i))
    const text = parts.join('')
    let at = 0
    for (const p of parts) {
      use(text.slice(at, at + p.length))
      at += p.length
    }
  }
}

/** What heapPerKey measures, held where no optimisation can consider it dead before the heap is read. */
let measured: unknown

/** The heap and the memory of ArrayBuffers (which live outside the heap: the DedupeIndex's bitmaps). */
function heldBytes(): number {
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

/** Growth of heap and ArrayBuffer memory per key while what `build` returns is alive, to a tenth of a byte. */
function heapPerKey(keys: number, gc: () => void, build: () => unknown): number {
  gc()
  gc()
  const before = heldBytes()
  measured = build()
  gc()
  gc()
  const after = heldBytes()
  // Released before the next structure is measured, or it would be counted against that one.
  measured = undefined
  return Math.round((10 * (after - before)) / keys) / 10
}

/** Entry for the child process started with --expose-gc: prints measureKeyBytes as one JSON line. */
export function printKeyBytes(keys: number): void {
  process.stdout.write(JSON.stringify(measureKeyBytes(keys)) + '\n')
}

function keyBytes(keys: number): KeyBytes[] {
  if ((globalThis as { gc?: unknown }).gc !== undefined) return measureKeyBytes(keys)
  // A child of this node with the collector exposed: heap figures without garbage are only readable after gc().
  const code = `import(${JSON.stringify(import.meta.url)}).then((m) => m.printKeyBytes(${keys}))`
  const text = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { encoding: 'utf8' })
  return JSON.parse(text.trim().split('\n').pop()!) as KeyBytes[]
}

/**
 * `rateflow bench rating`: per model, Rateflow against the reference in the same run; then bytes per dedupe key.
 * BENCH_EVENTS (default 200,000 per model), BENCH_ROUNDS (default 5), BENCH_KEYS (default 1,000,000),
 * BENCH_MODELS (comma-separated subset). A goal not met is reported, not an error; a disagreement between
 * Rateflow and the reference is (exit 1).
 */
export async function run(out: (s: string) => void): Promise<number> {
  const events = Number(process.env.BENCH_EVENTS ?? 200_000)
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5)
  const keys = Number(process.env.BENCH_KEYS ?? 1_000_000)
  const models = (process.env.BENCH_MODELS?.split(',') ?? Object.keys(RATING_GOALS)) as BenchModel[]
  for (const m of models) if (!(m in RATING_GOALS)) throw new Error(`BENCH_MODELS: unknown model "${m}"`)
  out(`benchmark rating: validate → dedupe → guide → rate in one thread, ${events.toLocaleString('en')} events per model, best of ${rounds} rounds`)
  out(`events per CPU-second of this process (wall-clock rates below the table)`)
  out(`  model        Rateflow events/s   reference events/s   ratio   floor events/s   of floor   goal events/s   goal`)
  const figures: ModelFigures[] = []
  for (const m of models) {
    const f = benchModel(m, events, rounds)
    figures.push(f)
    out(
      `  ${m.padEnd(12)} ${f.rateflow_events_per_s.toLocaleString('en').padStart(17)}   ${f.reference_events_per_s.toLocaleString('en').padStart(18)}   ` +
        `${String(f.ratio).padStart(5)}   ${f.floor_events_per_s.toLocaleString('en').padStart(14)}   ${String(f.ratio_to_floor).padStart(8)}   ` +
        `${f.goal_events_per_s.toLocaleString('en').padStart(13)}   ${f.met ? 'met' : f.goal_within_floor ? 'not met' : 'not met (above the floor)'}`,
    )
  }
  const fmt = (n: number) => n.toLocaleString('en')
  out(`  medians (CPU): ${figures.map((f) => `${f.model} ${fmt(f.rateflow_median_events_per_s)} vs ${fmt(f.reference_median_events_per_s)}`).join('; ')}`)
  out(`  best wall-clock: ${figures.map((f) => `${f.model} ${fmt(f.rateflow_wall_events_per_s)} vs ${fmt(f.reference_wall_events_per_s)}`).join('; ')}`)
  out(
    `  floor: the least work any implementation does per event (dedupe-key Set insert, device Map lookup, BigInt multiply-add, ` +
      `amount text, one row of text; no validation, dating, period, group or escaping), on the same batches`,
  )
  out(`  outcomes per round: ${figures.map((f) => `${f.model} ${JSON.stringify(f.counts)}`).join('; ')}`)
  const dedupe = keyBytes(keys)
  for (const d of dedupe) {
    out(
      `  dedupe key (${d.shape}, e.g. "${d.example}"): ${d.bytes_per_key} bytes per remembered key in the DedupeIndex ` +
        `(${d.joined_set_bytes_per_key} in one Set of joined keys), ${d.keys.toLocaleString('en')} keys`,
    )
  }
  const result: RatingResult = { date: new Date().toISOString(), node: process.version, models: figures, dedupe }
  out(`  written to ${saveResult('rating', result)}`)
  return 0
}
