/**
 * Session mediation: start / interim / stop records of one device session merge into billable records.
 *
 * Contract (pure: no timers, no I/O; the caller passes the clock):
 * - A record is a session event when it has the `id_dimension` dimension. Its kind is the `kind_dimension`
 *   dimension (values from `kinds`). Others are not absorbed and the caller sends them on unchanged.
 * - A session event the validate stage would reject (a negative or malformed quantity, an event_time without an
 *   offset, …) is not absorbed: it comes back with the validate stage's reason as `problem`, for the caller to
 *   reject with its own raw and origin, and its session goes on with the valid events. Absorbed, it would change
 *   the merged value (a negative delta subtracts) or the session's time with no reject, or get the whole merged
 *   session rejected under the raw of another message.
 * - The session key is (source, owner, session id), owner = device_id, else account_id, else subscription_id.
 * - Metric values merge per metric: `cumulative` keeps the value of the latest event (by event_time, ties by
 *   arrival: counters are running totals), `delta` adds them up. A repeated event_id inside a session is
 *   counted once (QoS 1 redelivery must not double a delta).
 * - A session closes on its stop event, or `idle_timeout_s` after its last event arrived (by the caller's
 *   clock, not event_time, so a device with a wrong clock cannot keep sessions open), or on `drain()`.
 * - At most `max_open_sessions` are open: a record that would open one more first closes the least recently
 *   active session (`session_close=max_open_sessions`; counted in `evicted`). Closing early, not refusing the new
 *   session nor dropping the old one, keeps every absorbed event billed while a flood of starts without stops
 *   cannot grow memory without bound; the victim is the session most likely dead (no event for longest). Should it
 *   send more events, they open a new session with the same event ids, which dedupe against the early close, as
 *   after an idle close: size the limit above the fleet's real concurrent sessions and it only meets floods.
 * - A closed session becomes one record per metric plus one `duration_metric` record (seconds from its first to
 *   its last event_time, unless the events report `duration_metric` themselves), all with event_time = the
 *   session's first event_time, event_id `session:<owner>:<session id>:<metric>`, the session's dimensions
 *   without the kind, plus `session_close` = stop | idle_timeout | max_open_sessions | shutdown and, when no start event was seen,
 *   `session_flag` = no_start. Event ids depend only on the key, so a stop arriving after an idle close
 *   dedupes against the first close instead of billing the session twice: session ids must be unique per owner.
 * - Each absorbed record may carry a `tag` (MQTT: the ack of its message); a closed session returns the tags of
 *   every record it absorbed, so the caller acknowledges inputs only once the merged records are stored.
 */
import BigImport from 'big.js'
import type { SessionOptions } from './config.js'
import type { WireRecord } from '../rating-core/record.js'
import { validateRecord } from '../rating-core/validate.js'

// big.js ships CommonJS types with `export =`; under NodeNext the default import is the constructor.
const Big = BigImport
type Big = InstanceType<typeof BigImport>

/** Why a session closed; written as its records' `session_close` dimension. */
export type SessionClose = 'stop' | 'idle_timeout' | 'max_open_sessions' | 'shutdown'

export interface ClosedSession<T> {
  readonly key: string
  readonly close: SessionClose
  /** The billable records, duration first, then metrics by name. */
  readonly records: WireRecord[]
  /** Tags of every absorbed record, in arrival order (duplicates included: their messages need acks too). */
  readonly tags: T[]
}

export interface PushResult<T> {
  /** False: not a session event, or one that cannot be merged (then `problem` says why); not absorbed, not held. */
  readonly absorbed: boolean
  /**
   * Set when the record is a session event that cannot be merged (an unknown kind, or a field the validate stage
   * rejects, with its reason): the caller rejects the record, with its raw and origin, instead of sending it on.
   */
  readonly problem?: string
  /** Sessions this record closed: the least recently active one when it opened one too many, its own on stop. */
  readonly closed: ClosedSession<T>[]
}

interface MetricState {
  value: Big
  /** event_time (ms) of the event the value came from; cumulative keeps the latest. */
  at: number
}

interface OpenSession<T> {
  key: string
  sessionId: string
  source: string
  owner: Pick<WireRecord, 'device_id' | 'account_id' | 'subscription_id'>
  ownerText: string
  started: boolean
  firstMs: number
  firstText: string
  lastMs: number
  lastSeen: number
  metrics: Map<string, MetricState>
  seen: Set<string>
  tags: T[]
  dimensions: Record<string, string>
  raw?: string
  origin?: string
}

/** Merges session events into billable records; see the file comment for the contract. */
export class SessionMerger<T = never> {
  /**
   * Open sessions, least recently active first: a session is moved to the end on each event, so the idle sweep
   * stops at the first one not due and the session to close at `max_open_sessions` is the first, both without a
   * scan of the whole table (it may hold 100,000 sessions and is swept every second).
   */
  private readonly sessions = new Map<string, OpenSession<T>>()
  private readonly idleMs: number
  /** The latest caller time seen: arrival times never go backwards, so the order above is also by lastSeen. */
  private clock = -Infinity
  private evictions = 0

  constructor(private readonly options: SessionOptions) {
    this.idleMs = options.idle_timeout_s * 1000
  }

  /** Sessions currently open. */
  get open(): number {
    return this.sessions.size
  }

  /** Sessions closed early because `max_open_sessions` were open, since construction. */
  get evicted(): number {
    return this.evictions
  }

  /** Feeds one record at caller time `nowMs`. */
  push(record: WireRecord, nowMs: number, tag?: T): PushResult<T> {
    const o = this.options
    const sessionId = record.dimensions?.[o.id_dimension]
    if (sessionId === undefined) return { absorbed: false, closed: [] }
    const kind = record.dimensions?.[o.kind_dimension]
    const k = o.kinds
    if (kind !== k.start && kind !== k.interim && kind !== k.stop) {
      return {
        absorbed: false,
        problem: `session event ${o.id_dimension}=${sessionId} has ${o.kind_dimension}=${kind === undefined ? '(missing)' : JSON.stringify(kind)}; expected ${k.start}, ${k.interim} or ${k.stop}`,
        closed: [],
      }
    }
    // The validate stage's own rules, so that an event is absorbed exactly when it would have been rated on its own;
    // on success the result is its event time in epoch ms.
    const at = validateRecord(record)
    if (typeof at === 'string') return { absorbed: false, problem: at, closed: [] }
    const value = new Big(record.quantity)

    const ownerText = ownerOf(record)
    // The id's own text (parts escaped): two sessions of one key are one session with one id, and two keys two ids.
    const key = `${record.source}\u0000${ownerText}:${idPart(sessionId)}`
    this.clock = Math.max(this.clock, nowMs)
    const closed: ClosedSession<T>[] = []
    let s = this.sessions.get(key)
    if (s) {
      // Move to the end: the most recently active.
      this.sessions.delete(key)
      this.sessions.set(key, s)
    } else {
      // A stop for an unknown session closes at once, so it does not count against the limit.
      if (kind !== k.stop && this.sessions.size >= o.max_open_sessions) {
        const oldest = this.sessions.values().next().value!
        this.evictions++
        closed.push(this.close(oldest, 'max_open_sessions'))
      }
      s = {
        key,
        sessionId,
        source: record.source,
        owner: {
          ...(record.device_id !== undefined && { device_id: record.device_id }),
          ...(record.account_id !== undefined && { account_id: record.account_id }),
          ...(record.subscription_id !== undefined && { subscription_id: record.subscription_id }),
        },
        ownerText,
        started: false,
        firstMs: at,
        firstText: record.event_time,
        lastMs: at,
        lastSeen: this.clock,
        metrics: new Map(),
        seen: new Set(),
        tags: [],
        dimensions: {},
      }
      this.sessions.set(key, s)
    }
    if (tag !== undefined) s.tags.push(tag)
    s.lastSeen = this.clock
    if (!s.seen.has(record.event_id)) {
      s.seen.add(record.event_id)
      if (kind === k.start) s.started = true
      if (at < s.firstMs) {
        s.firstMs = at
        s.firstText = record.event_time
      }
      if (at > s.lastMs) s.lastMs = at
      // Later events refine dimensions (e.g. a stop naming the final cell); the kind is per event, not per session.
      for (const [name, v] of Object.entries(record.dimensions ?? {})) if (name !== o.kind_dimension) s.dimensions[name] = v
      const m = s.metrics.get(record.metric)
      if (!m) s.metrics.set(record.metric, { value, at })
      else if (o.interim === 'delta') m.value = m.value.plus(value)
      else if (at >= m.at) {
        m.value = value
        m.at = at
      }
      if (record.raw !== undefined) s.raw = record.raw
      if (record.origin !== undefined) s.origin = record.origin
    }
    if (kind === k.stop) closed.push(this.close(s, 'stop'))
    return { absorbed: true, closed }
  }

  /** Closes sessions idle for `idle_timeout_s` at `nowMs` (inclusive), least recently active first. */
  expire(nowMs: number): ClosedSession<T>[] {
    const out: ClosedSession<T>[] = []
    for (const s of this.sessions.values()) {
      if (nowMs - s.lastSeen < this.idleMs) break // the rest arrived later
      out.push(this.close(s, 'idle_timeout')) // deleting the current entry keeps a Map iterator valid
    }
    return out
  }

  /** When the next idle close is due (ms, caller's clock), or undefined with no open session. */
  nextDeadline(): number | undefined {
    const first = this.sessions.values().next()
    return first.done ? undefined : first.value.lastSeen + this.idleMs
  }

  /**
   * Closes the open sessions (`session_close=shutdown`) whose tags `pick` accepts, every one without it: for
   * inputs that cannot be replayed. The others stay open.
   */
  drain(pick?: (tags: readonly T[]) => boolean): ClosedSession<T>[] {
    const out: ClosedSession<T>[] = []
    for (const s of this.sessions.values()) if (!pick || pick(s.tags)) out.push(this.close(s, 'shutdown')) // deleting the current entry keeps a Map iterator valid
    return out
  }

  /** Forgets every open session and returns their tags (their inputs will be redelivered). */
  discard(): T[] {
    const tags = [...this.sessions.values()].flatMap((s) => s.tags)
    this.sessions.clear()
    return tags
  }

  private close(s: OpenSession<T>, close: SessionClose): ClosedSession<T> {
    this.sessions.delete(s.key)
    const o = this.options
    const dimensions: Record<string, string> = { ...s.dimensions, session_close: close }
    if (!s.started) dimensions.session_flag = 'no_start'
    const base = (metric: string, quantity: string): WireRecord => {
      const r: WireRecord = {
        event_id: `session:${s.ownerText}:${idPart(s.sessionId)}:${idPart(metric)}`,
        source: s.source,
        event_time: s.firstText,
        ...s.owner,
        metric,
        quantity,
        dimensions: { ...dimensions },
      }
      if (s.raw !== undefined) r.raw = s.raw
      if (s.origin !== undefined) r.origin = s.origin
      return r
    }
    const records: WireRecord[] = []
    if (!s.metrics.has(o.duration_metric)) {
      records.push(base(o.duration_metric, new Big(s.lastMs - s.firstMs).div(1000).toFixed()))
    }
    for (const name of [...s.metrics.keys()].sort()) {
      records.push(base(name, s.metrics.get(name)!.value.toFixed()))
    }
    return { key: s.key, close, records, tags: s.tags }
  }
}

/**
 * A part of a closed session's event id with its separators escaped: `%` as `%25`, `:` as `%3A` and `=` as `%3D`, so
 * that no two sessions share an id. Unescaped, device `ph-1` with session `z:9` and device `ph-1:z` with session `9`
 * were both `session:ph-1:z:9:…`, and the second, another account's, was counted as a duplicate; and a device named
 * `account=x` would be account `x` (ownerOf). A part with none of them (most device and session ids) is unchanged,
 * and so is its id.
 */
function idPart(v: string): string {
  return /[%:=]/.test(v) ? v.replace(/%/g, '%25').replace(/:/g, '%3A').replace(/=/g, '%3D') : v
}

/**
 * The owner a session is keyed and named by: its device id, as it was; an account or subscription id marked as such,
 * so that device `x` and account `x` are two owners (each part escaped by idPart).
 */
function ownerOf(record: { device_id?: string | undefined; account_id?: string | undefined; subscription_id?: string | undefined }): string {
  if (record.device_id !== undefined) return idPart(record.device_id)
  if (record.account_id !== undefined) return 'account=' + idPart(record.account_id)
  return record.subscription_id !== undefined ? 'subscription=' + idPart(record.subscription_id) : ''
}
