import { describe, expect, it } from 'vitest'
import { sampleAccounts } from '../bench/sample-data.js'
import { ValidationError } from '../common/errors.js'
import { applyAccounts, cycleChangingAccounts, mergeAccounts, validateAccounts } from './accounts.js'

function withParent(parent: string, id = 'a-child'): Record<string, any> {
  return {
    customers: [
      {
        id: 'c-child',
        name: 'Child Co',
        accounts: [{ id, currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, tax: { jurisdiction: 'US', rate: '0' }, parent_account: parent, subscriptions: [] }],
      },
    ],
  }
}

const problemsOf = (f: () => unknown): string[] => {
  try {
    f()
  } catch (err) {
    if (err instanceof ValidationError) return err.problems.map((p) => `${p.path}: ${p.message}`)
    throw err
  }
  return []
}

describe('validateAccounts: parent accounts', () => {
  const stored = validateAccounts(sampleAccounts({ customers: 1, devicesPerAccount: 1 }))

  it('a file alone may name a parent that is stored already; merged with the stored accounts, it checks', () => {
    const file = validateAccounts(withParent('a-001'))
    expect(problemsOf(() => validateAccounts(mergeAccounts(stored, file), { complete: true }))).toEqual([])
  })

  it('with every account known, a parent that is no account, or the account itself, is a problem naming both', () => {
    const missing = validateAccounts(withParent('a-missing'))
    expect(problemsOf(() => validateAccounts(mergeAccounts(stored, missing), { complete: true }))).toEqual([
      '$.customers[1].accounts[0].parent_account: account "a-child" names parent account "a-missing", which is neither in this file nor stored',
    ])
    const self = validateAccounts(withParent('a-child'))
    expect(problemsOf(() => validateAccounts(mergeAccounts(stored, self), { complete: true }))).toEqual([
      '$.customers[1].accounts[0].parent_account: account "a-child" cannot be its own parent',
    ])
  })

  it('a longer parent cycle is a problem, in one file and across applies (named once)', () => {
    const acct = (id: string, parent: string) => ({ id, currency: 'USD', timezone: 'UTC', bill_cycle_day: 1, parent_account: parent, subscriptions: [] })
    const two = { customers: [{ id: 'c-x', name: 'X', accounts: [acct('a-x', 'a-y'), acct('a-y', 'a-x')] }] }
    expect(problemsOf(() => validateAccounts(two, { knownAccounts: new Set() }))).toEqual([
      '$.customers[0].accounts[0].parent_account: accounts form a parent cycle: "a-x" → "a-y" → "a-x"',
    ])
    // Stored: p-2 → p-1, p-3 → p-2; the file makes p-1 → p-3.
    const chain = validateAccounts({ customers: [{ id: 'c-p', name: 'P', accounts: [acct('p-2', 'p-1'), acct('p-3', 'p-2'), { ...acct('p-1', 'x'), parent_account: null }] }] })
    const closing = { customers: [{ id: 'c-p', name: 'P', accounts: [acct('p-1', 'p-3')] }] }
    // Named at the first account of the cycle in the merged accounts, here a stored one, by its ids.
    expect(problemsOf(() => applyAccounts(chain, closing))).toEqual([
      'stored customer "c-p" account "p-2" parent_account: accounts form a parent cycle: "p-2" → "p-1" → "p-3" → "p-2"',
    ])
  })
})

describe('applyAccounts: billing cycles', () => {
  const stored = validateAccounts(sampleAccounts({ customers: 1, devicesPerAccount: 1 }))
  const changed = () => {
    const a = structuredClone(stored.customers[0]!.accounts[0]!) as unknown as Record<string, unknown>
    a.bill_cycle_day = 15
    a.timezone = 'Pacific/Kiritimati'
    return a
  }
  const was = stored.customers[0]!.accounts[0]!

  it("refuses to change the bill_cycle_day or timezone of a stored account with rated usage, with the merge's other problems", () => {
    const a = changed()
    expect(cycleChangingAccounts(stored, { customers: [{ ...stored.customers[0]!, accounts: [a] }] })).toEqual(['a-001'])
    const rated = new Set(['a-001'])
    expect(problemsOf(() => applyAccounts(stored, { customers: [{ ...stored.customers[0]!, accounts: [a] }] }, { rated }))).toEqual([
      `$.customers[0].accounts[0].bill_cycle_day: account "a-001" is stored with bill_cycle_day ${was.bill_cycle_day}: changing it to 15 is refused: it has rated usage, whose billing periods the new ones would overlap (free units, flat fees and minimums given twice); a change from a period boundary on is not supported`,
      `$.customers[0].accounts[0].timezone: account "a-001" is stored with timezone "${was.timezone}": changing it to "Pacific/Kiritimati" is refused: it has rated usage, whose billing periods the new ones would overlap (free units, flat fees and minimums given twice); a change from a period boundary on is not supported`,
    ])
    // With a merge conflict too (a device stored under another account): both, in one run.
    const two = validateAccounts(sampleAccounts({ customers: 2, devicesPerAccount: 1 }))
    const d = structuredClone(two.customers[1]!.accounts[0]!.subscriptions[0]!) as unknown as Record<string, unknown>
    d.id = 's-new'
    const both = { customers: [{ ...two.customers[0]!, accounts: [{ ...a, subscriptions: [...two.customers[0]!.accounts[0]!.subscriptions, d] }] }] }
    const problems = problemsOf(() => applyAccounts(two, both, { rated }))
    expect(problems).toHaveLength(3)
    expect(problems[2]).toMatch(/^\$\.customers\[0\]\.accounts\[0\]\.subscriptions\[1\]\.devices\[0\]: device "fw-002-1" is already bound in this period/)
  })

  it('lets an account with no rated usage change them; refuses when that could not be read; unchanged, it applies', () => {
    const file = { customers: [{ ...stored.customers[0]!, accounts: [changed()] }] }
    expect(problemsOf(() => applyAccounts(stored, file, { rated: new Set() }))).toEqual([])
    expect(problemsOf(() => applyAccounts(stored, file, { rated: undefined }))[0]).toMatch(
      /bill_cycle_day: .* is refused: whether it has rated usage cannot be read while another process holds the data directory/,
    )
    expect(cycleChangingAccounts(stored, { customers: [stored.customers[0]!] })).toEqual([])
    expect(problemsOf(() => applyAccounts(stored, { customers: [stored.customers[0]!] }))).toEqual([])
    // Not an accounts file at all: nothing to look up (validation names its problems).
    expect(cycleChangingAccounts(stored, 'x')).toEqual([])
  })

  it('takes a zone written another way the zone database reads as the same zone (europe/berlin) for no change', () => {
    expect(was.timezone).toBe('Europe/Berlin')
    const respelled = { ...structuredClone(stored.customers[0]!.accounts[0]!), timezone: 'europe/berlin' }
    const file = { customers: [{ ...stored.customers[0]!, accounts: [respelled] }] }
    expect(cycleChangingAccounts(stored, file)).toEqual([])
    expect(problemsOf(() => applyAccounts(stored, file, { rated: new Set(['a-001']) }))).toEqual([])
    // Another zone with the same offset today is another zone.
    const paris = { customers: [{ ...stored.customers[0]!, accounts: [{ ...respelled, timezone: 'Europe/Paris' }] }] }
    expect(cycleChangingAccounts(stored, paris)).toEqual(['a-001'])
  })
})

describe('applyAccounts', () => {
  const stored = validateAccounts(sampleAccounts({ customers: 2, devicesPerAccount: 1 }))
  const sub = (devices: string[]) => ({ id: 's-001', plan: 'sase-pro', start: '2026-10-01T00:00:00Z', status: 'active', devices: devices.map((device_id) => ({ device_id, from: '2026-10-01T00:00:00Z', to: null })) })
  const file = (devices: string[], parent?: string) => ({
    // a-001 as stored (sampleAccounts), but for its devices and parent.
    customers: [{ id: 'c-001', name: 'One', accounts: [{ id: 'a-001', currency: 'USD', timezone: 'Europe/Berlin', bill_cycle_day: 1, ...(parent ? { parent_account: parent } : {}), subscriptions: [sub(devices)] }] }],
  })

  it("reports a conflict with a stored entity at the file's path, whichever comes first in the merged accounts", () => {
    // fw-002-1 is stored under c-002, which comes after c-001 in the merged accounts: the overlap is found at c-002.
    expect(problemsOf(() => applyAccounts(stored, file(['fw-001-1', 'fw-002-1'])))).toEqual([
      '$.customers[0].accounts[0].subscriptions[0].devices[1]: device "fw-002-1" is already bound in this period at stored customer "c-002" account "a-002" subscription "s-002" devices[0]',
    ])
  })

  it('names stored entities whose ids hold $ patterns as they are', () => {
    const odd = structuredClone(stored)
    odd.customers[1]!.id = "c-$`-$&-$'-2"
    expect(problemsOf(() => applyAccounts(odd, file(['fw-001-1', 'fw-002-1'])))).toEqual([
      `$.customers[0].accounts[0].subscriptions[0].devices[1]: device "fw-002-1" is already bound in this period at stored customer "c-$\`-$&-$'-2" account "a-002" subscription "s-002" devices[0]`,
    ])
  })

  it("checks parents against the file and the stored accounts in the same pass as the file's other problems", () => {
    const bad = file(['fw-001-1'], 'ghost') as Record<string, any>
    bad.customers[0].accounts[0].timezone = 'Mars/Olympus'
    expect(problemsOf(() => applyAccounts(stored, bad))).toEqual([
      '$.customers[0].accounts[0].timezone: unknown IANA time zone "Mars/Olympus"',
      '$.customers[0].accounts[0].parent_account: account "a-001" names parent account "ghost", which is neither in this file nor stored',
    ])
    expect(problemsOf(() => applyAccounts(stored, file(['fw-001-1'], 'a-002')))).toEqual([])
  })
})
