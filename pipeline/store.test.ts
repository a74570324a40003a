import { describe, expect, it } from 'vitest'
import { DDL, fileType } from './store.js'

describe('fileType', () => {
  it('reads LowCardinality columns as their inner type, nested or not, and leaves other types alone', () => {
    expect(fileType('LowCardinality(String)')).toBe('String')
    expect(fileType('LowCardinality(Nullable(String))')).toBe('Nullable(String)')
    expect(fileType('Map(LowCardinality(String), String)')).toBe('Map(String, String)')
    expect(fileType('Tuple(LowCardinality(Nullable(FixedString(16))), UInt8)')).toBe('Tuple(Nullable(FixedString(16)), UInt8)')
    expect(fileType("DateTime64(3, 'UTC')")).toBe("DateTime64(3, 'UTC')")
    expect(fileType('Decimal(38, 9)')).toBe('Decimal(38, 9)')
  })

  it('leaves no LowCardinality in any file structure of the DDL', () => {
    const types = DDL.flatMap((ddl) => [...ddl.matchAll(/LowCardinality\([^)]*\)/g)].map((m) => m[0]))
    expect(types.length).toBeGreaterThan(0)
    for (const t of types) expect(fileType(t)).not.toContain('LowCardinality')
  })
})
