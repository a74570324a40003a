/**
 * The README's adapter documentation cannot rot: every ```json block under "`rateflow run` and the adapters" is a
 * complete rateflow.json, and must pass the same validator `rateflow run` uses (cli/run.ts validateRunConfig).
 * Payload and log examples there are ```text blocks, by convention, and are not checked here.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ValidationError } from '../common/errors.js'
import { validateRunConfig } from '../cli/run.js'

const README = readFileSync(resolve(import.meta.dirname, '../README.md'), 'utf8')
const SECTION = '## `rateflow run` and the adapters'
/** Subsection heading → the adapter kinds its examples must configure. */
const SUBSECTIONS = { MQTT: ['mqtt'], Syslog: ['syslog'], 'CSV inbox': ['csv'], Sessions: ['mqtt', 'syslog'] } as const

interface Block {
  readonly heading: string
  /** 1-based line of the opening fence in README.md. */
  readonly line: number
  readonly text: string
}

/** The ```json blocks of the section, each with the ### heading it sits under ('' before the first one). */
function jsonBlocks(): Block[] {
  const lines = README.split('\n')
  const start = lines.indexOf(SECTION)
  if (start < 0) throw new Error(`README.md has no "${SECTION}" heading`)
  const out: Block[] = []
  let heading = ''
  for (let i = start + 1; i < lines.length; i++) {
    const l = lines[i]!
    if (l.startsWith('## ')) break
    if (l.startsWith('### ')) heading = l.slice(4).trim()
    const fence = /^(\s*)```json\s*$/.exec(l)
    if (!fence) continue
    const indent = fence[1]!.length
    const body: string[] = []
    let j = i + 1
    for (; j < lines.length && lines[j]!.trim() !== '```'; j++) body.push(lines[j]!.slice(indent))
    if (j === lines.length) throw new Error(`README.md:${i + 1}: unclosed json block`)
    out.push({ heading, line: i + 1, text: body.join('\n') })
    i = j
  }
  return out
}

function problemsOf(doc: unknown): string[] {
  try {
    validateRunConfig(doc)
    return []
  } catch (err) {
    if (err instanceof ValidationError) return err.problems.map((p) => `${p.path}: ${p.message}`)
    throw err
  }
}

const blocks = jsonBlocks()

describe('README adapter examples', () => {
  it('keeps the two set-up commands as the first code block', () => {
    const first = /```sh\n([\s\S]*?)```/.exec(README)
    expect(first![1]!.split('\n').slice(0, 2).map((l) => l.replace(/\s+#.*$/, ''))).toEqual([
      'bash scripts/setup.sh && npm run demo',
      'bash scripts/setup.sh && npm test',
    ])
  })

  it('documents MQTT, syslog, the CSV inbox and sessions, each with a config example', () => {
    const headings = new Set(blocks.map((b) => b.heading))
    for (const h of Object.keys(SUBSECTIONS)) expect(headings, `a json example under "### ${h}"`).toContain(h)
  })

  it.each(blocks.map((b) => [`README.md:${b.line} (${b.heading || 'intro'})`, b] as const))('%s is a valid rateflow.json', (_name, b) => {
    let doc: Record<string, unknown>
    try {
      doc = JSON.parse(b.text) as Record<string, unknown>
    } catch (err) {
      throw new Error(`README.md:${b.line}: not JSON: ${(err as Error).message}`)
    }
    expect(problemsOf(doc)).toEqual([])
    const adapters = doc.adapters as Record<string, unknown[]>
    const kinds = SUBSECTIONS[b.heading as keyof typeof SUBSECTIONS] ?? []
    for (const k of kinds.filter((kind) => b.heading !== 'Sessions' || adapters[kind] !== undefined)) {
      expect(adapters[k], `README.md:${b.line} configures ${k}`).toBeInstanceOf(Array)
    }
    if (b.heading === 'Sessions') {
      expect(Object.values(adapters).flat().some((a) => (a as Record<string, unknown>).sessions !== undefined), 'a sessions example').toBe(true)
    }
    // The check has teeth: the same example with a misspelt key in each adapter entry is refused at that path.
    for (const [kind, entries] of Object.entries(adapters)) {
      const broken = structuredClone(doc) as { adapters: Record<string, Array<Record<string, unknown>>> }
      broken.adapters[kind]![0]!.sorce = 'x'
      expect(problemsOf(broken)).toContainEqual(expect.stringMatching(new RegExp(`^\\$\\.adapters\\.${kind}\\[0\\]\\.sorce: unknown key`)))
      expect(entries.length).toBeGreaterThan(0)
    }
  })
})
