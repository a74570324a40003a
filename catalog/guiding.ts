import { isoUtc, parseIsoTime } from '../common/time.js'
import type { Account, AccountsDocument, Catalog, Plan, Subscription } from './types.js'

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

interface Binding {
  from: number // inclusive
  to: number // exclusive; Infinity when open
  subscription: Subscription
  account: Account
}

/** The ids an event may carry to name its owner (CONTRACT §2: at least one). */
export interface OwnerIds {
  device_id?: string | undefined
  account_id?: string | undefined
  subscription_id?: string | undefined
  metric: string
}

/**
 * An immutable lookup over one snapshot of catalogs and accounts. Guiding is effective-dated: a device
 * binding, a subscription and a catalog version count only at the event's time.
 */
export class GuidingIndex {
  private readonly versions: Array<{ from: number; catalog: Catalog }>
  private readonly bindings = new Map<string, Binding[]>()
  private readonly subscriptions = new Map<string, { subscription: Subscription; account: Account }>()
  private readonly accounts = new Map<string, Account>()

  constructor(catalogs: readonly Catalog[], doc: AccountsDocument) {
    this.versions = catalogs
      .map((catalog) => ({ from: parseIsoTime(catalog.effective_from) ?? 0, catalog }))
      .sort((a, b) => a.from - b.from)
    for (const customer of doc.customers) {
      for (const account of customer.accounts) {
        this.accounts.set(account.id, account)
        for (const subscription of account.subscriptions) {
          this.subscriptions.set(subscription.id, { subscription, account })
          for (const d of subscription.devices ?? []) {
            const list = this.bindings.get(d.device_id) ?? []
            list.push({
              from: parseIsoTime(d.from) ?? 0,
              to: d.to ? (parseIsoTime(d.to) ?? Infinity) : Infinity,
              subscription,
              account,
            })
            this.bindings.set(d.device_id, list)
          }
        }
      }
    }
  }

  /** The catalog version in force at `ms`: the latest with effective_from <= ms. */
  catalogAt(ms: number): Catalog | undefined {
    let found: Catalog | undefined
    for (const v of this.versions) {
      if (v.from <= ms) found = v.catalog
      else break
    }
    return found
  }

  /**
   * The account of a subscription, and the billing period length of its plan in a catalog version
   * (month when that version lacks the plan).
   */
  subscriptionOwner(id: string): { account: Account; billingPeriod(version: string): Plan['billing_period'] } | undefined {
    const s = this.subscriptions.get(id)
    if (!s) return undefined
    return {
      account: s.account,
      billingPeriod: (version) =>
        this.versions.find((v) => v.catalog.version === version)?.catalog.plans.find((p) => p.id === s.subscription.plan)
          ?.billing_period ?? 'month',
    }
  }

  account(id: string): Account | undefined {
    return this.accounts.get(id)
  }

  /** Guides an event at time `ms`. Precedence: subscription_id, then device_id, then account_id. */
  guide(ids: OwnerIds, ms: number): GuideResult {
    const at = isoUtc(ms)
    let subscription: Subscription
    let account: Account
    if (ids.subscription_id) {
      const s = this.subscriptions.get(ids.subscription_id)
      if (!s) return { kind: 'suspend', reason: `subscription "${ids.subscription_id}" is not known (yet)` }
      ;({ subscription, account } = s)
    } else if (ids.device_id) {
      const b = this.bindings.get(ids.device_id)?.find((x) => x.from <= ms && ms < x.to)
      if (!b) return { kind: 'suspend', reason: `device "${ids.device_id}" has no binding at ${at}` }
      ;({ subscription, account } = b)
    } else if (ids.account_id) {
      const a = this.accounts.get(ids.account_id)
      if (!a) return { kind: 'suspend', reason: `account "${ids.account_id}" is not known (yet)` }
      const catalog = this.catalogAt(ms)
      if (!catalog) return { kind: 'suspend', reason: `no catalog version is in force at ${at}` }
      const candidates = a.subscriptions.filter((s) => inForce(s, ms) && meters(catalog, planOf(catalog, s.plan), ids.metric))
      if (candidates.length === 0) {
        return { kind: 'suspend', reason: `account "${a.id}" has no subscription at ${at} whose plan meters "${ids.metric}"` }
      }
      if (candidates.length > 1) {
        return {
          kind: 'reject',
          reason: `account "${a.id}" has ${candidates.length} subscriptions metering "${ids.metric}" at ${at} (${candidates
            .map((s) => s.id)
            .join(', ')}): send subscription_id`,
        }
      }
      subscription = candidates[0]!
      account = a
    } else {
      return { kind: 'reject', reason: 'no owner id: device_id, account_id and subscription_id are all empty' }
    }
    if (ids.account_id && ids.account_id !== account.id) {
      return {
        kind: 'reject',
        reason: `event names account "${ids.account_id}" but its ${ids.subscription_id ? 'subscription' : 'device'} belongs to account "${account.id}"`,
      }
    }
    if (ids.subscription_id && ids.device_id) {
      const b = this.bindings.get(ids.device_id)?.find((x) => x.from <= ms && ms < x.to)
      if (b && b.subscription.id !== subscription.id) {
        return { kind: 'reject', reason: `device "${ids.device_id}" is bound to subscription "${b.subscription.id}", not "${subscription.id}"` }
      }
    }
    if (!inForce(subscription, ms)) {
      return { kind: 'suspend', reason: `subscription "${subscription.id}" is not in force at ${at}` }
    }
    if (subscription.status === 'dormant') {
      return { kind: 'suspend', reason: `subscription "${subscription.id}" is dormant until a delivered fulfilment activates it` }
    }
    const catalog = this.catalogAt(ms)
    if (!catalog) return { kind: 'suspend', reason: `no catalog version is in force at ${at}` }
    const plan = planOf(catalog, subscription.plan)
    if (!plan) return { kind: 'suspend', reason: `plan "${subscription.plan}" is not in catalog version "${catalog.version}"` }
    return { kind: 'owner', owner: { account, subscription, plan, catalog } }
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

/** True when one of the plan's usage charges reads a meter of this metric (filters aside). */
function meters(catalog: Catalog, plan: Plan | undefined, metric: string): boolean {
  if (!plan) return false
  return plan.charges.some(
    (c) => c.kind === 'usage' && catalog.meters.some((m) => m.id === c.meter && m.metric === metric),
  )
}
