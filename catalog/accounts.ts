import { ValidationError, type Problem } from '../common/errors.js'
import { isValidTimeZone, parseIsoTime } from '../common/time.js'
import type { Account, AccountsDocument, Customer, DeviceBinding, Subscription } from './types.js'

const DECIMAL = /^\d+(\.\d+)?$/

/**
 * Validates an accounts document (CONTRACT §4). Throws a ValidationError listing every problem with its
 * JSON path; unknown fields are problems too (a misspelt `bill_cycle_day` must not pass silently).
 * Device bindings of one device must not overlap in time across the whole document. With `complete` (the document
 * is every account there is: the stored ones merged with a file's), each `parent_account` must name an account of
 * the document other than itself; a file alone may name a parent that is stored already.
 */
export function validateAccounts(doc: unknown, opts: { readonly complete?: boolean } = {}): AccountsDocument {
  const problems: Problem[] = []
  const p = (path: string, message: string) => problems.push({ path, message })
  const obj = (v: unknown, path: string, allowed: readonly string[], required: readonly string[]): v is Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      p(path, 'must be an object')
      return false
    }
    for (const k of Object.keys(v)) if (!allowed.includes(k)) p(`${path}.${k}`, `unknown field (allowed: ${allowed.join(', ')})`)
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
  if (opts.complete) {
    for (const { id, parent, path } of parents) {
      if (parent === id) p(path, `account "${id}" cannot be its own parent`)
      else if (!ids.account.has(parent)) p(path, `account "${String(id)}" names parent account "${parent}", which is neither in this file nor stored`)
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

export type { DeviceBinding }
