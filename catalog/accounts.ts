import { ValidationError, type Problem } from '../common/errors.js'
import { isValidTimeZone, parseIsoTime, sameTimeZone } from '../common/time.js'
import type { Account, AccountsDocument, Catalog, Customer, DeviceBinding, Subscription } from './types.js'
import { jsonMemberPath } from '../common/strings.js'

const DECIMAL = /^\d+(\.\d+)?$/

/**
 * Validates an accounts document (CONTRACT §4). Throws a ValidationError listing every problem with its
 * JSON path; unknown fields are problems too (a misspelt `bill_cycle_day` must not pass silently).
 * Device bindings of one device must not overlap in time across the whole document. With `complete` (the document
 * is every account there is: the stored ones merged with a file's), each `parent_account` must name an account of
 * the document other than itself; with `knownAccounts` (the ids stored already), each must name an account of the
 * document or one of those; with neither, a file alone may name any parent.
 */
export function validateAccounts(doc: unknown, opts: { readonly complete?: boolean; readonly knownAccounts?: ReadonlySet<string> } = {}): AccountsDocument {
  const problems: Problem[] = []
  const p = (path: string, message: string) => problems.push({ path, message })
  const obj = (v: unknown, path: string, allowed: readonly string[], required: readonly string[]): v is Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      p(path, 'must be an object')
      return false
    }
    for (const k of Object.keys(v)) if (!allowed.includes(k)) p(jsonMemberPath(path, k), `unknown field (allowed: ${allowed.join(', ')})`)
    for (const k of required) if (!(k in v)) p(`${path}.${k}`, 'is required')
    return true
  }
  const str = (v: unknown, path: string): v is string => {
    if (typeof v !== 'string' || v.length === 0) {
      p(path, 'must be a non-empty string')
      return false
    }
    return true
  }
  const time = (v: unknown, path: string) => {
    if (str(v, path) && parseIsoTime(v) === undefined) p(path, `"${v}" is not an ISO-8601 time with offset`)
  }
  const arr = (v: unknown, path: string): v is unknown[] => {
    if (!Array.isArray(v)) {
      p(path, 'must be an array')
      return false
    }
    return true
  }

  const ids = { customer: new Map<string, string>(), account: new Map<string, string>(), subscription: new Map<string, string>() }
  const unique = (kind: keyof typeof ids, id: unknown, path: string) => {
    if (typeof id !== 'string') return
    const prev = ids[kind].get(id)
    if (prev) p(path, `duplicate ${kind} id "${id}" (first at ${prev})`)
    else ids[kind].set(id, path)
  }
  const bindings = new Map<string, Array<{ from: number; to: number; path: string }>>()
  const parents: Array<{ id: unknown; parent: string; path: string }> = []

  if (obj(doc, '$', ['customers'], ['customers']) && arr(doc.customers, '$.customers')) {
    doc.customers.forEach((c, ci) => {
      const cp = `$.customers[${ci}]`
      if (!obj(c, cp, ['id', 'name', 'accounts'], ['id', 'name', 'accounts'])) return
      str(c.id, `${cp}.id`)
      unique('customer', c.id, `${cp}.id`)
      str(c.name, `${cp}.name`)
      if (!arr(c.accounts, `${cp}.accounts`)) return
      c.accounts.forEach((a, ai) => {
        const ap = `${cp}.accounts[${ai}]`
        const allowed = ['id', 'currency', 'timezone', 'bill_cycle_day', 'tax', 'parent_account', 'subscriptions']
        if (!obj(a, ap, allowed, ['id', 'currency', 'timezone', 'bill_cycle_day', 'subscriptions'])) return
        str(a.id, `${ap}.id`)
        unique('account', a.id, `${ap}.id`)
        if (typeof a.currency !== 'string' || !/^[A-Z]{3}$/.test(a.currency)) p(`${ap}.currency`, 'must be an ISO-4217 code such as "USD"')
        if (str(a.timezone, `${ap}.timezone`) && !isValidTimeZone(a.timezone)) p(`${ap}.timezone`, `unknown IANA time zone "${a.timezone}"`)
        if (!Number.isInteger(a.bill_cycle_day) || (a.bill_cycle_day as number) < 1 || (a.bill_cycle_day as number) > 28) {
          p(`${ap}.bill_cycle_day`, 'must be an integer from 1 to 28 (every month has that day)')
        }
        if (a.tax !== undefined && obj(a.tax, `${ap}.tax`, ['jurisdiction', 'rate'], ['jurisdiction', 'rate'])) {
          str(a.tax.jurisdiction, `${ap}.tax.jurisdiction`)
          if (typeof a.tax.rate !== 'string' || !DECIMAL.test(a.tax.rate)) p(`${ap}.tax.rate`, 'must be a decimal string percent such as "19"')
        }
        if (a.parent_account !== undefined && a.parent_account !== null && str(a.parent_account, `${ap}.parent_account`)) {
          parents.push({ id: a.id, parent: a.parent_account, path: `${ap}.parent_account` })
        }
        if (!arr(a.subscriptions, `${ap}.subscriptions`)) return
        a.subscriptions.forEach((s, si) => {
          const sp = `${ap}.subscriptions[${si}]`
          const sAllowed = ['id', 'plan', 'start', 'end', 'status', 'quantity', 'devices']
          if (!obj(s, sp, sAllowed, ['id', 'plan', 'start', 'status'])) return
          str(s.id, `${sp}.id`)
          unique('subscription', s.id, `${sp}.id`)
          str(s.plan, `${sp}.plan`)
          time(s.start, `${sp}.start`)
          if (s.end !== undefined && s.end !== null) {
            time(s.end, `${sp}.end`)
            const st = parseIsoTime(String(s.start)), en = parseIsoTime(String(s.end))
            if (st !== undefined && en !== undefined && en <= st) p(`${sp}.end`, 'must be after start')
          }
          if (s.status !== 'active' && s.status !== 'dormant') p(`${sp}.status`, 'must be "active" or "dormant"')
          if (s.quantity !== undefined && (typeof s.quantity !== 'string' || !DECIMAL.test(s.quantity))) {
            p(`${sp}.quantity`, 'must be a decimal string such as "1"')
          }
          if (s.devices === undefined || !arr(s.devices, `${sp}.devices`)) return
          s.devices.forEach((d, di) => {
            const dp = `${sp}.devices[${di}]`
            if (!obj(d, dp, ['device_id', 'from', 'to'], ['device_id', 'from'])) return
            str(d.device_id, `${dp}.device_id`)
            time(d.from, `${dp}.from`)
            if (d.to !== undefined && d.to !== null) time(d.to, `${dp}.to`)
            const from = parseIsoTime(String(d.from))
            const to = d.to === undefined || d.to === null ? Infinity : parseIsoTime(String(d.to))
            if (from === undefined || to === undefined || typeof d.device_id !== 'string') return
            if (to <= from) {
              p(`${dp}.to`, 'must be after from')
              return
            }
            const list = bindings.get(d.device_id) ?? []
            for (const b of list) {
              if (from < b.to && b.from < to) p(dp, `device "${d.device_id}" is already bound in this period at ${b.path}`)
            }
            list.push({ from, to, path: dp })
            bindings.set(d.device_id, list)
          })
        })
      })
    })
  }
  if (opts.complete || opts.knownAccounts) {
    for (const { id, parent, path } of parents) {
      if (parent === id) p(path, `account "${id}" cannot be its own parent`)
      else if (!ids.account.has(parent) && !opts.knownAccounts?.has(parent)) {
        p(path, `account "${String(id)}" names parent account "${parent}", which is neither in this file nor stored`)
      }
    }
  }
  // Longer cycles (a-1 → a-2 → a-1), within the document: a merged one has every account, stored and applied. Each
  // cycle is named once, at the first of its accounts in the document.
  const parentOf = new Map(parents.filter((x) => typeof x.id === 'string' && x.parent !== x.id).map((x) => [x.id as string, x]))
  const named = new Set<string>()
  for (const start of parentOf.values()) {
    const chain = [start.id as string]
    for (let at = parentOf.get(start.parent); at !== undefined && !named.has(at.id as string); at = parentOf.get(at.parent)) {
      if (at.id === start.id) {
        for (const a of chain) named.add(a)
        p(start.path, `accounts form a parent cycle: ${[...chain, start.id].map((a) => `"${String(a)}"`).join(' → ')}`)
        break
      }
      if (chain.length > parentOf.size) break
      chain.push(at.id as string)
    }
  }
  if (problems.length > 0) throw new ValidationError('accounts', problems)
  return doc as AccountsDocument
}

/**
 * Upsert (`accounts apply`): customers, accounts and subscriptions of `incoming` replace those with the
 * same id in `current`; everything else in `current` stays. A subscription's device list is replaced
 * whole, so ending a binding means applying it with its `to` set.
 */
export function mergeAccounts(current: AccountsDocument, incoming: AccountsDocument): AccountsDocument {
  const customers = new Map<string, Customer>(current.customers.map((c) => [c.id, structuredClone(c)]))
  for (const c of incoming.customers) {
    const existing = customers.get(c.id)
    if (!existing) {
      customers.set(c.id, structuredClone(c))
      continue
    }
    existing.name = c.name
    const accounts = new Map<string, Account>(existing.accounts.map((a) => [a.id, a]))
    for (const a of c.accounts) {
      const ea = accounts.get(a.id)
      if (!ea) {
        accounts.set(a.id, structuredClone(a))
        continue
      }
      const subs = new Map<string, Subscription>(ea.subscriptions.map((s) => [s.id, s]))
      for (const s of a.subscriptions) subs.set(s.id, structuredClone(s))
      accounts.set(a.id, { ...structuredClone(a), subscriptions: [...subs.values()] })
    }
    existing.accounts = [...accounts.values()]
  }
  return { customers: [...customers.values()] }
}

/**
 * `accounts apply`: checks the file (`doc`) against the stored accounts and returns the file and the merged document to
 * store. Throws a ValidationError listing every problem, each at its JSON path in the file: first those of the file
 * itself, a parent account neither in the file nor stored included; once the file has none, those the merge makes
 * (a device binding overlapping a stored one, an account id the file gives another customer than the stored one).
 * A problem that lies in a stored entity the file does not name is shown by that entity's ids
 * (`stored customer "c" account "a"…`), as the file has no path to it. `opts.rated`: the accounts of
 * cycleChangingAccounts that have rated usage; without it, every such account is taken to have (and its change refused).
 */
export function applyAccounts(
  stored: AccountsDocument,
  doc: unknown,
  opts: { rated?: ReadonlySet<string> | undefined } = {},
): { incoming: AccountsDocument; merged: AccountsDocument } {
  const storedById = accountsById(stored)
  const incoming = validateAccounts(doc, { knownAccounts: new Set(storedById.keys()) })
  const merged = mergeAccounts(stored, incoming)
  let problems: Problem[] = []
  try {
    validateAccounts(merged, { complete: true })
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err
    const where = filePaths(merged, incoming)
    const inFile = (path: string) => path.startsWith('$')
    problems = err.problems.map((q) => {
      const path = where(q.path)
      // A conflict is reported at the later of its two places in the merged document; when that is a stored entity
      // and the other, named in the message, is the file's, it is reported at the file's place instead.
      const other = [...q.message.matchAll(MERGED_PATH_IN_TEXT)].map((m) => m[0]).find((m) => inFile(where(m)))
      // Replaced by functions: a `$&` or `$'` in an id is text, not a replacement pattern.
      if (!inFile(path) && other !== undefined) return { path: where(other), message: q.message.replace(other, () => path).replace(MERGED_PATH_IN_TEXT, where) }
      return { path, message: q.message.replace(MERGED_PATH_IN_TEXT, where) }
    })
  }
  problems.unshift(...cycleChanges(storedById, incoming, opts.rated))
  if (problems.length > 0) throw new ValidationError('accounts (merged with the stored accounts)', problems)
  return { incoming, merged }
}

/** The accounts of a document by id. */
function accountsById(doc: AccountsDocument): Map<string, Account> {
  const byId = new Map<string, Account>()
  for (const c of doc.customers) for (const a of c.accounts) byId.set(a.id, a)
  return byId
}

/** The fields a stored account keeps while it has rated usage (cycleChanges). */
const CYCLE_FIELDS = ['bill_cycle_day', 'timezone'] as const

/** A cycle field's new value is the stored one: a zone in another spelling (`europe/berlin`) is the same zone. */
function sameCycleField(field: (typeof CYCLE_FIELDS)[number], now: unknown, was: unknown): boolean {
  return now === was || (field === 'timezone' && typeof now === 'string' && typeof was === 'string' && sameTimeZone(now, was))
}

/**
 * The ids of stored accounts whose `bill_cycle_day` or `timezone` an accounts file (not yet validated) changes: those
 * `accounts apply` must look up in the store (cycleChanges) before it can apply the file.
 */
export function cycleChangingAccounts(stored: AccountsDocument, doc: unknown): string[] {
  const byId = accountsById(stored)
  const out = new Set<string>()
  const customers = (doc as { customers?: unknown } | null)?.customers
  for (const c of Array.isArray(customers) ? customers : []) {
    const accounts = (c as { accounts?: unknown } | null)?.accounts
    for (const a of Array.isArray(accounts) ? (accounts as Array<Record<string, unknown> | null>) : []) {
      const was = typeof a?.id === 'string' ? byId.get(a.id) : undefined
      if (was !== undefined && CYCLE_FIELDS.some((f) => !sameCycleField(f, a![f], was[f]))) out.add(was.id)
    }
  }
  return [...out]
}

/**
 * Stored accounts (`byId`) whose `bill_cycle_day` or `timezone` the file changes while they have rated usage (`rated`: the
 * accounts that have, or undefined when that could not be read), at the file's paths. Billing periods are worked out
 * from them per event: a change made the periods after it start elsewhere, overlapping those already rated, and each
 * overlapping period gave free units, first-tier flat fees and minimums again (a 1 → 15 change billed 15–31 October in
 * two periods). Changing a cycle from a period boundary on is not built, so such a change is refused; an account with
 * no rated usage (a typo fixed before its first event) may change.
 */
function cycleChanges(byId: ReadonlyMap<string, Account>, incoming: AccountsDocument, rated: ReadonlySet<string> | undefined): Problem[] {
  const out: Problem[] = []
  incoming.customers.forEach((c, ci) =>
    c.accounts.forEach((a, ai) => {
      const was = byId.get(a.id)
      if (was === undefined || (rated !== undefined && !rated.has(a.id))) return
      for (const field of CYCLE_FIELDS) {
        if (sameCycleField(field, a[field], was[field])) continue
        const why =
          rated === undefined
            ? 'whether it has rated usage cannot be read while another process holds the data directory (stop it and apply again)'
            : 'it has rated usage, whose billing periods the new ones would overlap (free units, flat fees and minimums given twice); a change from a period boundary on is not supported'
        out.push({ path: `$.customers[${ci}].accounts[${ai}].${field}`, message: `account "${a.id}" is stored with ${field} ${JSON.stringify(was[field])}: changing it to ${JSON.stringify(a[field])} is refused: ${why}` })
      }
    }),
  )
  return out
}

/**
 * The subscriptions of `incoming` whose plan no catalog version of `catalogs` has, at their path: not an error (the
 * catalog may be applied later), but until a version has the plan their usage is held, so `accounts apply` warns.
 */
export function plansNotInCatalog(incoming: AccountsDocument, catalogs: readonly Catalog[]): Problem[] {
  const plans = new Set<string>()
  for (const c of catalogs) for (const p of c.plans) plans.add(p.id)
  const out: Problem[] = []
  incoming.customers.forEach((c, ci) =>
    c.accounts.forEach((a, ai) =>
      a.subscriptions.forEach((s, si) => {
        if (!plans.has(s.plan)) {
          out.push({ path: `$.customers[${ci}].accounts[${ai}].subscriptions[${si}].plan`, message: `plan "${s.plan}" is in no stored catalog version: its usage is held until one has it` })
        }
      }),
    ),
  )
  return out
}

const MERGED_PATH = /^\$\.customers\[(\d+)\](?:\.accounts\[(\d+)\](?:\.subscriptions\[(\d+)\])?)?/
const MERGED_PATH_IN_TEXT = /\$\.customers\[\d+\](?:\.accounts\[\d+\](?:\.subscriptions\[\d+\])?)?(?:\.[a-z_]+(?:\[\d+\])?)*/g

/** Translates a JSON path in the merged document into one in the file, or into the stored entity's ids. */
function filePaths(merged: AccountsDocument, incoming: AccountsDocument): (path: string) => string {
  return (path) => {
    const m = MERGED_PATH.exec(path)
    if (!m) return path
    const rest = path.slice(m[0].length)
    const c = merged.customers[Number(m[1])]
    const a = m[2] === undefined ? undefined : c?.accounts[Number(m[2])]
    const s = m[3] === undefined ? undefined : a?.subscriptions[Number(m[3])]
    if (c === undefined) return path
    const fc = incoming.customers.findIndex((x) => x.id === c.id)
    const fa = fc < 0 || a === undefined ? -1 : incoming.customers[fc]!.accounts.findIndex((x) => x.id === a.id)
    const fs = fa < 0 || s === undefined ? -1 : incoming.customers[fc]!.accounts[fa]!.subscriptions.findIndex((x) => x.id === s.id)
    // The deepest entity the path names must come from the file for the path to point into it.
    const inFile = s !== undefined ? fs >= 0 : a !== undefined ? fa >= 0 : fc >= 0
    if (inFile) {
      return `$.customers[${fc}]` + (a === undefined ? '' : `.accounts[${fa}]`) + (s === undefined ? '' : `.subscriptions[${fs}]`) + rest
    }
    const ids = [`stored customer "${c.id}"`, a === undefined ? '' : ` account "${a.id}"`, s === undefined ? '' : ` subscription "${s.id}"`].join('')
    return rest === '' ? ids : `${ids} ${rest.replace(/^\./, '')}`
  }
}

export type { DeviceBinding }
