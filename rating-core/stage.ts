import { createHash } from 'node:crypto'
import { billingPeriod } from '../catalog/periods.js'
import type { GuidingIndex } from '../catalog/guiding.js'
import type { Meter, UsageCharge } from '../catalog/types.js'
import { isoUtc } from '../common/time.js'
import { chTime, tsv, tsvMap } from '../pipeline/tsv.js'
import type { UsageBatch, WireRecord, WireReject } from './record.js'
import { groupKey, meterAccepts } from './usage-rater.js'
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
  /** Dedupe key: source + NUL + event_id. */
  readonly key: string
  readonly ms: number
  /** usage_events line (ends in \n). */
  readonly usageLine: string
  /** Set when the record waits for guiding data: suspended_usage line (ends in \n). */
  readonly suspendLine?: string
  readonly charges: StagedCharge[]
  /** The input as received, for a reject the owner decides (a model that cannot price the event). */
  readonly reject: WireReject
  readonly receivedAt: string
}

/** One usage charge a record feeds; the owner folds it into the running total to get the amount. */
export interface StagedCharge {
  /** (subscription, charge, period_start, group, catalog version): the running total this event increments. */
  readonly totalsKey: string
  /** Looks up the charge and meter in the owner's catalog table: `version\0plan\0charge`. */
  readonly chargeRef: string
  readonly quantity: string
  readonly dimensions: Record<string, string>
  readonly eventIso: string
  readonly eventId: string
  readonly timezone: string
  readonly periodStartIso: string
  readonly periodEndIso: string
  /** rated_usage line up to and including the tab before `quantity`. */
  readonly prefix: string
  /** rated_usage line after `amount`, from its tab to the \n. */
  readonly suffix: string
}

const NORMALISED_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

export function chargeRef(version: string, plan: string, charge: string): string {
  return `${version}\u0000${plan}\u0000${charge}`
}

/**
 * The running total an event of `charge` increments: one per subscription, charge, billing period, group and
 * catalog version. A version that takes effect mid-period starts its own total, so each event is priced by the
 * version in force at its event_time and its amount does not depend on whether events of the other version
 * arrived first (one total across versions priced old usage again at the new price, by arrival order).
 */
export function totalsKey(subscription: string, charge: string, periodStartIso: string, group: string, version: string): string {
  return `${subscription}\u0000${charge}\u0000${periodStartIso}\u0000${group}\u0000${version}`
}

/**
 * Stages a batch. `receivedAt` is stamped on every row (the owner's clock, not the worker's, so a
 * redelivered batch gets a fresh one but identical rated content).
 */
export function stageBatch(batch: UsageBatch, guiding: GuidingIndex, receivedAtMs: number): StagedBatch {
  const receivedAt = chTime(isoUtc(receivedAtMs))
  const rejectLines: string[] = []
  const records: StagedRecord[] = []
  const batchId = tsv(batch.id)
  for (const j of batch.rejects) rejectLines.push(rejectLine(j, receivedAt, batchId))
  for (const r of batch.records) {
    const v = validateRecord(r)
    if (typeof v === 'string') {
      rejectLines.push(rejectLine(asReject(r, v), receivedAt, batchId))
      continue
    }
    // Most sources already send normalised UTC; formatting a Date costs more than this check.
    const iso = NORMALISED_UTC.test(r.event_time) ? r.event_time : isoUtc(v.ms)
    const dims = r.dimensions ?? {}
    const key = r.source + '\u0000' + r.event_id
    const common =
      tsv(r.source) + '\t' + tsv(r.event_id) + '\t' + chTime(iso) + '\t' + tsv(r.device_id ?? '') + '\t' +
      tsv(r.account_id ?? '') + '\t' + tsv(r.subscription_id ?? '') + '\t' + tsv(r.metric) + '\t' + r.quantity + '\t' + tsvMap(dims)
    const usageLine = common + '\t' + receivedAt + '\t' + batchId + '\n'
    const g = guiding.guide(r, v.ms)
    if (g.kind === 'reject') {
      rejectLines.push(rejectLine(asReject(r, g.reason), receivedAt, batchId))
      continue
    }
    if (g.kind === 'suspend') {
      const suspendLine =
        common + '\t' + tsv(r.raw ?? JSON.stringify(canonical(r))) + '\t' + tsv(r.origin ?? '') + '\t' + tsv(g.reason) +
        '\theld\t' + receivedAtMs + '\t' + receivedAt + '\t' + batchId + '\n'
      records.push({ key, ms: v.ms, usageLine, suspendLine, charges: [], reject: asReject(r, ''), receivedAt })
      continue
    }
    const { account, subscription, plan, catalog } = g.owner
    const charges: StagedCharge[] = []
    // One period for every charge of the record: it depends on the account and the plan only.
    const period = billingPeriod(v.ms, account, plan.billing_period)
    const periodStartIso = period.startIso
    for (const c of plan.charges) {
      if (c.kind !== 'usage') continue
      const meter = catalog.meters.find((m) => m.id === c.meter)
      if (!meter || !meterAccepts(meter, r.metric, dims)) continue
      const group = groupKey(meter, dims)
      charges.push({
        totalsKey: totalsKey(subscription.id, c.id, periodStartIso, group, catalog.version),
        chargeRef: chargeRef(catalog.version, plan.id, c.id),
        quantity: r.quantity,
        dimensions: dims,
        eventIso: iso,
        eventId: r.event_id,
        timezone: account.timezone,
        periodStartIso,
        periodEndIso: period.endIso,
        prefix:
          tsv(r.event_id) + '\t' + tsv(r.source) + '\t' + tsv(account.id) + '\t' + tsv(subscription.id) + '\t' +
          tsv(plan.id) + '\t' + tsv(c.id) + '\t' + tsv(group) + '\t' + tsv(r.metric) + '\t' + chTime(iso) + '\t',
        suffix:
          '\t' + catalog.currency + '\t' + tsv(catalog.version) + '\t' + chTime(periodStartIso) + '\t' + receivedAt + '\t' +
          batchId + '\n',
      })
    }
    if (charges.length === 0) {
      const reason =
        `metric "${r.metric}"${Object.keys(dims).length ? ` with dimensions ${JSON.stringify(dims)}` : ''} is not priced by ` +
        `any usage charge of plan "${plan.id}" in catalog version "${catalog.version}"`
      rejectLines.push(rejectLine(asReject(r, reason), receivedAt, batchId))
      continue
    }
    records.push({ key, ms: v.ms, usageLine, charges, reject: asReject(r, ''), receivedAt })
  }
  return { batchId: batch.id, read: batch.records.length + batch.rejects.length, rejectLines, records }
}

/** Meter and charge a StagedCharge refers to, as the owner resolves them. */
export interface ResolvedCharge {
  readonly charge: UsageCharge
  readonly meter: Meter
}

function canonical(r: WireRecord): Omit<WireRecord, 'raw' | 'origin'> {
  const { raw: _raw, origin: _origin, ...rest } = r
  return rest
}

function asReject(r: WireRecord, reason: string): WireReject {
  return {
    source: typeof r.source === 'string' ? r.source : '',
    raw: r.raw ?? JSON.stringify(canonical(r)),
    reason,
    ...(r.origin !== undefined ? { origin: r.origin } : {}),
  }
}

/** A rejected_usage line (ends in \n). */
export function rejectLine(j: WireReject, receivedAt: string, batchId: string): string {
  const origin = j.origin ?? ''
  // The same bad input at the same place is one row (ReplacingMergeTree key), however often it is sent.
  const rejectKey = createHash('sha1').update(origin).update('\u0000').update(j.raw).digest('hex')
  return (
    tsv(j.source) + '\t' + tsv(j.raw) + '\t' + tsv(origin ? `${origin}: ${j.reason}` : j.reason) + '\t' + tsv(origin) + '\t' +
    receivedAt + '\t' + rejectKey + '\t' + batchId + '\n'
  )
}
