import { describe, expect, it } from 'vitest'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { queryFormat } from './query.js'

describe('queryFormat', () => {
  it('maps the CLI names to ClickHouse formats, JSONEachRow by default', () => {
    expect([queryFormat(undefined), queryFormat('JSONEachRow'), queryFormat('CSV'), queryFormat('Pretty')]).toEqual([
      'JSONEachRow',
      'JSONEachRow',
      'CSVWithNames',
      'PrettyCompactMonoBlock',
    ])
  })

  it('any other name is a usage error naming the choices, names of Object.prototype included', () => {
    for (const name of ['XML', 'toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      let err: unknown
      try {
        queryFormat(name)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(RateflowError)
      expect([name, (err as RateflowError).code, (err as Error).message]).toEqual([name, ErrorCode.BadUsage, 'query: --format must be one of JSONEachRow, CSV, Pretty'])
    }
  })
})
