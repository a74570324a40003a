import { hostname } from 'node:os'
import { jetstream } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import { ErrorCode, HeldByAnotherError, RateflowError } from '../common/errors.js'
import { redactUrl } from '../common/redact.js'
import { processIdentity, processLive } from './data-dir-lock.js'

/** The JetStream key-value bucket of the lease, and its key: one rater per USAGE stream. */
export const LEASE_BUCKET = 'rateflow_leases'
export const LEASE_KEY = 'rater'

/** Who holds the lease, as stored in it. */
export interface LeaseHolder {
  readonly host: string
  readonly pid: number
  readonly dataDir: string
  /** When this holder took the lease (ISO-8601 UTC). */
  readonly since: string
  /** The holder process's start, boot and pid namespace (processIdentity), where known: its pid may be another's now. */
  readonly start?: string
  readonly boot?: string
  readonly pidns?: string
}

export interface LeaseOptions {
  /** A lease not renewed for this long lapses (the holder died): another rater may take it then. */
  readonly ttlMs: number
  /** Takes the lease even when it is held: for a rater that knows it is the only one (it owns a local nats-server). */
  readonly force: boolean
  /** Called when a renewal finds the lease gone or taken: the holder must stop rating. */
  readonly onLost: (err: Error) => void
  /** Called when a renewal fails but the lease may still be current: the next renewal tries again. */
  readonly onRenewFailed?: (err: Error) => void
}
export const DEFAULT_LEASE_TTL_MS = 30_000
/** After a renewal failed, the next is tried this much later (not a third of the lapse time later). */
const RENEW_RETRY_MS = 1000

/**
 * The right to rate the USAGE stream. Why: a rater's state (the dedupe index, the running totals) is the
 * single owner's; two raters on one stream would each rate what the other was delivered, with totals of their
 * own, and one's start-up recovery deletes rows the other has written but not yet committed. The lease is a key
 * in a JetStream key-value bucket whose entries lapse after `ttlMs`; the holder renews it every third of that
 * (a compare-and-set on the revision it last wrote), and deletes it when it stops.
 *
 * Taken atomically (create fails when the key exists). A holder on this host whose process is gone (kill -9)
 * is taken over at once; a holder elsewhere only once its lease lapses.
 */
export class RaterLease {
  private timer: NodeJS.Timeout | undefined
  private released = false
  private lost = false
  /** A renewal is in flight: the next tick waits for it rather than racing it. */
  private renewing = false
  /** When the lease was last written (taken or renewed), performance.now() ms. */
  private renewedAt = performance.now()

  private constructor(
    private readonly kv: KV,
    private revision: number,
    /** The holder's JSON (LeaseHolder), written again at each renewal. */
    private readonly value: string,
    private readonly options: LeaseOptions,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.max(1, Math.floor(options.ttlMs / 3)))
    this.timer.unref()
  }

  /** Takes the lease for this process, or throws a HeldByAnotherError (BAD_USAGE) naming its holder. */
  static async acquire(nc: NatsConnection, dataDir: string, options: LeaseOptions): Promise<RaterLease> {
    const me: LeaseHolder = { host: hostname(), pid: process.pid, dataDir, since: new Date().toISOString(), ...processIdentity() }
    const value = JSON.stringify(me)
    // host:port of the server connected to (the client holds the credentials apart); masked all the same, as every NATS address in a message.
    const url = redactUrl(nc.getServer())
    try {
      const kv = await new Kvm(jetstream(nc, { timeout: requestTimeoutMs(options.ttlMs) })).create(LEASE_BUCKET, { ttl: options.ttlMs, history: 1 })
      try {
        return new RaterLease(kv, await kv.create(LEASE_KEY, value), value, options)
      } catch (err) {
        const entry = await kv.get(LEASE_KEY)
        if (entry === null || entry.operation !== 'PUT') throw err
        const holder = entry.json<LeaseHolder>()
        // On this host, a holder whose process is gone, or whose pid is now another process's (this one's, say, in a
        // container whose node runs as pid 1 after each restart: it was refused as "held by process 1" until it lapsed).
        if (options.force || (holder.host === me.host && holderGone(holder, me))) {
          // Compare-and-set on the revision read: if another rater took it meanwhile, this fails and says so.
          return new RaterLease(kv, await kv.update(LEASE_KEY, value, entry.revision), value, options)
        }
        throw heldBy(holder, entry.created, options.ttlMs)
      }
    } catch (err) {
      if (err instanceof RateflowError) throw err
      // The server went away or timed out while the lease was taken: said as such, not as the client's stack.
      throw new RateflowError(
        ErrorCode.ServiceUnavailable,
        `taking the rater lease on NATS at ${url} failed: ${(err as Error).message} (is the server up, with JetStream storage free? run the command again once it answers)`,
        { cause: err },
      )
    }
  }

  /**
   * True while this holder may act on the stream: the lease is neither released nor lost, and was written within
   * two thirds of its lapse time (one renewal may be late, not two). The rater checks it before writing a flush and
   * again before its commit: a holder stalled past its lapse (a long pause, a network split) may have been replaced,
   * and the new rater's recovery deletes the rows of the flush it would commit.
   */
  isCurrent(): boolean {
    return !this.released && !this.lost && performance.now() - this.renewedAt < (this.options.ttlMs * 2) / 3
  }

  /**
   * isCurrent(), or, when that is false only because renewals could not get through (a broker restarting, a network
   * blip) and the lease has not lapsed yet, renewals tried now, once a second, until one gets through (true) or the
   * lease lapses or is lost (false). A renewal is a compare-and-set on the revision this holder last wrote: it gets
   * through only if no other rater has written the lease since, so acting after it is as safe as after any renewal.
   * The rater asks it before a flush: an outage of the broker of 10–20 s (the last renewal up to 10 s before it began)
   * used to stop `rateflow run`, though no one else could have taken the stream.
   */
  async current(): Promise<boolean> {
    while (!this.isCurrent()) {
      if (this.released || this.lost || performance.now() - this.renewedAt >= this.options.ttlMs) return false
      await this.renew()
      if (!this.isCurrent()) await new Promise((resolve) => setTimeout(resolve, RENEW_RETRY_MS))
    }
    return true
  }

  private async renew(): Promise<void> {
    // Lost once is said once: a retry still pending would report it again.
    if (this.released || this.lost || this.renewing) return
    this.renewing = true
    try {
      this.revision = await withTimeout(this.kv.update(LEASE_KEY, this.value, this.revision), requestTimeoutMs(this.options.ttlMs))
      this.renewedAt = performance.now()
    } catch (err) {
      if (this.released) return
      const message = (err as Error).message ?? ''
      // The compare-and-set failed ("wrong last sequence"): the lease was written since this holder last did. By itself,
      // when a renewal it gave up on (withTimeout) reached a stalled server later: its own text is there, under a newer
      // revision, which it takes up. By another rater otherwise: lost, at once. "wrong last sequence: 0": no entry is
      // left at all, it lapsed and the server removed it.
      let taken = /wrong last sequence/i.test(message)
      const lapsed = /wrong last sequence: 0\b/i.test(message)
      if (taken && !lapsed) {
        const entry = await withTimeout(this.kv.get(LEASE_KEY), requestTimeoutMs(this.options.ttlMs)).catch(() => null)
        if (entry !== null && entry.operation === 'PUT' && entry.string() === this.value) {
          this.revision = entry.revision
          taken = false
        }
      }
      // Anything else (nats-server restarting, a network blip, a request timing out) may pass: until the lease lapses on
      // the server (ttlMs after the last renewal at the latest), a renewal that gets through keeps it, so one is tried
      // again in a second, not at the next tick (once isCurrent() is false, nothing is committed meanwhile).
      if (!taken && performance.now() - this.renewedAt < this.options.ttlMs) {
        this.options.onRenewFailed?.(err as Error)
        const retry = setTimeout(() => void this.renew(), RENEW_RETRY_MS)
        retry.unref()
        return
      }
      this.lost = true
      this.stopRenewing()
      const why = lapsed
        ? `it lapsed: not renewed within ${Math.round(this.options.ttlMs / 1000)} s, and the server removed it`
        : taken
          ? 'another rater took it'
          : `not renewed for ${((performance.now() - this.renewedAt) / 1000).toFixed(1)} s: ${message}`
      this.options.onLost(new RateflowError(ErrorCode.ServiceUnavailable, `lost the rater lease on the USAGE stream (${why})`, { cause: err }))
    } finally {
      this.renewing = false
    }
  }

  private stopRenewing(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Gives the lease up: another rater may take it at once. */
  async release(): Promise<void> {
    if (this.released) return
    this.released = true
    this.stopRenewing()
    await this.kv.delete(LEASE_KEY, { previousSeq: this.revision }).catch(() => undefined)
  }
}

/** The refusal naming the lease's holder. */
function heldBy(holder: LeaseHolder, created: Date, ttlMs: number): HeldByAnotherError {
  const ageS = Math.round((Date.now() - created.getTime()) / 1000)
  return new HeldByAnotherError(
    `the USAGE stream is being rated by rateflow process ${holder.pid} on ${holder.host} (data ${holder.dataDir}, since ${holder.since}; ` +
      `lease renewed ${ageS} s ago): one rater at a time. Stop it, or ingest without --wait and let it rate; if that process ` +
      `is gone, its lease lapses ${Math.round(ttlMs / 1000)} s after its last renewal`,
  )
}

/**
 * A request about the lease times out within a sixth of the lapse time (at least 1 s): a renewal that cannot get
 * through fails in time for the next ones to try before the lease lapses.
 */
function requestTimeoutMs(ttlMs: number): number {
  return Math.max(1000, Math.floor(ttlMs / 6))
}

/**
 * `p`, or a rejection after `ms`: a renewal sent while the client was reconnecting was seen to wait for good, past the
 * client's own timeout, and every later renewal waited behind it. A renewal that gets through after this gave up has
 * moved the revision: the next one's compare-and-set fails, finds its own text there and takes that revision up.
 */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

/**
 * Whether the lease's holder, on this host, is gone. Its pid is read in this process's pid namespace only when it was
 * taken in the same one: two containers with one hostname (host networking) each run node as pid 1, and a holder's
 * pid 1 alive there says nothing of this namespace's pid 1 (taken over, two raters held the stream at once). A holder
 * of another namespace is waited for until its lease lapses. An earlier release's record (no namespace) is judged by
 * its pid alone, as that release did.
 */
function holderGone(holder: LeaseHolder, me: LeaseHolder): boolean {
  if (holder.pidns === undefined) return !processLive(holder.pid)
  if (holder.pidns !== me.pidns) return false
  return !processLive(holder.pid, holder.start, holder.boot)
}
