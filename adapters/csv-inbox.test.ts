import { describe, expect, it } from 'vitest'
import { checkCsvInboxEntries } from './csv-inbox.js'

describe('checkCsvInboxEntries', () => {
  it('accepts watch, source and a columns mapping onto CSV columns and dim.<name>', () => {
    const r = checkCsvInboxEntries([{ watch: './inbox', source: 'csv:drop', columns: { ts: 'event_time', region: 'dim.region' } }])
    expect(r.problems).toEqual([])
    expect(r.options).toEqual([{ watch: './inbox', source: 'csv:drop', columns: { ts: 'event_time', region: 'dim.region' } }])
  })

  it('reports every problem with its path, including a columns target that is no CSV column', () => {
    const r = checkCsvInboxEntries([
      { watch: './a', source: 'csv:a', columns: { ts: 'evnt_time', region: 'dim.', n: 3, 'Event Time': 'time' } },
      { source: 'csv:b', colour: 'red' },
      'x',
    ])
    expect(r.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      '$.adapters.csv[0].columns.ts: must be one of event_id, event_time, device_id, account_id, subscription_id, metric, quantity or dim.<name>, got "evnt_time"',
      '$.adapters.csv[0].columns.region: must be one of event_id, event_time, device_id, account_id, subscription_id, metric, quantity or dim.<name>, got "dim."',
      '$.adapters.csv[0].columns.n: must be a string',
      // A CSV header with a space or a dot is quoted: `columns.Event Time` read as two names.
      '$.adapters.csv[0].columns["Event Time"]: must be one of event_id, event_time, device_id, account_id, subscription_id, metric, quantity or dim.<name>, got "time"',
      '$.adapters.csv[1].colour: unknown key',
      '$.adapters.csv[1].watch: is required',
      '$.adapters.csv[2]: must be an object',
    ])
    expect(r.options).toEqual([])
  })

  it('holds a source to the rule every adapter source follows', () => {
    const r = checkCsvInboxEntries([{ watch: './a', source: 'bad source!' }])
    expect(r.problems.map((p) => `${p.path}: ${p.message}`)).toEqual(['$.adapters.csv[0].source: must be letters, digits and _ . : @ - (e.g. "csv:drop")'])
    expect(r.options).toEqual([])
  })
})
