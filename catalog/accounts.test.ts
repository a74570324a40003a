import { describe, expect, it } from 'vitest'
import { sampleAccounts } from '../bench/sample-data.js'
import { ValidationError } from '../common/errors.js'
import { mergeAccounts, validateAccounts } from './accounts.js'

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
})
