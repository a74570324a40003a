/**
 * Catalog validation (CONTRACT §3). Reports every problem at once, each with the JSON path of
 * the offending field (`$.plans[0].charges[1].tiers[2].up_to`), so a person fixes a catalog in
 * one round trip instead of one error per `catalog apply`.
 *
 * Unknown fields are errors: a misspelt `free_unit` that is silently ignored bills a customer
 * for usage the catalog author meant to give away.
 */
import { ValidationError, type Problem } from '../common/errors.js'
import { isWellFormed, jsonMemberPath } from '../common/strings.js'
import { daysInMonth, parseIsoTime } from '../common/time.js'
import { STORE_INTEGER_DIGITS } from '../rating-core/decimal.js'
import type { AccountsDocument, Catalog } from './types.js'

type Obj = Record<string, unknown>

/** Plain decimal, optional minus; at most 18 fractional digits (checked separately for a clearer message). */
const DECIMAL_RE = /^-?\d+(\.\d+)?$/
const MAX_FRACTION_DIGITS = 18
/** A version's file name, percent-encoded, fits a file system's 255 bytes with its `.json`. */
const MAX_VERSION_NAME = 240
/** ISO-8601 date-time with an explicit offset; seconds and fraction optional. */
// Milliseconds at most: event times, catalog versions and the store compare milliseconds, so a finer effective_from took
// an event of 10:00:00.000 for one at or after 10:00:00.0001.
const ISO_WITH_OFFSET_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,3})?)?(Z|[+-](\d{2}):(\d{2}))$/
const CURRENCY_RE = /^[A-Z]{3}$/
const HHMM_RE = /^(\d{2}):(\d{2})$/

const AGGREGATIONS = ['sum', 'count', 'max', 'min', 'unique_count', 'latest', 'time_weighted_avg'] as const
const BILLING_PERIODS = ['month', 'quarter', 'year'] as const
const CHARGE_KINDS = ['recurring', 'one_time', 'usage'] as const
const MODELS = ['per_unit', 'graduated', 'volume', 'package', 'percentage', 'graduated_percentage', 'time_rated'] as const
const REVREC_PATTERNS = ['point_in_time', 'ratable', 'as_consumed'] as const
const REVREC_TRIGGERS = ['delivery', 'activation'] as const
const ROUNDING_MODES = ['up', 'down', 'half_even'] as const

const CHARGE_BASE_FIELDS = ['id', 'kind', 'description', 'revrec', 'ssp']
const USAGE_BASE_FIELDS = [...CHARGE_BASE_FIELDS, 'meter', 'model', 'minimum', 'maximum']
/** Model-specific fields of a usage charge; anything else on the charge is unknown. */
const MODEL_FIELDS: Record<(typeof MODELS)[number], string[]> = {
  per_unit: ['unit_price', 'free_units'],
  graduated: ['tiers', 'free_units'],
  volume: ['tiers', 'free_units'],
  package: ['package_size', 'package_price', 'free_units'],
  percentage: ['rate', 'fixed_fee_per_event', 'per_event_min', 'per_event_max', 'free_units'],
  graduated_percentage: ['tiers', 'free_units'],
  // time_rated, like percentage, prices each event on its own: its free allowance and the charge's clamp are consumed
  // in the order events are rated, so they decide which event pays, not what the period's events pay in all.
  time_rated: ['rates', 'max_cost_per_event', 'max_cost_strategy', 'rounding', 'free_units'],
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Exact comparison of two plain decimal strings (already matched DECIMAL_RE), without floats. */
export function compareDecimalStrings(a: string, b: string): number {
  const [ai, af] = splitDec(a)
  const [bi, bf] = splitDec(b)
  const width = Math.max(af.length, bf.length)
  const x = BigInt(ai + af.padEnd(width, '0'))
  const y = BigInt(bi + bf.padEnd(width, '0'))
  return x < y ? -1 : x > y ? 1 : 0
}

function splitDec(s: string): [string, string] {
  const dot = s.indexOf('.')
  return dot < 0 ? [s, ''] : [s.slice(0, dot), s.slice(dot + 1)]
}

function isoToMillis(s: string): number | null {
  const m = ISO_WITH_OFFSET_RE.exec(s)
  if (!m) return null
  const [, y, mo, d, h, mi, sec, , oh, om] = m
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = sec === undefined ? 0 : Number(sec)
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null
  // An impossible date (2026-02-30) is refused, for years 0000–0099 too (daysInMonth takes them as written).
  if (day > daysInMonth(year, month)) return null
  if (oh !== undefined && (Number(oh) > 23 || Number(om) > 59)) return null
  const t = Date.parse(s)
  return Number.isNaN(t) ? null : t
}

/**
 * What keeps `s` from the form a version's effective_from is written in, when the rest of it is a time: event
 * times and accounts take a space for the T, offsets without a colon and finer fractions, which an effective_from
 * (stored as written, compared to the millisecond) does not. Undefined when nothing so specific is wrong.
 */
function effectiveFromForm(s: string): string | undefined {
  const m = /^\d{4}-\d{2}-\d{2}([T ])\d{2}:\d{2}(?::\d{2}(?:\.(\d+))?)?(Z|[+-]\d{2}(?::?\d{2})?)$/.exec(s)
  if (m === null) return undefined
  const [, sep, frac, off] = m as unknown as [string, string, string | undefined, string]
  const why: string[] = []
  if (sep !== 'T') why.push('a "T" must join the date and the time')
  if (frac !== undefined && frac.length > 3) why.push(`at most 3 fraction digits (milliseconds), got ${frac.length}`)
  if (off !== 'Z' && !/^[+-]\d{2}:\d{2}$/.test(off)) why.push(`the offset must be Z or ±HH:MM, got "${off}"`)
  return why.length === 0 ? undefined : why.join('; ')
}

/** Minutes since local midnight for "HH:MM"; "24:00" only when `allow24`. */
function hhmm(s: string, allow24: boolean): number | null {
  const m = HHMM_RE.exec(s)
  if (!m) return null
  const h = Number(m[1])
  const mi = Number(m[2])
  if (h === 24 && mi === 0 && allow24) return 24 * 60
  if (h > 23 || mi > 59) return null
  return h * 60 + mi
}

class Checker {
  readonly problems: Problem[] = []

  add(path: string, message: string): void {
    this.problems.push({ path, message })
  }

  /** Reports fields of `o` not in `allowed`. */
  known(o: Obj, path: string, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.add(jsonMemberPath(path, k), `unknown field "${k}"`)
    }
  }

  obj(v: unknown, path: string): v is Obj {
    if (isObj(v)) return true
    this.add(path, `must be an object, got ${describe(v)}`)
    return false
  }

  arr(v: unknown, path: string): v is unknown[] {
    if (Array.isArray(v)) return true
    this.add(path, `must be an array, got ${describe(v)}`)
    return false
  }

  /**
   * A required, non-empty array of `items` (e.g. "tiers", one "tier"): true when `v` is an array whose
   * elements are to be checked (an empty one is reported), false when it is absent or not an array.
   */
  list(v: unknown, path: string, items: string, item: string): v is unknown[] {
    if (v === undefined) {
      this.add(path, `required (a non-empty array of ${items})`)
      return false
    }
    if (!this.arr(v, path)) return false
    if (v.length === 0) this.add(path, `must have at least one ${item}`)
    return true
  }

  /** Non-empty string; absent reported as required. */
  str(o: Obj, key: string, path: string, required = true): string | undefined {
    const v = o[key]
    if (v === undefined) {
      if (required) this.add(`${path}.${key}`, 'required')
      return undefined
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.add(`${path}.${key}`, `must be a non-empty string, got ${describe(v)}`)
      return undefined
    }
    return v
  }

  oneOf<T extends string>(o: Obj, key: string, path: string, values: readonly T[], required = true): T | undefined {
    const v = o[key]
    if (v === undefined) {
      if (required) this.add(`${path}.${key}`, `required (one of ${values.join(', ')})`)
      return undefined
    }
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.add(`${path}.${key}`, `must be one of ${values.join(', ')}, got ${describe(v)}`)
      return undefined
    }
    return v as T
  }

  /**
   * A decimal string. `nonNegative` for prices and quantities; `positive` where zero makes no
   * sense (package size, increments). Returns the string when valid.
   */
  dec(
    o: Obj,
    key: string,
    path: string,
    opts: { required?: boolean; nonNegative?: boolean; positive?: boolean } = {},
  ): string | undefined {
    const v = o[key]
    const p = `${path}.${key}`
    if (v === undefined) {
      if (opts.required) this.add(p, 'required (a decimal string)')
      return undefined
    }
    return this.decValue(v, p, opts)
  }

  decValue(v: unknown, p: string, opts: { nonNegative?: boolean; positive?: boolean } = {}): string | undefined {
    if (typeof v === 'number') {
      this.add(p, `must be a decimal string such as "${v}", not a JSON number (floats lose cents)`)
      return undefined
    }
    if (typeof v !== 'string' || !DECIMAL_RE.test(v)) {
      this.add(p, `must be a decimal string like "12.5", got ${describe(v)}`)
      return undefined
    }
    const [int, frac] = splitDec(v)
    if (frac.length > MAX_FRACTION_DIGITS) {
      this.add(p, `at most ${MAX_FRACTION_DIGITS} fractional digits, got ${frac.length}`)
      return undefined
    }
    // As the store holds amounts and quantities (Decimal(38, 9): 29 integer digits): a price past it can bill no unit,
    // and a decimal of more than 80 characters the pricer refused, rejecting every event of its charge's meter.
    const digits = int.replace(/^-/, '').replace(/^0+(?=\d)/, '').length
    if (digits > STORE_INTEGER_DIGITS) {
      this.add(p, `at most ${STORE_INTEGER_DIGITS} integer digits (what rated_usage holds), got ${digits}`)
      return undefined
    }
    if ((opts.nonNegative || opts.positive) && v.startsWith('-')) {
      this.add(p, `must not be negative, got "${v}"`)
      return undefined
    }
    if (opts.positive && compareDecimalStrings(v, '0') <= 0) {
      this.add(p, `must be greater than 0, got "${v}"`)
      return undefined
    }
    return v
  }

  /** Reports duplicate `id`s among `items` (each already checked to be an object). */
  uniqueIds(items: unknown[], path: string, what: string): void {
    const seen = new Map<string, number>()
    items.forEach((it, i) => {
      if (!isObj(it) || typeof it.id !== 'string') return
      const first = seen.get(it.id)
      if (first !== undefined) this.add(`${path}[${i}].id`, `duplicate ${what} id "${it.id}" (first at ${path}[${first}])`)
      else seen.set(it.id, i)
    })
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)
  if (typeof v === 'object') return 'an object'
  return `${typeof v} ${String(v)}`
}

interface ScheduleInfo {
  id: string
  path: string
  weekdays: number[]
  from: number
  to: number
}

/**
 * Validates a parsed catalog document (CONTRACT §3) and returns it typed.
 * Throws ValidationError('catalog', problems) listing every problem with its JSON path.
 */
export function validateCatalog(doc: unknown): Catalog {
  const c = new Checker()
  if (!c.obj(doc, '$')) throw new ValidationError('catalog', c.problems)
  c.known(doc, '$', ['version', 'effective_from', 'currency', 'meters', 'schedules', 'plans'])

  const version = c.str(doc, 'version', '$')
  if (version !== undefined) {
    // The version is its file's name (percent-encoded): a name the file system cannot hold failed the apply with exit 1.
    if (!isWellFormed(version)) c.add('$.version', 'holds a lone UTF-16 surrogate, which no file name can')
    else if (encodeURIComponent(version).length > MAX_VERSION_NAME) {
      c.add('$.version', `too long: at most ${MAX_VERSION_NAME} characters once percent-encoded for its file name, got ${encodeURIComponent(version).length}`)
    }
  }
  const eff = doc.effective_from
  if (eff === undefined) c.add('$.effective_from', 'required (ISO-8601 time with offset, e.g. 2026-01-01T00:00:00Z)')
  else if (typeof eff !== 'string' || isoToMillis(eff) === null) {
    const why = typeof eff === 'string' ? effectiveFromForm(eff) : undefined
    c.add('$.effective_from', `must be an ISO-8601 time with offset such as 2026-01-01T00:00:00Z, got ${describe(eff)}${why === undefined ? '' : `: ${why}`}`)
  }
  const cur = doc.currency
  if (cur === undefined) c.add('$.currency', 'required (ISO 4217 code, e.g. USD)')
  else if (typeof cur !== 'string' || !CURRENCY_RE.test(cur)) {
    c.add('$.currency', `must be three upper-case letters (ISO 4217), got ${describe(cur)}`)
  }

  // ---- meters
  const meters = new Map<string, Obj>()
  if (doc.meters === undefined) c.add('$.meters', 'required (an array, may be empty)')
  else if (c.arr(doc.meters, '$.meters')) {
    doc.meters.forEach((m, i) => {
      const p = `$.meters[${i}]`
      if (!c.obj(m, p)) return
      checkMeter(c, m, p)
      if (typeof m.id === 'string' && !meters.has(m.id)) meters.set(m.id, m)
    })
    c.uniqueIds(doc.meters, '$.meters', 'meter')
  }

  // ---- schedules
  const schedules = new Map<string, ScheduleInfo | null>()
  if (doc.schedules !== undefined && c.arr(doc.schedules, '$.schedules')) {
    doc.schedules.forEach((s, i) => {
      const p = `$.schedules[${i}]`
      if (!c.obj(s, p)) return
      const info = checkSchedule(c, s, p)
      // A schedule with problems of its own is still there: a rate naming it is not told it is missing (null: no
      // overlap check with it either).
      if (info === null && typeof s.id === 'string' && !schedules.has(s.id)) schedules.set(s.id, null)
      if (info && !schedules.has(info.id)) schedules.set(info.id, info)
    })
    c.uniqueIds(doc.schedules, '$.schedules', 'schedule')
  }

  // ---- plans
  if (doc.plans === undefined) c.add('$.plans', 'required (an array)')
  else if (c.arr(doc.plans, '$.plans')) {
    doc.plans.forEach((pl, i) => {
      const p = `$.plans[${i}]`
      if (!c.obj(pl, p)) return
      c.known(pl, p, ['id', 'description', 'billing_period', 'minimum_commitment', 'charges'])
      c.str(pl, 'id', p)
      c.str(pl, 'description', p, false)
      c.oneOf(pl, 'billing_period', p, BILLING_PERIODS)
      c.dec(pl, 'minimum_commitment', p, { nonNegative: true })
      if (pl.charges === undefined) c.add(`${p}.charges`, 'required (an array)')
      else if (c.arr(pl.charges, `${p}.charges`)) {
        pl.charges.forEach((ch, j) => {
          const cp = `${p}.charges[${j}]`
          if (c.obj(ch, cp)) checkCharge(c, ch, cp, meters, schedules)
        })
        c.uniqueIds(pl.charges, `${p}.charges`, 'charge')
      }
    })
    c.uniqueIds(doc.plans, '$.plans', 'plan')
  }

  if (c.problems.length > 0) throw new ValidationError('catalog', c.problems)
  return doc as unknown as Catalog
}

function checkMeter(c: Checker, m: Obj, p: string): void {
  c.known(m, p, ['id', 'description', 'metric', 'aggregation', 'dimension', 'scale', 'filter', 'group_by'])
  c.str(m, 'id', p)
  c.str(m, 'description', p, false)
  c.str(m, 'metric', p)
  const agg = c.oneOf(m, 'aggregation', p, AGGREGATIONS)
  if (agg === 'unique_count') {
    if (m.dimension === undefined) c.add(`${p}.dimension`, 'required for aggregation unique_count (the dimension whose distinct values are counted)')
    else c.str(m, 'dimension', p)
  } else if (m.dimension !== undefined && agg !== undefined) {
    c.add(`${p}.dimension`, `only allowed with aggregation unique_count, not ${agg}`)
  }
  c.dec(m, 'scale', p, { positive: true })
  if (m.filter !== undefined && c.obj(m.filter, `${p}.filter`)) {
    for (const [k, v] of Object.entries(m.filter)) {
      if (typeof v !== 'string') c.add(jsonMemberPath(`${p}.filter`, k), `must be a string (dimension values are strings), got ${describe(v)}`)
    }
  }
  if (m.group_by !== undefined && c.arr(m.group_by, `${p}.group_by`)) {
    const seen = new Set<string>()
    m.group_by.forEach((g, k) => {
      if (typeof g !== 'string' || g.length === 0) c.add(`${p}.group_by[${k}]`, `must be a dimension name, got ${describe(g)}`)
      else if (seen.has(g)) c.add(`${p}.group_by[${k}]`, `duplicate dimension "${g}"`)
      else seen.add(g)
    })
  }
}

function checkSchedule(c: Checker, s: Obj, p: string): ScheduleInfo | null {
  c.known(s, p, ['id', 'description', 'weekdays', 'from', 'to'])
  const id = c.str(s, 'id', p)
  c.str(s, 'description', p, false)
  const weekdays: number[] = []
  let ok = true
  if (s.weekdays === undefined) {
    c.add(`${p}.weekdays`, 'required (ISO weekdays, 1 = Monday … 7 = Sunday)')
    ok = false
  } else if (c.arr(s.weekdays, `${p}.weekdays`)) {
    if (s.weekdays.length === 0) {
      c.add(`${p}.weekdays`, 'must list at least one weekday')
      ok = false
    }
    s.weekdays.forEach((w, k) => {
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 1 || w > 7) {
        c.add(`${p}.weekdays[${k}]`, `must be an ISO weekday 1..7 (1 = Monday), got ${describe(w)}`)
        ok = false
      } else if (weekdays.includes(w)) c.add(`${p}.weekdays[${k}]`, `duplicate weekday ${w}`)
      else weekdays.push(w)
    })
  } else ok = false
  let from: number | null = null
  let to: number | null = null
  if (s.from === undefined) c.add(`${p}.from`, 'required ("HH:MM", inclusive)')
  else if (typeof s.from !== 'string' || (from = hhmm(s.from, false)) === null) {
    c.add(`${p}.from`, `must be "HH:MM" between 00:00 and 23:59, got ${describe(s.from)}`)
  }
  if (s.to === undefined) c.add(`${p}.to`, 'required ("HH:MM", exclusive; "24:00" = end of day)')
  else if (typeof s.to !== 'string' || (to = hhmm(s.to, true)) === null) {
    c.add(`${p}.to`, `must be "HH:MM" between 00:01 and 24:00, got ${describe(s.to)}`)
  }
  if (from !== null && to !== null && from >= to) {
    c.add(`${p}.to`, `must be after from (${String(s.from)}); a window past midnight is two schedules`)
    ok = false
  }
  if (!ok || id === undefined || from === null || to === null) return null
  return { id, path: p, weekdays, from, to }
}

function checkRevrec(c: Checker, r: unknown, p: string): void {
  if (!c.obj(r, p)) return
  c.known(r, p, ['pattern', 'trigger'])
  c.oneOf(r, 'pattern', p, REVREC_PATTERNS)
  c.oneOf(r, 'trigger', p, REVREC_TRIGGERS, false)
}

function checkCharge(c: Checker, ch: Obj, p: string, meters: Map<string, Obj>, schedules: Map<string, ScheduleInfo | null>): void {
  c.str(ch, 'id', p)
  c.str(ch, 'description', p, false)
  if (ch.revrec !== undefined) checkRevrec(c, ch.revrec, `${p}.revrec`)
  c.dec(ch, 'ssp', p, { nonNegative: true })
  const kind = c.oneOf(ch, 'kind', p, CHARGE_KINDS)
  if (kind === undefined) return
  if (kind === 'recurring') {
    c.known(ch, p, [...CHARGE_BASE_FIELDS, 'amount', 'billing', 'proration'])
    c.dec(ch, 'amount', p, { required: true, nonNegative: true })
    c.oneOf(ch, 'billing', p, ['in_advance', 'in_arrears'] as const)
    c.oneOf(ch, 'proration', p, ['daily', 'none'] as const)
    return
  }
  if (kind === 'one_time') {
    c.known(ch, p, [...CHARGE_BASE_FIELDS, 'amount'])
    c.dec(ch, 'amount', p, { required: true, nonNegative: true })
    return
  }

  // usage
  const meterId = c.str(ch, 'meter', p)
  const meter = meterId === undefined ? undefined : meters.get(meterId)
  if (meterId !== undefined && meter === undefined) c.add(`${p}.meter`, `no meter with id "${meterId}" in $.meters`)
  const model = c.oneOf(ch, 'model', p, MODELS)
  if (model === undefined) {
    c.known(ch, p, [...USAGE_BASE_FIELDS, ...new Set(Object.values(MODEL_FIELDS).flat())])
    return
  }
  c.known(ch, p, [...USAGE_BASE_FIELDS, ...MODEL_FIELDS[model]])
  const minimum = c.dec(ch, 'minimum', p, { nonNegative: true })
  const maximum = c.dec(ch, 'maximum', p, { nonNegative: true })
  if (minimum !== undefined && maximum !== undefined && compareDecimalStrings(minimum, maximum) > 0) {
    c.add(`${p}.minimum`, `must not exceed maximum (${maximum}), got "${minimum}"`)
  }
  if (MODEL_FIELDS[model].includes('free_units')) c.dec(ch, 'free_units', p, { nonNegative: true })

  // percentage and time_rated price each event's own quantity; the period quantity shown on
  // the invoice is their sum, which only means something when the meter sums.
  if ((model === 'percentage' || model === 'time_rated') && meter !== undefined && meter.aggregation !== undefined && meter.aggregation !== 'sum') {
    c.add(`${p}.meter`, `model ${model} prices each event's value and needs a meter with aggregation "sum", but "${meterId}" uses "${String(meter.aggregation)}"`)
  }

  switch (model) {
    case 'per_unit':
      c.dec(ch, 'unit_price', p, { required: true, nonNegative: true })
      break
    case 'graduated':
    case 'volume':
      checkTiers(c, ch, p, 'unit_price')
      break
    case 'graduated_percentage':
      checkTiers(c, ch, p, 'rate')
      break
    case 'package':
      c.dec(ch, 'package_size', p, { required: true, positive: true })
      c.dec(ch, 'package_price', p, { required: true, nonNegative: true })
      break
    case 'percentage': {
      c.dec(ch, 'rate', p, { required: true, nonNegative: true })
      c.dec(ch, 'fixed_fee_per_event', p, { nonNegative: true })
      const lo = c.dec(ch, 'per_event_min', p, { nonNegative: true })
      const hi = c.dec(ch, 'per_event_max', p, { nonNegative: true })
      if (lo !== undefined && hi !== undefined && compareDecimalStrings(lo, hi) > 0) {
        c.add(`${p}.per_event_min`, `must not exceed per_event_max (${hi}), got "${lo}"`)
      }
      break
    }
    case 'time_rated':
      checkTimeRated(c, ch, p, schedules)
      break
  }
}

function checkTiers(c: Checker, ch: Obj, p: string, priceField: 'unit_price' | 'rate'): void {
  const tp = `${p}.tiers`
  if (!c.list(ch.tiers, tp, 'tiers', 'tier')) return
  let prev: string | undefined
  const last = ch.tiers.length - 1
  ch.tiers.forEach((t, k) => {
    const p2 = `${tp}[${k}]`
    if (!c.obj(t, p2)) return
    c.known(t, p2, ['up_to', priceField, 'flat_fee'])
    if (!('up_to' in t)) c.add(`${p2}.up_to`, k === last ? 'required (null for the last, unbounded tier)' : 'required')
    else if (t.up_to === null) {
      if (k !== last) c.add(`${p2}.up_to`, 'only the last tier may be unbounded (null)')
    } else {
      const up = c.decValue(t.up_to, `${p2}.up_to`, { nonNegative: true })
      if (up !== undefined) {
        if (prev !== undefined && compareDecimalStrings(up, prev) <= 0) {
          c.add(`${p2}.up_to`, `tiers must ascend: "${up}" is not above the previous tier's up_to "${prev}"`)
        }
        prev = up
      }
      if (k === last) c.add(`${p2}.up_to`, 'the last tier must be unbounded (up_to: null), or usage above it has no price')
    }
    c.dec(t, priceField, p2, { nonNegative: true })
    c.dec(t, 'flat_fee', p2, { nonNegative: true })
    if (t[priceField] === undefined && t.flat_fee === undefined) {
      c.add(p2, `a tier needs ${priceField} or flat_fee (or both)`)
    }
  })
}

function checkTimeRated(c: Checker, ch: Obj, p: string, schedules: Map<string, ScheduleInfo | null>): void {
  c.dec(ch, 'max_cost_per_event', p, { nonNegative: true })
  if (ch.max_cost_strategy !== undefined) {
    c.oneOf(ch, 'max_cost_strategy', p, ['free'] as const)
    if (ch.max_cost_per_event === undefined) c.add(`${p}.max_cost_strategy`, 'needs max_cost_per_event')
  }
  if (ch.rounding !== undefined && c.obj(ch.rounding, `${p}.rounding`)) {
    const r = ch.rounding
    const rp = `${p}.rounding`
    c.known(r, rp, ['decimals', 'mode'])
    if (r.decimals === undefined) c.add(`${rp}.decimals`, 'required (integer 0..9)')
    else if (typeof r.decimals !== 'number' || !Number.isInteger(r.decimals) || r.decimals < 0 || r.decimals > 9) {
      c.add(`${rp}.decimals`, `must be an integer 0..9, got ${describe(r.decimals)}`)
    }
    c.oneOf(r, 'mode', rp, ROUNDING_MODES)
  }
  const rp = `${p}.rates`
  if (!c.list(ch.rates, rp, 'rates', 'rate')) return
  const used: ScheduleInfo[] = []
  const seen = new Map<string, number>()
  ch.rates.forEach((rate, k) => {
    const p2 = `${rp}[${k}]`
    if (!c.obj(rate, p2)) return
    c.known(rate, p2, ['schedule', 'connect_fee', 'steps'])
    const sid = c.str(rate, 'schedule', p2)
    if (sid !== undefined) {
      const first = seen.get(sid)
      if (first !== undefined) c.add(`${p2}.schedule`, `schedule "${sid}" already has a rate at ${rp}[${first}]`)
      else {
        seen.set(sid, k)
        const s = schedules.get(sid)
        if (s === undefined) c.add(`${p2}.schedule`, `no schedule with id "${sid}" in $.schedules`)
        else if (s !== null) {
          for (const o of used) {
            const day = s.weekdays.find((w) => o.weekdays.includes(w))
            if (day !== undefined && s.from < o.to && o.from < s.to) {
              c.add(`${p2}.schedule`, `schedule "${sid}" overlaps "${o.id}" (weekday ${day}); a moment must have one rate`)
            }
          }
          used.push(s)
        }
      }
    }
    c.dec(rate, 'connect_fee', p2, { nonNegative: true })
    const sp = `${p2}.steps`
    if (!c.list(rate.steps, sp, 'steps', 'step')) return
    let prev: string | undefined
    rate.steps.forEach((st, j) => {
      const p3 = `${sp}[${j}]`
      if (!c.obj(st, p3)) return
      c.known(st, p3, ['from', 'unit_price', 'per', 'increment'])
      const from = c.dec(st, 'from', p3, { required: true, nonNegative: true })
      if (from !== undefined) {
        if (j === 0 && compareDecimalStrings(from, '0') !== 0) c.add(`${p3}.from`, `the first step must start at "0", got "${from}"`)
        if (prev !== undefined && compareDecimalStrings(from, prev) <= 0) {
          c.add(`${p3}.from`, `steps must ascend: "${from}" is not after the previous step's from "${prev}"`)
        }
        prev = from
      }
      c.dec(st, 'unit_price', p3, { required: true, nonNegative: true })
      c.dec(st, 'per', p3, { required: true, positive: true })
      c.dec(st, 'increment', p3, { required: true, positive: true })
    })
  })
}

/**
 * Warnings, by JSON path, for a version `next` about to join the stored versions `stored` (it is not among them),
 * given the stored accounts. Not problems of the file, but each leaves usage priced in a way that is found out late:
 * - a plan that a stored subscription is on and `next` lacks, while `next` is in force during the subscription:
 *   guiding holds that usage (nothing prices it), and no later version can price it, since each prices its own time
 *   only; moving the subscription to a plan of `next` (`accounts apply`) releases it.
 * - a plan whose billing_period differs in the version next to `next` in time (the one before it; for an earliest
 *   version, the one after): the billing period in progress at the change is cut in two parts with one period_start,
 *   each with its own running total (free units, flat fees and minimums in each).
 */
export function versionWarnings(stored: readonly Catalog[], next: Catalog, accounts: AccountsDocument): Problem[] {
  const from = Date.parse(next.effective_from)
  let before: Catalog | undefined
  let after: Catalog | undefined
  for (const c of stored) {
    const t = Date.parse(c.effective_from)
    if (t < from && (before === undefined || t > Date.parse(before.effective_from))) before = c
    if (t > from && (after === undefined || t < Date.parse(after.effective_from))) after = c
  }
  const to = after === undefined ? Infinity : Date.parse(after.effective_from)
  const out: Problem[] = []
  const plans = new Set(next.plans.map((p) => p.id))
  const onMissing = new Map<string, string[]>()
  for (const customer of accounts.customers) {
    for (const account of customer.accounts) {
      for (const sub of account.subscriptions) {
        if (plans.has(sub.plan)) continue
        const start = parseIsoTime(sub.start) ?? -Infinity
        const end = sub.end == null ? Infinity : (parseIsoTime(sub.end) ?? Infinity)
        if (start >= to || end <= from) continue
        const list = onMissing.get(sub.plan) ?? []
        list.push(`"${sub.id}" (account "${account.id}")`)
        onMissing.set(sub.plan, list)
      }
    }
  }
  for (const [plan, subs] of onMissing) {
    const named = subs.length <= 5 ? subs.join(', ') : `${subs.slice(0, 5).join(', ')} and ${subs.length - 5} more`
    const span = after === undefined ? `from ${next.effective_from}` : `from ${next.effective_from} to ${after.effective_from}`
    out.push({
      path: '$.plans',
      message: `plan "${plan}" is not in version "${next.version}", and subscription${subs.length === 1 ? '' : 's'} ${named} ${subs.length === 1 ? 'is' : 'are'} on it: their usage ${span} is held, as nothing prices it, and no other version can (each prices its own time); moving them to a plan of this version (accounts apply) releases it`,
    })
  }
  const neighbour = before ?? after
  if (neighbour !== undefined) {
    const [early, late] = before !== undefined ? [before, next] : [next, after!]
    next.plans.forEach((p, i) => {
      const other = neighbour.plans.find((q) => q.id === p.id)
      if (other === undefined || other.billing_period === p.billing_period) return
      const [a, b] = before !== undefined ? [other, p] : [p, other]
      out.push({
        path: `$.plans[${i}].billing_period`,
        message: `plan "${p.id}" is billed by ${a.billing_period} in version "${early.version}" and by ${b.billing_period} in version "${late.version}" from ${late.effective_from}: a billing period in progress then is cut in two parts with one period_start, each priced on its own (free units, flat fees and minimums in each); give such a change an effective_from at the start of the accounts' billing periods`,
      })
    })
  }
  return out
}

/**
 * Warnings, by JSON path, for each time_rated charge of a valid catalog whose rates leave a time of the week uncovered:
 * a session starting there cannot be priced and is that event's reject, found only as usage comes (and a version cannot
 * be back-dated to fix it). Not a problem of the file: CONTRACT §3.3's own example prices the day schedule alone.
 */
export function timeRatedGaps(catalog: Catalog): Problem[] {
  const byId = new Map((catalog.schedules ?? []).map((x) => [x.id, x]))
  const out: Problem[] = []
  catalog.plans.forEach((plan, i) =>
    plan.charges.forEach((ch, j) => {
      if (ch.kind !== 'usage' || ch.model !== 'time_rated') return
      const used: Array<Pick<ScheduleInfo, 'weekdays' | 'from' | 'to'>> = []
      for (const r of ch.rates) {
        const x = byId.get(r.schedule)
        if (x) used.push({ weekdays: x.weekdays, from: hhmm(x.from, false) ?? 0, to: hhmm(x.to, true) ?? 24 * 60 })
      }
      const gaps = uncoveredWeek(used)
      if (gaps.length > 0) {
        out.push({
          path: `$.plans[${i}].charges[${j}].rates`,
          message: `no rate covers ${gaps.join(', ')} (in the account's time zone): a session starting then cannot be priced and is rejected; a rate with unit_price "0" makes a time free`,
        })
      }
    }),
  )
  return out
}

/** The stretches of the week no schedule of `used` covers, as "weekday 1 07:00–08:00" (ISO weekday, local time). */
function uncoveredWeek(used: ReadonlyArray<Pick<ScheduleInfo, 'weekdays' | 'from' | 'to'>>): string[] {
  const clock = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`
  const gaps: string[] = []
  for (let day = 1; day <= 7; day++) {
    const spans = used.filter((s) => s.weekdays.includes(day)).sort((a, b) => a.from - b.from)
    let at = 0
    for (const s of spans) {
      if (s.from > at) gaps.push(`weekday ${day} ${clock(at)}–${clock(s.from)}`)
      at = Math.max(at, s.to)
    }
    if (at < 24 * 60) gaps.push(`weekday ${day} ${clock(at)}–${clock(24 * 60)}`)
  }
  return gaps
}

// ---- version history --------------------------------------------------------------------

/** Key-sorted JSON, so two catalogs that differ only in key order compare equal. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (isObj(v)) {
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(',')}}`
  }
  return JSON.stringify(v)
}

/**
 * Checks that `next` may join the stored versions `existing` (each already validated), and says where it goes.
 *
 * - Same version id, same content (ignoring key order): `unchanged` — re-applying a file is harmless.
 * - Same version id, different content: a problem. A version id names prices that events were
 *   rated with; changing them in place would make re-rating and audits disagree with the past.
 * - New version id effective strictly after every stored version's: `latest`. It prices events from its
 *   effective_from on; usage rated there already stays on the version that rated it.
 * - New version id effective strictly before every stored version's: `earliest`. It prices events up to the
 *   earliest stored version's effective_from, where no usage was ever rated (no version was in force: such events
 *   are held), so it changes no price: it lets usage older than the first catalog be released.
 * - Anything in between: a problem. A version between stored ones would change the price of periods that may
 *   already be invoiced (corrections go through `rerate --catalog-version`).
 *
 * Throws ValidationError('catalog', problems).
 */
export function validateCatalogVersionOrder(existing: Catalog[], next: Catalog): 'latest' | 'earliest' | 'unchanged' {
  const same = existing.find((e) => e.version === next.version)
  if (same !== undefined) {
    if (canonicalJson(same) === canonicalJson(next)) return 'unchanged'
    throw new ValidationError('catalog', [
      {
        path: '$.version',
        message: `version "${next.version}" is already stored with different content; give the changed catalog a new version id`,
      },
    ])
  }
  const t = Date.parse(next.effective_from)
  let latest: Catalog | undefined
  let earliest: Catalog | undefined
  for (const e of existing) {
    const from = Date.parse(e.effective_from)
    if (latest === undefined || from > Date.parse(latest.effective_from)) latest = e
    if (earliest === undefined || from < Date.parse(earliest.effective_from)) earliest = e
  }
  if (latest === undefined || t > Date.parse(latest.effective_from)) return 'latest'
  if (t < Date.parse(earliest!.effective_from)) return 'earliest'
  throw new ValidationError('catalog', [
    {
      path: '$.effective_from',
      message:
        `must be after ${latest.effective_from}, the effective_from of the latest stored version "${latest.version}", or before ` +
        `${earliest!.effective_from}, that of the earliest "${earliest!.version}" (no usage is rated before it): a version between ` +
        'stored ones would change the prices of usage already rated (versions are append-only)',
    },
  ])
}
