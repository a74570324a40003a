import { describe, expect, it } from 'vitest'
import { duplicateJsonKeys, jsonPathText, scanJsonKeys } from './json-keys.js'

describe('scanJsonKeys', () => {
  it('finds keys given twice with their paths and lines, and the depth', () => {
    const text = '{\n"a": 1,\n"b": [{"x": 1}, {"x": 2, "x": 3}],\n"a": 2\n}'
    const scan = scanJsonKeys(text)
    expect(scan.twice.map((d) => [jsonPathText(d.path), d.firstLine, d.line])).toEqual([
      ['$.b[1].x', 3, 3],
      ['$.a', 2, 4],
    ])
    expect(scan.twiceCount).toBe(2)
    expect(scan.depth).toBe(3)
    expect(scanJsonKeys('1').depth).toBe(0)
    expect(scanJsonKeys('"{["').depth).toBe(0)
  })

  it('a key written with an escape is the same key', () => {
    expect(duplicateJsonKeys('{"a":1,"\\u0061":2}').map((d) => d.key)).toEqual(['a'])
  })

  it('thousands of keys given twice thousands deep: every one counted, paths built only when asked for', () => {
    // A path copied for each repeat was 20,000 × 20,000 entries: gigabytes, where the text is 160 KB.
    const text = '['.repeat(20_000) + '{' + Array.from({ length: 20_000 }, () => '"a":1').join(',') + '}' + ']'.repeat(20_000)
    const scan = scanJsonKeys(text)
    expect(scan.twiceCount).toBe(19_999)
    expect(scan.depth).toBe(20_001)
    expect(scan.twice[0]!.path).toHaveLength(20_001)
    // A file's problems name the first 100.
    expect(duplicateJsonKeys(text)).toHaveLength(100)
  })
})
