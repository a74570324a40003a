/**
 * Turns decoded input fields into WireRecords: the canonical shape (CONTRACT §2), or a configured RecordMapping
 * for vendor shapes. Shared by the MQTT payload decoder and the syslog body parser, which differ only in how a
 * field is looked up (`get`).
 *
 * Contract: every input yields at least one item; something that cannot become a record is a reject naming the
 * field and the origin. Only structure is checked here (presence, types); whether a quantity is a valid decimal or
 * a time is valid is the pipeline's validate stage's job, so such values pass through as they came.
 */
import type { RecordMapping } from './config.js'
import type { CanonicalRecord, WireRecord } from '../rating-core/record.js'
import { isWellFormed } from '../common/strings.js'
import { contentEventId, inexactNumber, inexactQuantity, outOfRangeNumber, quantityText, reject, type WireItem } from './wire.js'

export interface MappingContext {
  readonly source: string
  /** The input as kept in `raw` (also the content hash input). */
  readonly raw: string
  readonly origin: string
  /** event_time when the input has none of its own (the syslog timestamp). */
  readonly defaultTime?: string
  /** device_id when the input names no owner (MQTT topic level, syslog HOSTNAME when enabled). */
  readonly defaultDeviceId?: string
  /**
   * True when `raw` holds the default device already (a syslog message's HOSTNAME): the content id then covers it as
   * it always did. An MQTT topic is outside the payload, and is added to the content id (contentEventId).
   */
  readonly defaultDeviceInRaw?: boolean
  /** Position of this record in an input holding several (JSON array); part of the content hash. */
  readonly position?: number
}

/** A record's fields before owner/id/time defaults are applied: the canonical record, id and time optional, no source. */
export type PartialRecord = Omit<CanonicalRecord, 'event_id' | 'event_time' | 'source'> &
  Partial<Pick<CanonicalRecord, 'event_id' | 'event_time'>>

/**
 * Applies defaults (owner, time, content-hash event_id) and the presence checks every record needs.
 * Returns a reject naming the missing part when the record cannot be completed.
 */
export function completeRecord(p: PartialRecord, ctx: MappingContext): WireItem {
  const broken = illFormedText(p)
  if (broken !== undefined) return reject(ctx.source, ctx.raw, broken, ctx.origin)
  const r: WireRecord = {
    event_id: p.event_id ?? '',
    source: ctx.source,
    event_time: '',
    metric: p.metric,
    quantity: p.quantity,
    raw: ctx.raw,
    origin: ctx.origin,
  }
  const time = p.event_time ?? ctx.defaultTime
  if (time === undefined) return reject(ctx.source, ctx.raw, 'no event_time, and the input carries no timestamp of its own', ctx.origin)
  r.event_time = time
  if (p.device_id !== undefined) r.device_id = p.device_id
  if (p.account_id !== undefined) r.account_id = p.account_id
  if (p.subscription_id !== undefined) r.subscription_id = p.subscription_id
  // True when the owner is a device given from outside the input (an MQTT topic's; a syslog HOSTNAME is in the input).
  let outsideDevice = false
  if (r.device_id === undefined && r.account_id === undefined && r.subscription_id === undefined) {
    if (ctx.defaultDeviceId === undefined) {
      return reject(ctx.source, ctx.raw, 'no owner: one of device_id, account_id, subscription_id is required', ctx.origin)
    }
    r.device_id = ctx.defaultDeviceId
    outsideDevice = ctx.defaultDeviceInRaw !== true
  }
  // After the owner: a device given from outside the input (an MQTT topic's) is part of what the content id covers.
  if (p.event_id === undefined) r.event_id = contentEventId(ctx.source, ctx.raw, p.metric, ctx.position, outsideDevice ? r.device_id : undefined)
  if (p.dimensions && Object.keys(p.dimensions).length > 0) r.dimensions = p.dimensions
  return { record: r }
}

const LONE_SURROGATE = 'holds a lone UTF-16 surrogate (a \\ud800–\\udfff escape with no pair), which UTF-8 cannot carry'

/**
 * What is wrong with a record whose text holds a lone UTF-16 surrogate, or undefined. JSON may write one (`"e\ud800"`),
 * and no UTF-8 can: msgpack turned each into U+FFFD on the way to the rater, so ids `e\ud800` and `e\ud801` became one
 * id, and the second event was counted a duplicate of the first, never billed.
 */
function illFormedText(p: PartialRecord): string | undefined {
  for (const k of ['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric', 'quantity'] as const) {
    const v = p[k]
    if (typeof v === 'string' && !isWellFormed(v)) return `${k} ${LONE_SURROGATE}`
  }
  for (const k in p.dimensions ?? {}) {
    if (!isWellFormed(k) || !isWellFormed(p.dimensions![k]!)) return `dimension ${JSON.stringify(k)} ${LONE_SURROGATE}`
  }
  return undefined
}

/**
 * A field value as text: strings as they are, numbers and booleans printed; anything else is a type error, and so is a
 * number no reader keeps exactly (inexactNumber: an id 1234567890123456789 read as …800 merged events).
 */
function scalar(v: unknown): string | undefined | { error: string } {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return v
  const inexact = inexactNumber(v)
  if (inexact !== undefined) return { error: inexact }
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  return { error: Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v }
}

const HAS_ZONE = /(Z|[+-]\d{2}:?\d{2})$/i

/** `+0200` → `+02:00`, `Z` stays. */
function normaliseOffset(z: string): string | undefined {
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(z.trim())
  if (m) return `${m[1]}${m[2]}:${m[3]}`
  return /^z$/i.test(z.trim()) ? 'Z' : undefined
}

function mappedTime(get: (f: string) => unknown, m: RecordMapping): string | undefined | { error: string } {
  if (m.event_time === undefined) return undefined
  const fields = typeof m.event_time === 'string' ? [m.event_time] : m.event_time
  const parts: string[] = []
  for (const f of fields) {
    const v = scalar(get(f))
    if (v === undefined) return parts.length === 0 ? undefined : { error: `time field ${f} is missing` }
    if (typeof v !== 'string') return { error: `time field ${f} must be a string or number, got ${v.error}` }
    parts.push(v.trim())
  }
  const text = parts.join('T')
  if (m.time_format !== 'iso') {
    if (!/^\d+(\.\d+)?$/.test(text)) return { error: `time field ${fields.join('+')} must be a ${m.time_format} number, got ${JSON.stringify(text)}` }
    const ms = Number(text) * (m.time_format === 'unix_s' ? 1000 : 1)
    const d = new Date(ms)
    if (Number.isNaN(d.getTime())) return { error: `time field ${fields.join('+')} is out of range: ${text}` }
    return d.toISOString()
  }
  if (HAS_ZONE.test(text)) return text
  let zone = m.time_zone
  if (m.time_zone_field !== undefined) {
    const z = scalar(get(m.time_zone_field))
    if (typeof z === 'string' && z.trim() !== '') {
      const n = normaliseOffset(z)
      if (n === undefined) return { error: `zone field ${m.time_zone_field} must be an offset like +0200, got ${JSON.stringify(z)}` }
      zone = n
    }
  }
  return `${text}${normaliseOffset(zone) ?? zone}`
}

/**
 * Maps one input (fields reachable through `get`) to one record per configured metric whose quantity field is
 * present. event_id is `<event_id field>:<metric>` so the records of one input do not dedupe each other, or a
 * content hash over (source, raw, metric) when the mapping names no id field or the input lacks it.
 */
export function applyMapping(get: (field: string) => unknown, m: RecordMapping, ctx: MappingContext): WireItem[] {
  const fail = (reason: string): WireItem[] => [reject(ctx.source, ctx.raw, reason, ctx.origin)]
  const time = mappedTime(get, m)
  if (typeof time === 'object') return fail(time.error)
  const owner: Pick<PartialRecord, 'device_id' | 'account_id' | 'subscription_id'> = {}
  for (const k of ['device_id', 'account_id', 'subscription_id'] as const) {
    const f = m[k]
    if (f === undefined) continue
    const v = scalar(get(f))
    if (typeof v === 'object') return fail(`${k} field ${f} must be a string or number, got ${v.error}`)
    if (v !== undefined && v !== '') owner[k] = v
  }
  const dimensions: Record<string, string> = {}
  for (const [name, f] of Object.entries(m.dimensions)) {
    const v = scalar(get(f))
    if (typeof v === 'object') return fail(`dimension ${name} field ${f} must be a string or number, got ${v.error}`)
    if (v !== undefined) dimensions[name] = v
  }
  let id: string | undefined
  if (m.event_id !== undefined) {
    const v = scalar(get(m.event_id))
    if (typeof v === 'object') return fail(`event_id field ${m.event_id} must be a string or number, got ${v.error}`)
    if (v !== undefined && v !== '') id = v
  }
  const out: WireItem[] = []
  for (const { metric, quantity } of m.metrics) {
    const raw = get(quantity)
    if (raw === undefined || raw === null || raw === '') continue
    const q = quantityText(raw)
    if (q === undefined) return fail(`quantity field ${quantity} (metric ${metric}) must be a decimal string or number, got ${outOfRangeNumber(raw) ?? (typeof raw === 'object' ? 'an object' : typeof raw)}`)
    const inexact = inexactQuantity(raw)
    if (inexact !== undefined) return fail(`quantity field ${quantity} (metric ${metric}): ${inexact}`)
    out.push(
      completeRecord(
        {
          ...(id !== undefined && { event_id: `${id}:${metric}` }),
          ...(time !== undefined && { event_time: time }),
          ...owner,
          metric,
          quantity: q,
          dimensions: { ...dimensions },
        },
        ctx,
      ),
    )
  }
  if (out.length === 0) {
    return fail(`none of the mapped quantity fields is present (${m.metrics.map((x) => x.quantity).join(', ')})`)
  }
  return out
}

/** Looks up a dot path (`stats.tx`) in a decoded JSON/msgpack value. */
export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined
    if (!Object.prototype.hasOwnProperty.call(cur, part)) return undefined
    cur = (cur as Record<string, unknown>)[part]
  }
  return cur
}
