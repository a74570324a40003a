import { parseIsoTime } from '../common/time.js'
import type { WireRecord } from './record.js'

/** Quantities: non-negative decimals that fit the store's Decimal(38, 9): ≤ 29 integer and ≤ 9 fraction digits. */
const QUANTITY = /^\d{1,29}(\.\d{1,9})?$/
const MAX_ID = 256

/** A record that passed validation: its time as epoch ms. */
export interface ValidRecord {
  readonly ms: number
}

/**
 * Validates one record (CONTRACT §2). Returns a reason a person can act on, naming the field and the
 * value, or the event time in epoch ms when the record is valid. Pure; never throws.
 */
export function validateRecord(r: WireRecord): ValidRecord | string {
  if (typeof r !== 'object' || r === null) return 'record is not an object'
  if (typeof r.source !== 'string' || r.source === '') return 'source is empty'
  if (typeof r.event_id !== 'string' || r.event_id === '') return 'event_id is empty'
  if (r.event_id.length > MAX_ID) return `event_id is longer than ${MAX_ID} characters`
  if (typeof r.event_time !== 'string' || r.event_time === '') return 'event_time is empty'
  const ms = parseIsoTime(r.event_time)
  if (ms === undefined) {
    return `event_time "${clip(r.event_time)}" is not an ISO-8601 time with offset (e.g. 2026-10-01T12:00:00Z)`
  }
  if (!nonEmpty(r.device_id) && !nonEmpty(r.account_id) && !nonEmpty(r.subscription_id)) {
    return 'no owner id: device_id, account_id and subscription_id are all empty'
  }
  for (const f of ['device_id', 'account_id', 'subscription_id'] as const) {
    const v = r[f]
    if (v !== undefined && v !== null && typeof v !== 'string') return `${f} must be a string`
    if (typeof v === 'string' && v.length > MAX_ID) return `${f} is longer than ${MAX_ID} characters`
  }
  if (typeof r.metric !== 'string' || r.metric === '') return 'metric is empty'
  if (typeof r.quantity !== 'string' || !QUANTITY.test(r.quantity)) {
    const q = typeof r.quantity === 'string' ? `"${clip(r.quantity)}"` : String(r.quantity)
    return `quantity ${q} is not a non-negative decimal with at most 29 integer and 9 fraction digits`
  }
  if (r.dimensions !== undefined && r.dimensions !== null) {
    if (typeof r.dimensions !== 'object' || Array.isArray(r.dimensions)) return 'dimensions must be a map of strings'
    for (const k in r.dimensions) {
      if (typeof r.dimensions[k] !== 'string') return `dimension "${clip(k)}" must be a string`
    }
  }
  return { ms }
}

function nonEmpty(v: unknown): boolean {
  return typeof v === 'string' && v !== ''
}

function clip(s: string): string {
  return s.length > 60 ? s.slice(0, 57) + '...' : s
}
