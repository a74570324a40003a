import { isoUtc, parseIsoTime } from '../common/time.js'
import type { Account, AccountsDocument, Catalog, Plan, Subscription } from './types.js'
import { meterAccepts } from '../rating-core/meters.js'

/** Who owns an event, and which catalog version and plan price it. */
export interface Owner {
  readonly account: Account
  readonly subscription: Subscription
  readonly plan: Plan
  readonly catalog: Catalog
}

/**
 * The outcome of guiding one event:
 * - `owner`: rate it;
 * - `suspend`: the guiding data that would own it is missing (device not bound yet, unknown account,
 *   dormant subscription, no catalog in force); it waits in suspended_usage and is rated when that data arrives;
 * - `reject`: the event contradicts the guiding data (device bound to another account, ambiguous owner).
 */
export type GuideResult =
  | { readonly kind: 'owner'; readonly owner: Owner }
  | { readonly kind: 'suspend'; readonly reason: string }
  | { readonly kind: 'reject'; readonly reason: string }

/** A device's bindings, as a chain: most devices have one, and the lookup then reads no array. */
interface Binding {
  from: number // inclusive
  to: number // exclusive; Infinity when open
  sub: SubscriptionEntry
  /** The device's next binding, in the order the accounts document lists them. */
  next: Binding | undefined
}

/** A subscription with its account, its effective range in ms and the owner results already built for it. */
interface SubscriptionEntry {
  subscription: Subscription
  account: Account
  start: number // inclusive
  end: number // exclusive; Infinity when open
  /** subscription.status === 'dormant', kept here: guiding then reads no field of the subscription per event. */
  dormant: boolean
  /** One `owner` result per catalog version: guiding returns the same object for every event it owns. */
  owners: Map<Catalog, GuideResult>
  /** The catalog of the last owner result handed out, and that result (checked before the map: one version is the rule). */
  lastCatalog: Catalog | undefined
  lastOwned: GuideResult | undefined
}

/** The ids an event may carry to name its owner (CONTRACT §2: at least one). */
export interface OwnerIds {
  device_id?: string | undefined
  account_id?: string | undefined
  subscription_id?: string | undefined
  metric: string
  /** The event's dimensions: they tell apart an account's subscriptions whose meters read one metric with other filters. */
  dimensions?: Record<string, string> | undefined
}

/**
 * An immutable lookup over one snapshot of catalogs and accounts. Guiding is effective-dated: a device
 * binding, a subscription and a catalog version count only at the event's time.
 *
 * Guiding runs once per event on the rating hot path, so everything that does not depend on the event is
 * worked out here once: binding and subscription ranges as epoch ms, plans by id per catalog, and the
 * `owner` result of each (subscription, catalog version), which `guide` hands out again and again (callers
 * may key caches on it; it is never mutated).
 */
export class GuidingIndex {
  private readonly versions: Array<{ from: number; catalog: Catalog; plans: Map<string, Plan> }>
  private readonly bindings = new Map<string, Binding>()
  private readonly subscriptions = new Map<string, SubscriptionEntry>()
  private readonly accounts = new Map<string, Account>()

  constructor(catalogs: readonly Catalog[], doc: AccountsDocument) {
    this.versions = catalogs
      .map((catalog) => ({ from: parseIsoTime(catalog.effective_from) ?? 0, catalog, plans: new Map(catalog.plans.map((p) => [p.id, p])) }))
      .sort((a, b) => a.from - b.from)
    for (const customer of doc.customers) {
      for (const account of customer.accounts) {
        this.accounts.set(account.id, account)
        for (const subscription of account.subscriptions) {
          const sub: SubscriptionEntry = {
            subscription,
            account,
            start: parseIsoTime(subscription.start) ?? Infinity,
            end: subscription.end ? (parseIsoTime(subscription.end) ?? Infinity) : Infinity,
            dormant: subscription.status === 'dormant',
            owners: new Map(),
            lastCatalog: undefined,
            lastOwned: undefined,
          }
          this.subscriptions.set(subscription.id, sub)
          for (const d of subscription.devices ?? []) {
            const b: Binding = { from: parseIsoTime(d.from) ?? 0, to: d.to ? (parseIsoTime(d.to) ?? Infinity) : Infinity, sub, next: undefined }
            let last = this.bindings.get(d.device_id)
            if (last === undefined) this.bindings.set(d.device_id, b)
            else {
              while (last.next !== undefined) last = last.next
              last.next = b
            }
          }
        }
      }
    }
  }

  /** The catalog version in force at `ms`: the latest with effective_from <= ms. */
  catalogAt(ms: number): Catalog | undefined {
    return this.versionAt(ms)?.catalog
  }

  private versionAt(ms: number): { catalog: Catalog; plans: Map<string, Plan> } | undefined {
    let found: { catalog: Catalog; plans: Map<string, Plan> } | undefined
    for (const v of this.versions) {
      if (v.from <= ms) found = v
      else break
    }
    return found
  }

  /** The account of a subscription and its exclusive end in epoch ms (Infinity when open). */
  subscriptionOwner(id: string): { account: Account; endMs: number } | undefined {
    const s = this.subscriptions.get(id)
    if (!s) return undefined
    return { account: s.account, endMs: s.end }
  }

  account(id: string): Account | undefined {
    return this.accounts.get(id)
  }

  /**
   * Guides an event at time `ms`. Precedence: subscription_id, then device_id, then account_id.
   * (Only reasons print the time: formatting it for every event cost more than the lookups.)
   */
  guide(ids: OwnerIds, ms: number): GuideResult {
    let sub: SubscriptionEntry | undefined
    if (ids.subscription_id) {
      sub = this.subscriptions.get(ids.subscription_id)
      if (!sub) return { kind: 'suspend', reason: `subscription "${ids.subscription_id}" is not known (yet)` }
    } else if (ids.device_id) {
      sub = this.boundAt(ids.device_id, ms)?.sub
      if (!sub) return { kind: 'suspend', reason: `device "${ids.device_id}" has no binding at ${isoUtc(ms)}` }
    } else if (ids.account_id) {
      const a = this.accounts.get(ids.account_id)
      if (!a) return { kind: 'suspend', reason: `account "${ids.account_id}" is not known (yet)` }
      const catalog = this.catalogAt(ms)
      if (!catalog) return { kind: 'suspend', reason: `no catalog version is in force at ${isoUtc(ms)}` }
      const metering = a.subscriptions.filter((s) => inForce(s, ms) && meters(catalog, planOf(catalog, s.plan), ids.metric))
      if (metering.length === 0) {
        return { kind: 'suspend', reason: `account "${a.id}" has no subscription at ${isoUtc(ms)} whose plan meters "${ids.metric}"` }
      }
      // A dormant subscription is not billed until it is activated (CONTRACT §6): it owns no usage while an active
      // one meters the metric. Only dormant ones: held until one is activated (by then, with two active, ambiguous).
      const candidates = metering.filter((s) => s.status !== 'dormant')
      if (candidates.length === 0) {
        return {
          kind: 'suspend',
          reason: `account "${a.id}" has only dormant subscriptions metering "${ids.metric}" at ${isoUtc(ms)} (${metering
            .map((s) => s.id)
            .join(', ')}): held until one is activated`,
        }
      }
      // Several: the one whose meters also take the event's dimensions (a meter of `bytes` filtered on direction=out in one
      // plan, direction=in in the other), if exactly one does.
      const taking = candidates.length > 1 ? candidates.filter((s) => meters(catalog, planOf(catalog, s.plan), ids.metric, ids.dimensions ?? {})) : candidates
      if (taking.length !== 1) {
        const named = taking.length > 1 ? taking : candidates
        return {
          kind: 'reject',
          reason: `account "${a.id}" has ${named.length} subscriptions metering "${ids.metric}"${taking.length > 1 && Object.keys(ids.dimensions ?? {}).length > 0 ? ` with these dimensions` : ''} at ${isoUtc(ms)} (${named
            .map((s) => s.id)
            .join(', ')}): send subscription_id`,
        }
      }
      sub = this.subscriptions.get(taking[0]!.id)!
    } else {
      return { kind: 'reject', reason: 'no owner id: device_id, account_id and subscription_id are all empty' }
    }
    const { subscription, account } = sub
    if (ids.account_id && ids.account_id !== account.id) {
      return {
        kind: 'reject',
        reason: `event names account "${ids.account_id}" but its ${ids.subscription_id ? 'subscription' : 'device'} belongs to account "${account.id}"`,
      }
    }
    if (ids.subscription_id && ids.device_id) {
      const b = this.boundAt(ids.device_id, ms)
      if (b && b.sub.subscription.id !== subscription.id) {
        return { kind: 'reject', reason: `device "${ids.device_id}" is bound to subscription "${b.sub.subscription.id}", not "${subscription.id}"` }
      }
    }
    if (!(sub.start <= ms && ms < sub.end)) {
      return { kind: 'suspend', reason: `subscription "${subscription.id}" is not in force at ${isoUtc(ms)}` }
    }
    if (sub.dormant) {
      return { kind: 'suspend', reason: `subscription "${subscription.id}" is dormant: its usage is held until it is active (\`accounts apply\` with "status": "active")` }
    }
    const version = this.versionAt(ms)
    if (!version) return { kind: 'suspend', reason: `no catalog version is in force at ${isoUtc(ms)}` }
    const { catalog } = version
    if (sub.lastCatalog === catalog) return sub.lastOwned!
    let owned = sub.owners.get(catalog)
    if (!owned) {
      const plan = version.plans.get(subscription.plan)
      if (!plan) return { kind: 'suspend', reason: `plan "${subscription.plan}" is not in catalog version "${catalog.version}"` }
      // A catalog prices in one currency: an account billed in another cannot be priced by it (no conversion is done).
      // Held, not rejected: correcting the account or a catalog version in its currency releases the usage.
      owned =
        account.currency === catalog.currency
          ? { kind: 'owner', owner: { account, subscription, plan, catalog } }
          : {
              kind: 'suspend',
              reason: `account "${account.id}" is billed in ${account.currency} but catalog version "${catalog.version}" prices in ${catalog.currency}`,
            }
      sub.owners.set(catalog, owned)
    }
    sub.lastCatalog = catalog
    sub.lastOwned = owned
    return owned
  }

  /** The binding of a device in force at `ms` (from inclusive, to exclusive). */
  private boundAt(deviceId: string, ms: number): Binding | undefined {
    for (let b = this.bindings.get(deviceId); b !== undefined; b = b.next) if (b.from <= ms && ms < b.to) return b
    return undefined
  }
}

function inForce(s: Subscription, ms: number): boolean {
  const start = parseIsoTime(s.start) ?? Infinity
  const end = s.end ? (parseIsoTime(s.end) ?? Infinity) : Infinity
  return start <= ms && ms < end
}

function planOf(catalog: Catalog, id: string): Plan | undefined {
  return catalog.plans.find((p) => p.id === id)
}

/**
 * True when one of the plan's usage charges reads a meter of this metric; given `dimensions`, one whose filter they
 * also pass (without, filters aside).
 */
function meters(catalog: Catalog, plan: Plan | undefined, metric: string, dimensions?: Record<string, string>): boolean {
  if (!plan) return false
  return plan.charges.some(
    (c) =>
      c.kind === 'usage' &&
      catalog.meters.some((m) => m.id === c.meter && (dimensions === undefined ? m.metric === metric : meterAccepts(m, metric, dimensions))),
  )
}
