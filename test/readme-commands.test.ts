/**
 * The README's command examples cannot rot: the ```sh block under "## Commands" runs as written, line by line, on the
 * files in examples/, with `rateflow` as `node bin/rateflow.js`, in a data directory of its own; a `# {…}` comment after
 * a command is the start of what it prints, and must be.
 */
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { killStrayChildren, rateflow, tempDir } from './helpers/cli.js'

const ROOT = resolve(import.meta.dirname, '..')
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
const work = tempDir('rateflow-readme-')

afterAll(() => {
  killStrayChildren()
  work.cleanup()
})

/** The ```sh block under `## Commands`: each command line, with the printed output its comment shows, if any. */
function commandLines(): Array<{ line: string; args: string[]; prints?: string }> {
  const section = README.slice(README.indexOf('## Commands'))
  const block = /```sh\n([\s\S]*?)```/.exec(section)
  if (!block) throw new Error('README.md has no ```sh block under "## Commands"')
  return block[1]!
    .split('\n')
    .filter((l) => l.startsWith('rateflow '))
    .map((line) => {
      const { words, comment } = shellWords(line)
      const prints = comment !== undefined && comment.startsWith('{') ? comment.replace(/,?…}$/, '').replace(/}$/, '') : undefined
      return { line, args: words.slice(1), ...(prints !== undefined ? { prints } : {}) }
    })
}

/** Words of a shell line as sh splits them (double quotes only, as the README uses), and its trailing # comment. */
function shellWords(line: string): { words: string[]; comment?: string } {
  const words: string[] = []
  let word: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (c === '"') {
      const end = line.indexOf('"', i + 1)
      word = (word ?? '') + line.slice(i + 1, end)
      i = end
    } else if (c === ' ') {
      if (word !== undefined) words.push(word)
      word = undefined
    } else if (c === '#' && word === undefined) {
      return { words, comment: line.slice(i + 1).trim() }
    } else word = (word ?? '') + c
  }
  if (word !== undefined) words.push(word)
  return { words }
}

it('runs every command of the README\'s Commands block as written, on examples/, and each prints what its comment says', async () => {
  const lines = commandLines()
  expect(lines.map((l) => l.args.slice(0, 2).join(' '))).toEqual([
    'catalog apply',
    'catalog list',
    'accounts apply',
    'ingest csv',
    'query SELECT account_id, sum(amount) FROM rated_usage GROUP BY account_id',
    'price --catalog',
    'rate --catalog',
  ])
  for (const { line, args, prints } of lines) {
    const r = await rateflow([...args, '--data', work.dir], {}, ROOT)
    expect([line, r.code, r.stderr]).toEqual([line, 0, ''])
    if (prints !== undefined) expect([line, r.stdout.startsWith(prints)]).toEqual([line, true])
  }
}, 120_000)

it('the demo rates --events events, and the commands it shows can be pasted into a shell as they are', async () => {
  const data = join(work.dir, 'demo')
  const r = await rateflow(['demo', '--events', '2000', '--data', data], {}, ROOT)
  expect([r.code, r.stderr]).toEqual([0, ''])
  // 2,000 events and the faults: 4 rejects and 2 held (--events was read and ignored: 100,000 were written).
  expect(r.stdout).toContain('{"read":2006,"rated":2000,"duplicates":0,"rejected":4,"suspended":2}')
  const shown = r.stdout.split('\n').filter((l) => l.startsWith('$ npx rateflow '))
  expect(shown).toHaveLength(5)
  // The last one (what did not rate), pasted into bash with `rateflow` as the checkout's bin, prints its table.
  const line = shown[4]!.slice(2).replace(/ {4}#.*$/, '').replace(/^npx rateflow /, `${process.execPath} bin/rateflow.js `)
  const { execFileSync } = await import('node:child_process')
  const out = execFileSync('bash', ['-c', line], { cwd: ROOT, encoding: 'utf8' })
  expect(out).toMatch(/rejected +│ usage-2026-10\.csv:2002: event_time "yesterday"/)
}, 120_000)
