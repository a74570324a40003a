import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ValidationError } from '../common/errors.js'
import { jsonSyntaxErrorOffset, readJsonFile, validatedJson } from './json-file.js'

const dir = mkdtempSync(join(tmpdir(), 'rf-json-'))
let n = 0
const file = (text: string | Buffer) => {
  const f = join(dir, `f${n++}.json`)
  writeFileSync(f, text)
  return f
}

describe('readJsonFile', () => {
  it('names each key given twice at its path, with both lines, and keeps the document JSON.parse reads', () => {
    const text = [
      '{"plans": [',
      '  {"id": "p", "charges": [{"id": "c", "unit_price": "0.01",',
      '                            "unit_price": "0.10"}]},',
      '  {"id": "q", "id": "r"}],',
      ' "odd key": {"x": 1, "x": 2},',
      ' "currency": "USD", "currency": "EUR"}',
    ].join('\n')
    const j = readJsonFile(file(text))
    expect(j.doc).toEqual(JSON.parse(text))
    expect(j.problems).toEqual([
      { path: '$.plans[0].charges[0].unit_price', message: 'key "unit_price" is given twice (lines 2 and 3): keep one' },
      { path: '$.plans[1].id', message: 'key "id" is given twice (lines 4 and 4): keep one' },
      { path: '$["odd key"].x', message: 'key "x" is given twice (lines 5 and 5): keep one' },
      { path: '$.currency', message: 'key "currency" is given twice (lines 6 and 6): keep one' },
    ])
  })

  it('reads keys as JSON does (an escape is the same key), and does not take text inside strings for structure', () => {
    const j = readJsonFile(file('{"a": "}{\\"a\\": 1, [", "b": ["{", {"a": 1}], "\\u0061": 2, "c\\"": {"d": "x", "d\\\\": "y"}}'))
    expect(j.problems).toEqual([{ path: '$.a', message: 'key "a" is given twice (lines 1 and 1): keep one' }])
  })

  it('an object of many keys is checked whole, the last one given twice found', () => {
    const keys = Array.from({ length: 100_000 }, (_, k) => `"k${k}": ${k}`)
    const j = readJsonFile(file(`{${keys.join(',')}, "k40": 1}`))
    expect(j.problems).toEqual([{ path: '$.k40', message: 'key "k40" is given twice (lines 1 and 1): keep one' }])
    expect(readJsonFile(file(`{"k0": 0, "k1": 1, ${keys.slice(2).join(',')}, "k1": 2}`)).problems.map((p) => p.path)).toEqual(['$.k1'])
  })

  it('the same key in sibling objects, or in an object and its parent, is no problem', () => {
    expect(readJsonFile(file('[{"id": 1}, {"id": 2, "x": {"id": 3}}]')).problems).toEqual([])
    expect(readJsonFile(file('"scalar"')).problems).toEqual([])
  })

  it('refuses bytes that are not UTF-8 naming the byte, reads past a BOM, and names a JSON syntax error', () => {
    expect(() => readJsonFile(file(Buffer.from([0x7b, 0x22, 0x63, 0x61, 0x66, 0xe9, 0x22, 0x3a, 0x31, 0x7d])))).toThrow(/not UTF-8 \(at byte 5\)/)
    expect(readJsonFile(file('\ufeff{"a": 1}')).doc).toEqual({ a: 1 })
    expect(() => readJsonFile(file('{"a": 1,}'))).toThrow(/not valid JSON/)
    expect(() => readJsonFile(join(dir, 'none.json'))).toThrow(/none\.json: cannot read/)
  })

  it('names the line and column of a JSON syntax error, where the parser gives an offset or nothing', () => {
    const refused = (text: string) => {
      const f = file(text)
      try {
        readJsonFile(f)
      } catch (err) {
        return (err as Error).message.slice(f.length)
      }
      throw new Error('expected an error')
    }
    expect(refused('{\n  "adapters": {\n    "mqtt" [\n  ]}}\n')).toBe(": not valid JSON at line 3, column 12: Expected ':' after property name in JSON")
    // Node 20 says only "Unexpected token" (a trailing comma in an array, a bad word) or "Unexpected end".
    expect(refused('{"plans": [\n  {"id": "p"},\n]}')).toMatch(/^: not valid JSON at line 3, column 1: Unexpected token ']'/)
    expect(refused('{"a": 1,\n "b": tru}')).toMatch(/^: not valid JSON at line 2, column 10: Unexpected token '}'/)
    expect(refused('{"a": [1,\n')).toBe(': not valid JSON at line 2, column 1: Unexpected end of JSON input')
    // Columns count characters (é is one, 😀 one), after a byte order mark, which no editor shows.
    expect(refused('\ufeff{"é😀": 1 "b": 2}')).toBe(": not valid JSON at line 1, column 10: Expected ',' or '}' after property value in JSON")
  })
})

describe('jsonSyntaxErrorOffset', () => {
  it("is the offset JSON.parse names, where it names one, and -1 for JSON", () => {
    const texts = ['{"a": 1,}', '[1 2]', '{"a":"x\n"}', '{"a": 01}', '{"a": -}', '1.', '1e+', '"\\q"', '"\\u12"', '{a: 1}', '"x" y', '{"a"}', '"abc', '[[[]]]]']
    for (const t of texts) {
      let said: string | undefined
      try {
        JSON.parse(t)
      } catch (err) {
        said = /at position (\d+)/.exec((err as Error).message)?.[1]
      }
      expect([t, jsonSyntaxErrorOffset(t)]).toEqual([t, Number(said)])
    }
    for (const t of ['[,1]', '[1,,2]', 'nulx', '{"a": x}', '', '{"a":']) expect(() => JSON.parse(t)).toThrow()
    expect(['[,1]', '[1,,2]', 'nulx', '{"a": x}', '', '{"a":'].map(jsonSyntaxErrorOffset)).toEqual([1, 3, 3, 6, 0, 5])
    expect(jsonSyntaxErrorOffset('{"a": [1, 2.5e-3, -0, true, false, null, "x\\u00e9"], "b": {}}')).toBe(-1)
    // Nesting deeper than any stack.
    expect(jsonSyntaxErrorOffset('['.repeat(100_000) + ']'.repeat(100_000) + ',')).toBe(200_000)
  })
})

describe('validatedJson', () => {
  const validate = (doc: unknown) => {
    if ((doc as { ok?: boolean }).ok !== true) throw new ValidationError('thing', [{ path: '$.ok', message: 'must be true' }])
    return 'valid'
  }
  it('names the keys given twice with the document\'s own problems, in one error', () => {
    const err = (() => {
      try {
        validatedJson(readJsonFile(file('{"ok": false, "n": 1, "n": 2}')), 'thing', validate)
      } catch (e) {
        return e as ValidationError
      }
    })()
    expect(err).toBeInstanceOf(ValidationError)
    expect(err!.problems.map((p) => p.path)).toEqual(['$.n', '$.ok'])
    expect(err!.message).toMatch(/^thing: 2 problems/)
  })
  it('a key given twice is a problem even when the document is otherwise valid; without one the value comes back', () => {
    expect(() => validatedJson(readJsonFile(file('{"ok": true, "ok": true}')), 'thing', validate)).toThrow(/thing: 1 problem\n {2}\$\.ok: key "ok" is given twice/)
    expect(validatedJson(readJsonFile(file('{"ok": true}')), 'thing', validate)).toBe('valid')
  })
})
