import { parseString } from 'fast-csv'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CsvRowParser, toCsvLine, type CsvItem } from './csv-parser.js'

/** Parses `text` fed in the given chunk sizes (cycled). */
function parseChunked(text: string, sizes: readonly number[] = [text.length || 1], max?: number): CsvItem[] {
  const p = new CsvRowParser(max)
  const out: CsvItem[] = []
  let i = 0
  let s = 0
  while (i < text.length) {
    const size = Math.max(1, sizes[s++ % sizes.length]!)
    out.push(...p.push(text.slice(i, i + size)))
    i += size
  }
  out.push(...p.end())
  return out
}

function rows(items: CsvItem[]): string[][] {
  return items.map((it) => (it.ok ? it.fields : ['ERROR', it.error]))
}

/** What the CSV adapter got from fast-csv with its options. */
function fastCsv(text: string): Promise<string[][]> {
  return new Promise((resolve, reject) => {
    const out: string[][] = []
    parseString(text, { headers: false, ignoreEmpty: true, trim: false })
      .on('data', (r: string[]) => out.push(r))
      .on('error', reject)
      .on('end', () => resolve(out))
  })
}

describe('CsvRowParser', () => {
  it('splits plain rows, LF and CRLF, and reports physical lines', () => {
    const items = parseChunked('a,b,c\r\n1,2,3\n\n4,,6\n')
    expect(items).toEqual([
      { ok: true, fields: ['a', 'b', 'c'], raw: 'a,b,c', line: 1 },
      { ok: true, fields: ['1', '2', '3'], raw: '1,2,3', line: 2 },
      { ok: true, fields: ['4', '', '6'], raw: '4,,6', line: 4 },
    ])
  })

  it('quoted fields: commas, doubled quotes, line breaks inside; raw is the row written back as CSV', () => {
    const items = parseChunked('id,note\n1,"a,b"\n2,"say ""hi"""\n3,"two\nlines"\n4, "x" \n5,"plain"\n')
    expect(rows(items)).toEqual([['id', 'note'], ['1', 'a,b'], ['2', 'say "hi"'], ['3', 'two\nlines'], ['4', 'x'], ['5', 'plain']])
    expect(items.map((i) => i.line)).toEqual([1, 2, 3, 4, 6, 7])
    expect(items[2]!.raw).toBe('2,"say ""hi"""')
    expect(items[5]!.raw).toBe('5,plain')
  })

  it('drops a byte order mark, skips rows of blanks, takes a last row without a line break and a lone CR as a row end', () => {
    expect(rows(parseChunked('\uFEFFa,b\n , \n,,\nc,d\re,f'))).toEqual([['a', 'b'], ['c', 'd'], ['e', 'f']])
  })

  it('text after a closing quote makes that row an error with its raw text; the next rows go on', () => {
    const items = parseChunked('a,b\n1,"x"y,2\n3,4\n')
    expect(items[1]).toMatchObject({ ok: false, raw: '1,"x"y,2', line: 2 })
    expect((items[1] as { error: string }).error).toMatch(/column 2: text after the closing quote/)
    expect(items[2]).toEqual({ ok: true, fields: ['3', '4'], raw: '3,4', line: 3 })
  })

  it('an over-long row with text after a closing quote, ending where a chunk ends, costs its own line only', () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const p = new CsvRowParser(16)
      const items = [...p.push('1,"x"' + 'y'.repeat(16) + eol), ...p.push(`2,3${eol}4,5${eol}`), ...p.end()]
      expect(items.map((i) => [i.ok, i.line, i.ok ? i.raw : ''])).toEqual([[false, 1, ''], [true, 2, '2,3'], [true, 3, '4,5']])
    }
  })

  it('a row of exactly maxRowChars is a row, when its CRLF is cut by a chunk boundary too', () => {
    const items = parseChunked('aaaaaa\r\nb\r\n', [1], 6)
    expect(items.map((i) => [i.ok, i.line, i.raw])).toEqual([[true, 1, 'aaaaaa'], [true, 2, 'b']])
  })

  it('gives the same items however the text is chunked, for any text of quotes, commas, CR and LF, broken rows included', () => {
    const text = fc.array(fc.constantFrom('a', 'b', ',', '"', '\r', '\n', '\r\n'), { maxLength: 80 }).map((a) => a.join(''))
    const sizes = fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 5 })
    const view = (items: CsvItem[]) => items.map((i) => [i.ok, i.line, i.ok ? i.raw : i.error])
    fc.assert(
      fc.property(text, sizes, (t, s) => {
        // No row over the limit: over it, how much a row spanning lines holds depends on where the chunks fall.
        const max = t.length + 1
        expect(view(parseChunked(t, s, max))).toEqual(view(parseChunked(t, [t.length || 1], max)))
      }),
      { numRuns: 5000 },
    )
  })

  it('gives the same items however the text is chunked with a small row limit too (the over-long paths), down to 2', () => {
    const text = fc.array(fc.constantFrom('a', ',', '"x"', '"x"y', '\r', '\n', '\r\n'), { maxLength: 40 }).map((a) => a.join(''))
    const sizes = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 5 })
    // Which rows are rows and which rejects, on which lines: a row over the limit is refused either way, but the reason
    // may name the limit or what else is wrong with it, by where the chunks fall.
    const view = (items: CsvItem[]) => items.map((i) => [i.ok, i.line, i.ok ? i.raw : ''])
    fc.assert(
      fc.property(text, sizes, fc.integer({ min: 2, max: 8 }), (t, s, max) => {
        expect(view(parseChunked(t, s, max))).toEqual(view(parseChunked(t, [t.length || 1], max)))
      }),
      { numRuns: 5000 },
    )
  })

  it('text after a closing quote costs its own line only, with LF, CRLF or lone-CR line ends, however the chunks fall', () => {
    // A CR-only file once skipped to the next LF, which it has none of: the rows after the broken one were lost.
    for (const eol of ['\n', '\r\n', '\r']) {
      const text = ['a,b', '1,"x"y,2', '3,4', '5,"6"', '7,8'].join(eol) + eol
      for (const sizes of [[text.length], [1], [2, 3], [9], [10], [11]]) {
        const items = parseChunked(text, sizes)
        expect(items.map((i) => [i.ok, i.line, i.raw])).toEqual([[true, 1, 'a,b'], [false, 2, '1,"x"y,2'], [true, 3, '3,4'], [true, 4, '5,6'], [true, 5, '7,8']])
      }
    }
  })

  it('a quote open at the end of the input rejects only the line it opened on; the lines after it are rows again', () => {
    // (A later quote would close the open one, as RFC 4180 reads it: none follows here.)
    const text = 'a,b\n1,"open\n2,3\r\n4,five\n6,7'
    for (const sizes of [[text.length], [1], [3, 5], [7]]) {
      const items = parseChunked(text, sizes)
      expect(items).toHaveLength(5)
      expect(items[1]).toMatchObject({ ok: false, line: 2, raw: '1,"open' })
      expect((items[1] as { error: string }).error).toMatch(/not closed before the end of the file; the lines after this one are read as rows/)
      expect(items.slice(2)).toEqual([
        { ok: true, fields: ['2', '3'], raw: '2,3', line: 3 },
        { ok: true, fields: ['4', 'five'], raw: '4,five', line: 4 },
        { ok: true, fields: ['6', '7'], raw: '6,7', line: 5 },
      ])
    }
    // On the last line, the whole line is the reject.
    expect(parseChunked('a,b\n1,"open to the end')[1]).toMatchObject({ ok: false, line: 2, raw: '1,"open to the end' })
  })

  it('a quoted field over lines with text after its closing quote rejects each of its lines on its own, none read as a row', () => {
    // A quote never closed, "closed" by the next row's quoted field (s1, s2), or a field over lines whose quote is not
    // doubled (s5, whose second line looks like a row of its own): which rows were meant cannot be told, so none is
    // billed, and every line is counted and kept. Rows after the span are rows again.
    for (const eol of ['\n', '\r\n', '\r']) {
      const text = ['id,q,site', 's1,1,"Main office', 's2,7,"Branch, east"', 's3,2,plain', 's4,3,"two', 'lines"', 's5,4,"ticket 4711', 'e2,999,closed"x', 's6,5,z'].join(eol) + eol
      for (const sizes of [[text.length], [1], [2, 3], [7], [11]]) {
        const items = parseChunked(text, sizes)
        expect(items.map((i) => [i.ok, i.line, i.ok ? i.fields : i.raw])).toEqual([
          [true, 1, ['id', 'q', 'site']],
          [false, 2, 's1,1,"Main office'],
          [false, 3, 's2,7,"Branch, east"'],
          [true, 4, ['s3', '2', 'plain']],
          // A quoted field over two lines, closed well, is still one row.
          [true, 5, ['s4', '3', `two${eol}lines`]],
          [false, 7, 's5,4,"ticket 4711'],
          [false, 8, 'e2,999,closed"x'],
          [true, 9, ['s6', '5', 'z']],
        ])
        expect((items[1] as { error: string }).error).toBe('a quoted field opened on this line runs to the next line, where text follows its closing quote (a quote never closed, or one inside a field not doubled: ""); this line and the next are rejected, each on its own')
        expect((items[2] as { error: string }).error).toBe('a line of the quoted field opened on line 2 (text follows its closing quote on line 3): rejected with it')
      }
    }
  })

  it('a blank line inside such a span is no reject (a blank line is no row anywhere)', () => {
    const items = parseChunked('a,b,c\n1,"x,3\n4,5,6\n\n7,"q",9\n10,11,12\n')
    expect(items.map((i) => [i.ok, i.line, i.ok ? i.fields : i.raw])).toEqual([
      [true, 1, ['a', 'b', 'c']],
      [false, 2, '1,"x,3'],
      [false, 3, '4,5,6'],
      [false, 5, '7,"q",9'],
      [true, 6, ['10', '11', '12']],
    ])
  })

  it('a quote still open after maxRowChars across lines rejects its first line in full and reads the lines after it again', () => {
    const rows = Array.from({ length: 300 }, (_, i) => `${i},v${i}`)
    const text = `a,b\n1,"open\n${rows.join('\n')}\n`
    for (const sizes of [[64], [1000], [7, 300]]) {
      const items = parseChunked(text, sizes, 500)
      expect(items[1]).toMatchObject({ ok: false, line: 2, raw: '1,"open' })
      expect((items[1] as { error: string }).error).toMatch(/still open after 500 characters/)
      // Every line after it is a row again, on its own line number: nothing is lost.
      const after = items.slice(2)
      expect(after.map((r) => r.raw)).toEqual(rows)
      expect(after.map((r) => r.line)).toEqual(rows.map((_, i) => i + 3))
    }
  })

  it('a line over maxRowChars is rejected wherever the chunks fall, and in a CR-only file the rows after it go on', () => {
    const long = 'x'.repeat(3000)
    for (const eol of ['\n', '\r', '\r\n']) {
      const text = ['a,b', '1,2', `3,${long}`, '5,6', '7,8'].join(eol) + eol
      for (const sizes of [[text.length], [100], [999, 7], [2999]]) {
        const items = parseChunked(text, sizes, 2000)
        expect(items.map((i) => [i.ok, i.line])).toEqual([[true, 1], [true, 2], [false, 3], [true, 4], [true, 5]])
        expect(items[2]!.raw).toBe(`3,${long}`.slice(0, 1024))
        expect(items.slice(3).map((i) => i.raw)).toEqual(['5,6', '7,8'])
      }
    }
    // A quoted row over the limit too.
    const quoted = parseChunked(`a,b\n1,"${'y'.repeat(2500)}"\n3,4\n`, [10_000], 2000)
    expect(quoted.map((i) => i.ok)).toEqual([true, false, true])
  })

  it('a quoted row keeps its text as read beside the raw written back from its fields', () => {
    const [, item] = parseChunked('a,b\n1,  "x ""y"""\n')
    expect(item).toEqual({ ok: true, fields: ['1', 'x "y"'], raw: '1,"x ""y"""', exact: '1,  "x ""y"""', line: 2 })
  })

  it('bounded memory: a row longer than maxRowChars is an error with a preview, and parsing resumes after the next line break', () => {
    const long = 'x'.repeat(5000)
    const items = parseChunked(`a,b\n1,"${long}\nstill inside\n2,3\n`, [1000], 2000)
    expect(items[0]).toMatchObject({ ok: true, fields: ['a', 'b'] })
    expect(items[1]).toMatchObject({ ok: false, line: 2 })
    expect(items[1]!.raw.length).toBe(1024)
    expect(items.at(-1)).toEqual({ ok: true, fields: ['2', '3'], raw: '2,3', line: 4 })
  })

  it('gives the same rows as fast-csv (the parser it replaces) for any well-formed file, however it is chunked', async () => {
    const field = fc.oneof(
      fc.stringMatching(/^[a-z0-9 .:-]{0,6}$/),
      fc.constantFrom('', ' ', 'a b', '"q"', 'x,y', 'two\nlines', 'cr\r\nlf', '""', ' lead', 'tail '),
    )
    const row = fc.array(field, { minLength: 1, maxLength: 5 })
    await fc.assert(
      fc.asyncProperty(fc.array(row, { minLength: 1, maxLength: 8 }), fc.constantFrom('\n', '\r\n'), fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 4 }), fc.boolean(), async (data, eol, sizes, quoteAll) => {
        // fast-csv drops the spaces of a first field that is only spaces (` ,x` → ["", "x"]); this parser keeps
        // every field as written, so such rows are left out of the comparison.
        fc.pre(data.every((r) => r[0]!.length === 0 || r[0]!.trim().length > 0 || r.length === 1))
        const text = data.map((r) => (quoteAll ? r.map((v) => `"${v.replace(/"/g, '""')}"`).join(',') : toCsvLine(r))).join(eol) + eol
        const ours = rows(parseChunked(text, sizes))
        expect(ours).toEqual(await fastCsv(text))
      }),
      { numRuns: 300 },
    )
  })
})
