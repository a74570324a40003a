import { afterAll, afterEach } from 'vitest'
import { killStrayChildren, tempDir } from './cli.js'

/** A device binding of an accounts file (CONTRACT §4), open-ended when `to` is null. */
export interface TestBinding {
  device_id: string
  from: string
  to: string | null
}

/**
 * An accounts file (CONTRACT §4) of one customer `c-1` with one account `a-1` (USD, UTC, cycle day 1) and one active
 * subscription `s-1` on `plan` from 2026-10-01, binding `devices`; `account` and `subscription` override their fields.
 */
export function oneSubscription(
  plan: string,
  devices: TestBinding[],
  overrides: { account?: Record<string, unknown>; subscription?: Record<string, unknown> } = {},
) {
  return {
    customers: [
      {
        id: 'c-1',
        name: 'Acme',
        accounts: [
          {
            id: 'a-1',
            currency: 'USD',
            timezone: 'UTC',
            bill_cycle_day: 1,
            tax: { jurisdiction: 'US', rate: '0' },
            parent_account: null,
            ...overrides.account,
            subscriptions: [{ id: 's-1', plan, start: '2026-10-01T00:00:00Z', status: 'active', quantity: '1', devices, ...overrides.subscription }],
          },
        ],
      },
    ],
  }
}

/**
 * A data directory of a test file's own, removed after its tests, and `--data` for it; every CLI child a test left
 * running is killed after it, so a test that timed out does not hold the directory for the next.
 */
export function cliTestDir(prefix: string): { dir: string; d: string[] } {
  const tmp = tempDir(prefix)
  afterEach(() => {
    killStrayChildren()
  })
  afterAll(() => tmp.cleanup())
  return { dir: tmp.dir, d: ['--data', tmp.dir] }
}
