import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { compareUtf8, detached } from './strings.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Heap bytes per key that a Set still holds after the texts the keys were sliced from are dropped. */
function heldPerKey(keep: (s: string) => string): number {
  const batches = 40
  const perBatch = 500
  gc()
  const before = process.memoryUsage().heapUsed
  const set = new Set<string>()
  for (let b = 0; b < batches; b++) {
    // A batch's wire text: ~600 characters per record, a 21-character key inside each.
    const pieces: string[] = []
    for (let i = 0; i < perBatch; i++) pieces.push('x'.repeat(579), `csv:bench\u0000e-${String(b * perBatch + i).padStart(9, '0')}`)
    const text = pieces.join('')
    for (let i = 0; i < perBatch; i++) set.add(keep(text.slice(i * 600 + 579, i * 600 + 600)))
  }
  gc()
  gc()
  expect(set.size).toBe(batches * perBatch)
  return (process.memoryUsage().heapUsed - before) / set.size
}

describe('detached', () => {
  it('keeps no larger string alive for short keys either: below 13 characters it returns the slice, which is a copy', () => {
    // The 12 characters after "csv:bench": "\0e-" and nine digits.
    const twelve = (s: string) => detached(s.slice(9))
    expect(twelve('csv:bench\u0000e-000000001')).toHaveLength(12)
    expect(heldPerKey(twelve)).toBeLessThan(250)
  })

  it('is equal to its input', () => {
    for (const s of ['', 'a', 'csv:bench\u0000e-000000001', 'x'.repeat(1000), 'ünïcødé \u{1F600}']) expect(detached(s)).toBe(s)
  })

  it('keeps no larger string alive: a Set of detached keys holds ~100 bytes per key, a Set of slices the whole texts', () => {
    const sliced = heldPerKey((s) => s)
    const copies = heldPerKey(detached)
    // The slices keep every ~300 KB text: ~600 bytes per key at least. Detached keys hold their own characters.
    expect(sliced).toBeGreaterThan(500)
    expect(copies).toBeLessThan(250)
  })
})

describe('compareUtf8', () => {
  it('orders as the UTF-8 bytes do, where UTF-16 order differs (a character above U+FFFF against U+E000–U+FFFF)', () => {
    const words = ['a', 'ab', 'b', '\uffff', '\ue000x', '😀', '😀a', 'é', '', 'z\u{10ffff}', 'z\uffee']
    const bytes = [...words].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    expect([...words].sort(compareUtf8)).toEqual(bytes)
    // JavaScript's own order puts 😀 (U+1F600) before U+FFFF.
    expect([...words].sort()).not.toEqual(bytes)
    expect(compareUtf8('same', 'same')).toBe(0)
  })
})
