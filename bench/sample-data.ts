import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import type { AccountsDocument, Catalog } from '../catalog/types.js'

/**
 * Sample guiding data and usage: the demo, the tests and the benchmarks use the same generator, so what
 * a new user sees is what is measured. Deterministic for a given seed.
 */
export function sampleCatalog(): Catalog {
  return {
    version: '2026-11-a',
    effective_from: '2026-01-01T00:00:00Z',
    currency: 'USD',
    meters: [
      { id: 'egress_gb', metric: 'bytes_out', aggregation: 'sum', scale: '0.000000001', group_by: ['region'] },
      { id: 'api_calls', metric: 'api_calls', aggregation: 'sum' },
    ],
    plans: [
      {
        id: 'sase-pro',
        billing_period: 'month',
        minimum_commitment: '500',
        charges: [
          { id: 'platform', kind: 'recurring', amount: '300', billing: 'in_advance', proration: 'daily' },
          { id: 'egress', kind: 'usage', meter: 'egress_gb', model: 'per_unit', unit_price: '0.08' },
          { id: 'api', kind: 'usage', meter: 'api_calls', model: 'per_unit', unit_price: '0.0004' },
        ],
      },
    ],
  }
}

export interface SampleSize {
  customers: number
  devicesPerAccount: number
}

export function sampleAccounts(size: SampleSize = { customers: 20, devicesPerAccount: 5 }): AccountsDocument {
  const customers = []
  for (let c = 1; c <= size.customers; c++) {
    const id = String(c).padStart(3, '0')
    const devices = []
    for (let d = 1; d <= size.devicesPerAccount; d++) {
      devices.push({ device_id: deviceId(c, d), from: '2026-10-01T00:00:00Z', to: null })
    }
    customers.push({
      id: `c-${id}`,
      name: `Customer ${id}`,
      accounts: [
        {
          id: `a-${id}`,
          currency: 'USD',
          timezone: c % 2 ? 'Europe/Berlin' : 'America/New_York',
          bill_cycle_day: 1,
          tax: { jurisdiction: c % 2 ? 'DE' : 'US-NY', rate: c % 2 ? '19' : '8.875' },
          parent_account: null,
          subscriptions: [
            { id: `s-${id}`, plan: 'sase-pro', start: '2026-10-01T00:00:00Z', status: 'active' as const, quantity: '1', devices },
          ],
        },
      ],
    })
  }
  return { customers }
}

export function deviceId(customer: number, device: number): string {
  return `fw-${String(customer).padStart(3, '0')}-${device}`
}

export const CSV_HEADER = 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity,dim.region'

/** Small deterministic PRNG (mulberry32): the same seed gives the same file on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface SampleCsvOptions {
  events: number
  size?: SampleSize
  seed?: number
  /** Include a few bad rows of each kind and rows of an unbound device (the demo shows what happens to them). */
  withFaults?: boolean
}

/** One line per event, October 2026, over the sample devices; `e-<n>` event ids. */
export function* sampleCsvLines(opts: SampleCsvOptions): Generator<string> {
  const size = opts.size ?? { customers: 20, devicesPerAccount: 5 }
  const rnd = prng(opts.seed ?? 7)
  const start = Date.parse('2026-10-01T00:00:00Z')
  const span = 31 * 86_400_000
  const regions = ['eu', 'us', 'apac']
  yield CSV_HEADER
  for (let i = 0; i < opts.events; i++) {
    const c = 1 + Math.floor(rnd() * size.customers)
    const d = 1 + Math.floor(rnd() * size.devicesPerAccount)
    const t = new Date(start + Math.floor(rnd() * span)).toISOString()
    if (rnd() < 0.7) {
      const bytes = 1000 + Math.floor(rnd() * 50_000_000)
      yield `e-${i},${t},${deviceId(c, d)},,,bytes_out,${bytes},${regions[i % 3]}`
    } else {
      yield `e-${i},${t},${deviceId(c, d)},,,api_calls,${1 + Math.floor(rnd() * 100)},`
    }
  }
  if (opts.withFaults) {
    const n = opts.events
    yield `f-${n},yesterday,${deviceId(1, 1)},,,bytes_out,100,eu`
    yield `f-${n + 1},2026-10-02T10:00:00Z,${deviceId(1, 1)},,,bytes_out,12kB,eu`
    yield `f-${n + 2},2026-10-02T10:00:00Z,,,,bytes_out,100,eu`
    yield `f-${n + 3},2026-10-02T10:00:00Z,${deviceId(1, 1)},,,bytes_out,100`
    yield `f-${n + 4},2026-10-03T10:00:00Z,fw-unbound-1,,,bytes_out,5000000,eu`
    yield `f-${n + 5},2026-10-03T11:00:00Z,fw-unbound-1,,,api_calls,7,`
  }
}

/** Writes a sample CSV file; resolves when it is on disk. */
export async function writeSampleCsv(path: string, opts: SampleCsvOptions): Promise<void> {
  const out = createWriteStream(path)
  let chunk = ''
  for (const line of sampleCsvLines(opts)) {
    chunk += line + '\n'
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain')
      chunk = ''
    }
  }
  out.end(chunk)
  await once(out, 'finish')
}
