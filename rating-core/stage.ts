import { createHash } from 'node:crypto'
import { billingPeriod, type Period } from '../catalog/periods.js'
import type { GuidingIndex, Owner } from '../catalog/guiding.js'
import type { Meter, UsageCharge } from '../catalog/types.js'
import { detached } from '../common/strings.js'
import { isoUtc } from '../common/time.js'
import { chTime, tsv, tsvMap } from '../pipeline/tsv.js'
import type { UsageBatch, WireRecord, WireReject } from './record.js'
import { groupKey, meterInfo } from './meters.js'
import { validateRecord } from './validate.js'

/**
 * The stateless part of rating one batch: validate → guide → match the plan's usage charges, and the TSV
 * text of every row that could be written. Pure given (batch, guiding snapshot, received_at).
 *
 * What it leaves to the partition owner (pipeline/rater.ts), because it needs state across batches:
 * the dedupe decision on (source, event_id) and the running-total fold that turns a metered quantity into
 * a per-event amount (invariant 4). So a staged record is a *candidate*: zero outputs are written for it
 * when the owner finds it a duplicate.
 */
export interface StagedBatch {
  readonly batchId: string
  /** Inputs read: records + adapter rejects. */
  readonly read: number
  /** rejected_usage TSV lines (each ends in \n); never deduped: a re-sent bad row is rejected again. */
  readonly rejectLines: string[]
  readonly records: StagedRecord[]
}

export interface StagedRecord {
  /** With `source`, the dedupe key (CONTRACT §2). */
  readonly eventId: string
  /** event_time in epoch ms, as validation read it (every charge's eventMs is this): the dedupe horizon reads it. */
  readonly eventMs: number
  /** usage_events line (ends in \n). */
  readonly usageLine: string
  /** Set when the record waits for guiding data: suspended_usage line (ends in \n). */
  readonly suspendLine?: string
  /** With suspendLine: why it waits (the line's reason column, unescaped). */
  readonly suspendReason?: string
  /**
   * Set when guiding refuses the record (no single owner at its event_time, or no usage charge of the owner's plan
   * prices its metric): why. The owner rejects it unless its key is a duplicate (an event rated before the guiding
   * data changed, sent again, is a duplicate, not a reject); a release leaves the held row held, with this reason.
   */
  readonly rejectReason?: string
  readonly charges: StagedCharge[]
  /** The input as received, for a reject the owner decides (a model that cannot price the event): source, raw bytes (or the record's JSON), origin. */
  readonly source: string
  readonly raw: string
  readonly origin: string | undefined
  readonly receivedAt: string
}

/** One usage charge a record feeds; the owner folds it into the running total to get the amount. */
export interface StagedCharge {
  /** (subscription, plan, charge, period_start, group, catalog version): the running total this event increments (totalsKey). */
  readonly totalsKey: string
  /** Looks up the charge and meter in the owner's catalog table: `version\0plan\0charge`. */
  readonly chargeRef: string
  readonly quantity: string
  /** The event's dimensions when the meter reads them while folding (unique_count), else NO_DIMENSIONS. */
  readonly dimensions: Record<string, string>
  readonly eventIso: string
  /** eventIso in epoch ms, as validation read it: the fold does not parse the time again. */
  readonly eventMs: number
  readonly eventId: string
  readonly timezone: string
  readonly periodStartIso: string
  readonly periodEndIso: string
  /** rated_usage line up to and including the tab before `quantity`. */
  readonly prefix: string
  /** rated_usage line after `amount`, from its tab to the \n. */
  readonly suffix: string
}

/**
 * The dimensions of a staged charge whose meter does not read them while folding: filters and group_by are
 * applied here, so only unique_count needs them later. Carrying them anyway cost a JSON.stringify per charge in
 * the pool and a JSON.parse on the rater's thread.
 */
export const NO_DIMENSIONS: Readonly<Record<string, string>> = Object.freeze({})

const NORMALISED_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

export function chargeRef(version: string, plan: string, charge: string): string {
  return `${version}\u0000${plan}\u0000${charge}`
}

/**
 * The running total an event of `charge` increments: one per subscription, plan, charge, billing period, group and
 * catalog version. A version that takes effect mid-period starts its own total, so each event is priced by the
 * version in force at its event_time and its amount does not depend on whether events of the other version
 * arrived first (one total across versions priced old usage again at the new price, by arrival order). So does a
 * plan change mid-period: the new plan's charge of the same id starts from nothing (one total across plans gave the
 * new plan's free units and tiers the old plan's usage: a credit for usage, or every later event refused as priced
 * by another model).
 *
 * The key's form is stored with the checkpoints of the running totals: a start must tell a checkpoint of another form
 * and fold the rated rows instead (rater.ts keyedTheOldWay), or it restores totals no event's key finds.
 */
export function totalsKey(subscription: string, plan: string, charge: string, periodStartIso: string, group: string, version: string): string {
  return `${subscription}\u0000${plan}\u0000${charge}\u0000${periodStartIso}\u0000${group}\u0000${version}`
}

/**
 * Stages a batch. `receivedAt` is stamped on every row (the owner's clock, not the worker's, so a
 * redelivered batch gets a fresh one but identical rated content).
 *
 * This runs once per event at the head of the rating path, so what does not depend on the event is not
 * redone per event: the text of the batch's tail columns, the escaped source, metric and dimension maps,
 * and per owner (guiding hands out one object per subscription and catalog version) the charges each metric
 * feeds with their rated_usage columns, the current billing period, and per period and group the totals
 * key and the row suffix. Measured by `rateflow bench rating`.
 */
export function stageBatch(batch: UsageBatch, guiding: GuidingIndex, receivedAtMs: number): StagedBatch {
  const receivedAt = chTime(isoUtc(receivedAtMs))
  const rejectLines: string[] = []
  const records: StagedRecord[] = []
  const batchId = tsv(batch.id)
  // The columns every row of this batch ends with (received_at, batch_id).
  const tail = '\t' + receivedAt + '\t' + batchId + '\n'
  // Per source (one per batch in practice): its column text, with the separators around it. Staged records
  // carry the first string of each run of one source, so the owner's dedupe index compares them by identity.
  let lastSource: string | undefined
  // The last record's metric as sent, and its interned form (records of a batch mostly share one).
  let lastMetricIn: string | undefined
  let metric: Metric | undefined
  let sourceTab = ''
  let tabSourceTab = ''
  for (const j of batch.rejects) rejectLines.push(rejectLine(j, receivedAt, batchId))
  for (const r of batch.records) {
    const ms = validateRecord(r)
    if (typeof ms === 'string') {
      rejectLines.push(rejectLine(asReject(r, ms), receivedAt, batchId, eventIdOf(r)))
      continue
    }
    if (r.source !== lastSource) {
      lastSource = r.source
      const sourceT = tsv(r.source)
      sourceTab = sourceT + '\t'
      tabSourceTab = '\t' + sourceTab
    }
    // Most sources already send normalised UTC; formatting a Date costs more than this check.
    const iso = NORMALISED_UTC.test(r.event_time) ? r.event_time : isoUtc(ms)
    // Rows are built from as few pieces as possible: each `+` of a long string is one more object to
    // allocate and, when the staged batch outlives a minor collection, to copy.
    const timeTab = chTime(iso) + '\t'
    const dims = r.dimensions ?? {}
    const eventT = tsv(r.event_id)
    const device = r.device_id ? tsv(r.device_id) : ''
    const ownerCols =
      r.account_id || r.subscription_id
        ? device + '\t' + (r.account_id ? tsv(r.account_id) : '') + '\t' + (r.subscription_id ? tsv(r.subscription_id) : '') + '\t'
        : device + '\t\t\t'
    if (r.metric !== lastMetricIn) {
      lastMetricIn = r.metric
      metric = metricOf(r.metric)
    }
    const common = sourceTab + eventT + '\t' + timeTab + ownerCols + metric!.tab + r.quantity + tabDims(dims)
    const usageLine = common + tail
    const g = guiding.guide(r, ms)
    if (g.kind === 'reject') {
      records.push(refused(r, ms, lastSource!, g.reason, receivedAt))
      continue
    }
    if (g.kind === 'suspend') {
      const raw = rawOf(r)
      const suspendLine =
        common + '\t' + tsv(raw) + '\t' + tsv(r.origin ?? '') + '\t' + tsv(g.reason) +
        '\theld\t' + receivedAtMs + '\t' + receivedAt + '\t' + batchId + '\n'
      records.push({ eventId: r.event_id, eventMs: ms, usageLine, suspendLine, suspendReason: g.reason, charges: [], source: lastSource!, raw, origin: r.origin, receivedAt })
      continue
    }
    const o = ownerRoutes(g.owner)
    // One period for every charge of the record: it depends on the account and the plan only.
    let period = o.period
    if (period === undefined || !(period.start <= ms && ms < period.end)) {
      period = billingPeriod(ms, g.owner.account, g.owner.plan.billing_period)
      o.period = period
    }
    let charges: StagedCharge[] | undefined
    const routes = routesOf(o, metric!)
    if (routes !== undefined) {
      const head = eventT + tabSourceTab
      for (const route of routes) {
        if (!accepts(route.filter, dims)) continue
        const group = groupOf(route, dims)
        route.enter(period)
        const c: StagedCharge = {
          totalsKey: route.totalsKey(group.key, period),
          chargeRef: route.chargeRef,
          quantity: r.quantity,
          dimensions: route.readsDimensions ? dims : NO_DIMENSIONS,
          eventIso: iso,
          eventMs: ms,
          eventId: r.event_id,
          timezone: g.owner.account.timezone,
          periodStartIso: period.startIso,
          periodEndIso: period.endIso,
          prefix: head + group.columns + timeTab,
          suffix: route.suffix(tail),
        }
        // Sized to what it holds: an empty array grows to 16 slots on its first push.
        if (charges === undefined) charges = [c]
        else charges.push(c)
      }
    }
    if (charges === undefined) {
      const { plan, catalog } = g.owner
      const reason =
        `metric "${r.metric}"${Object.keys(dims).length ? ` with dimensions ${JSON.stringify(dims)}` : ''} is not priced by ` +
        `any usage charge of plan "${plan.id}" in catalog version "${catalog.version}"`
      records.push(refused(r, ms, lastSource!, reason, receivedAt))
      continue
    }
    records.push({ eventId: r.event_id, eventMs: ms, usageLine, charges, source: lastSource!, raw: rawOf(r), origin: r.origin, receivedAt })
  }
  return { batchId: batch.id, read: batch.records.length + batch.rejects.length, rejectLines, records }
}

// ---- what stageBatch keeps between events ----------------------------------------------------------

/** The usage charges of one owner (subscription × catalog version), by the metric their meter reads. */
interface OwnerRoutes {
  readonly byMetric: Map<string, ChargeRoute[]>
  /** The billing period of the owner's last event: the next one almost always falls in it too. */
  period: Period | undefined
  /** The last metric asked for and its routes: one comparison instead of a hash lookup when it is asked again. */
  lastMetric: Metric | undefined
  lastRoutes: ChargeRoute[] | undefined
}

/** The routes of `metric`'s events, or undefined when no usage charge of the owner prices the metric. */
function routesOf(o: OwnerRoutes, metric: Metric): ChargeRoute[] | undefined {
  if (o.lastMetric === metric) return o.lastRoutes
  const routes = o.byMetric.get(metric.name)
  o.lastMetric = metric
  o.lastRoutes = routes
  return routes
}

/** A group's totals-key part, and the rated_usage columns account_id … metric with their tabs. */
interface Group {
  readonly key: string
  readonly columns: string
}

// Kept on the owner object itself under a non-enumerable symbol (set once per owner): a WeakMap lookup per
// event was one more hash probe into memory no other step touches. Invisible to JSON, structuredClone, keys.
const ROUTES = Symbol('rateflow.stage.routes')

function ownerRoutes(owner: Owner): OwnerRoutes {
  let o = (owner as Owner & { [ROUTES]?: OwnerRoutes })[ROUTES]
  if (o === undefined) {
    o = { byMetric: new Map(), period: undefined, lastMetric: undefined, lastRoutes: undefined }
    for (const c of owner.plan.charges) {
      if (c.kind !== 'usage') continue
      const meter = owner.catalog.meters.find((m) => m.id === c.meter)
      if (!meter) continue
      const list = o.byMetric.get(meter.metric) ?? []
      list.push(new ChargeRoute(owner, c, meter))
      o.byMetric.set(meter.metric, list)
    }
    Object.defineProperty(owner, ROUTES, { value: o })
  }
  return o
}

const MAX_CACHED = 10_000

/** One usage charge of one owner: everything its rated rows share, worked out once. */
class ChargeRoute {
  readonly filter: ReadonlyArray<readonly [string, string]>
  readonly groupBy: readonly string[]
  /** The meter reads an event's dimensions while folding (unique_count counts a dimension's values). */
  readonly readsDimensions: boolean
  readonly chargeRef: string
  /** rated_usage columns account_id … charge_id, each followed by its tab. */
  readonly ids: string
  /** Groups seen, by the single group_by value (bounded: a group_by on an id column could grow without end). */
  readonly groups = new Map<string, Group>()
  missingGroup: Group | undefined
  /** The only group of a meter without group_by. */
  readonly noGroup: Group
  /** The period the keys and suffix below belong to (the route's latest). */
  private periodStart = NaN
  private keys = new Map<string, string>()
  /** rated_usage columns currency … period_start, from the tab after `amount`. */
  private suffixHead = ''
  /** suffix(): the last batch tail it was asked for, and suffixHead + that tail. */
  private suffixTail = ''
  private suffixText = ''

  constructor(
    private readonly owner: Owner,
    readonly charge: UsageCharge,
    readonly meter: Meter,
  ) {
    const info = meterInfo(meter)
    this.filter = info.filter
    this.groupBy = info.groupBy
    this.readsDimensions = meter.aggregation === 'unique_count'
    const { account, subscription, plan, catalog } = owner
    this.chargeRef = chargeRef(catalog.version, plan.id, charge.id)
    this.ids = tsv(account.id) + '\t' + tsv(subscription.id) + '\t' + tsv(plan.id) + '\t' + tsv(charge.id) + '\t'
    this.noGroup = this.group('')
  }

  /** The group with key `key` (groupKey's text). */
  group(key: string): Group {
    return { key, columns: this.ids + tsv(key) + '\t' + tsv(this.meter.metric) + '\t' }
  }

  /** The rated_usage columns after `amount`: suffixHead and a batch's tail, one string per route, period and batch. */
  suffix(tail: string): string {
    if (tail !== this.suffixTail) {
      this.suffixTail = tail
      this.suffixText = this.suffixHead + tail
    }
    return this.suffixText
  }

  /** Points the keys and suffix at `period`. */
  enter(period: Period): void {
    if (period.start === this.periodStart) return
    this.periodStart = period.start
    this.suffixTail = ''
    this.keys = new Map()
    const { catalog } = this.owner
    this.suffixHead = '\t' + catalog.currency + '\t' + tsv(catalog.version) + '\t' + chTime(period.startIso)
  }

  /** The totals key of `group` in the current period (one string per running total, made once). */
  totalsKey(group: string, period: Period): string {
    let k = this.keys.get(group)
    if (k === undefined) {
      k = totalsKey(this.owner.subscription.id, this.owner.plan.id, this.charge.id, period.startIso, group, this.owner.catalog.version)
      if (this.keys.size >= MAX_CACHED) this.keys.clear()
      this.keys.set(group, k)
    }
    return k
  }
}

/** The group of an event under a route's meter: groupKey's text, kept per value of a single group_by dimension. */
function groupOf(route: ChargeRoute, dims: Record<string, string>): Group {
  const by = route.groupBy
  if (by.length === 0) return route.noGroup
  if (by.length > 1) return route.group(groupKey(route.meter, dims))
  const value = dims[by[0]!]
  let g = value === undefined ? route.missingGroup : route.groups.get(value)
  if (g === undefined) {
    // The group's texts are new strings (groupKey prints JSON); the value it is cached under may be a slice of
    // the batch's text, which a cache entry would keep alive: it is kept as a copy.
    g = route.group(groupKey(route.meter, dims))
    if (value === undefined) route.missingGroup = g
    else {
      if (route.groups.size >= MAX_CACHED) route.groups.clear()
      route.groups.set(detached(value), g)
    }
  }
  return g
}

function accepts(filter: ReadonlyArray<readonly [string, string]>, dims: Record<string, string>): boolean {
  for (const [k, v] of filter) if (dims[k] !== v) return false
  return true
}

/** A metric as staging interns it: one object per metric name, so owners compare metrics by identity. */
interface Metric {
  readonly name: string
  /** The metric column and its tab. */
  readonly tab: string
}

const metrics = new Map<string, Metric>()

/** The interned metric of this name (a handful of values; bounded all the same). */
function metricOf(name: string): Metric {
  let m = metrics.get(name)
  if (m === undefined) {
    // A copy of the name: the one sent may be a slice of a batch's bytes.
    m = { name: detached(name), tab: tsv(name) + '\t' }
    if (metrics.size >= MAX_CACHED) metrics.clear()
    metrics.set(m.name, m)
  }
  return m
}

const dimsOf = new Map<string, Map<string, string>>()

/** A tab and tsvMap() of an event's dimensions; the common shapes (none, or one dimension) are remembered per value. */
function tabDims(dims: Record<string, string>): string {
  let only: string | undefined
  let n = 0
  for (const k in dims) {
    if (++n > 1) return '\t' + tsvMap(dims)
    only = k
  }
  if (only === undefined) return '\t{}'
  let byValue = dimsOf.get(only)
  if (byValue === undefined) {
    if (dimsOf.size >= MAX_CACHED) dimsOf.clear()
    byValue = new Map()
    dimsOf.set(detached(only), byValue)
  }
  const value = dims[only]!
  let t = byValue.get(value)
  if (t === undefined) {
    // Kept across batches: copies, not slices of this batch's text.
    t = detached('\t' + tsvMap(dims))
    if (byValue.size >= MAX_CACHED) byValue.clear()
    byValue.set(detached(value), t)
  }
  return t
}

function canonical(r: WireRecord): Omit<WireRecord, 'raw' | 'origin'> {
  const { raw: _raw, origin: _origin, ...rest } = r
  return rest
}

/** The raw input of a record, or its canonical JSON when the adapter kept none (64-bit integers as their digits). */
function rawOf(r: WireRecord): string {
  return r.raw ?? JSON.stringify(canonical(r), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
}

/** A valid record guiding refuses (StagedRecord.rejectReason): the owner decides between a reject and a duplicate. */
function refused(r: WireRecord, ms: number, source: string, reason: string, receivedAt: string): StagedRecord {
  return { eventId: r.event_id, eventMs: ms, usageLine: '', rejectReason: reason, charges: [], source, raw: rawOf(r), origin: r.origin, receivedAt }
}

function asReject(r: WireRecord, reason: string): WireReject {
  return rejectOf(typeof r.source === 'string' ? r.source : '', rawOf(r), r.origin, reason)
}

/** The reject of a staged record its owner cannot price (a model that refuses the event), with its input as received. */
export function stagedReject(rec: StagedRecord, reason: string): WireReject {
  return rejectOf(rec.source, rec.raw, rec.origin, reason)
}

function rejectOf(source: string, raw: string, origin: string | undefined, reason: string): WireReject {
  // Two literals rather than a spread of a conditional object (two allocations) or an added property (a
  // property store grown per record); `origin` is absent, not undefined, when the record has none.
  return origin !== undefined ? { source, raw, reason, origin } : { source, raw, reason }
}

/**
 * A rejected_usage line (ends in \n). `eventId`: the event the input made, when the reject is of one record (an input
 * can make several, a FortiGate line three, and each of their rejects must stay a row of its own).
 */
export function rejectLine(j: WireReject, receivedAt: string, batchId: string, eventId = ''): string {
  const origin = j.origin ?? ''
  // The same bad input at the same place (and of the same event) is one row (ReplacingMergeTree key), however often
  // it is sent, whatever the reason says then: re-ingesting a file after a catalog change replaces its rejects.
  const rejectKey = createHash('sha1').update(origin).update('\u0000').update(j.raw).update('\u0000').update(eventId).digest('hex')
  return (
    tsv(j.source) + '\t' + tsv(j.raw) + '\t' + tsv(origin ? `${origin}: ${j.reason}` : j.reason) + '\t' + tsv(origin) + '\t' +
    receivedAt + '\t' + rejectKey + '\t' + batchId + '\n'
  )
}

/** A record's event_id as text for a reject's key ('' when it has none a validation would accept). */
function eventIdOf(r: WireRecord): string {
  return typeof r.event_id === 'string' ? r.event_id : ''
}
