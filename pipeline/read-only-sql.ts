import { ErrorCode, RateflowError } from '../common/errors.js'

/**
 * The first line of defence of analysts' read-only SQL (`rateflow query`, `GET /v1/query`); `readonly=1` is the
 * second. `readonly=1` alone let through what embedded ClickHouse does outside its permission checks: `INTO
 * OUTFILE` (a file written, or truncated, wherever the process may write: the store's own catalog included) and
 * `KILL QUERY` (the writer's inserts included). A SQL text passes only as one statement whose kind is a read.
 *
 * Decided on ClickHouse's own tokens, so that a keyword inside a literal or a comment never counts. The lexer
 * follows the embedded engine's (ClickHouse 26.7 in chDB 3.4, src/Parsers/Lexer.cpp) wherever text can hide other
 * text: '…' with \\ and '' escapes, "…" and `…` identifiers, ‘…’ and “…”, $name$…$name$ heredocs, --, //, `# ` and
 * nested block comments, and the sign an exponent takes (`1e--1` is no comment). Where in doubt it hides less, so
 * that a difference refuses a query rather than passes one: e.g. a heredoc name is word characters only, as in
 * 26.7, where older versions took any name. cli/query.test.ts checks that the engine reads these forms alike.
 */

/** First keywords of the statements an analyst may run (WITH only before SELECT: see readOnlyStatement). */
const READS = new Set(['SELECT', 'WITH', 'SHOW', 'DESCRIBE', 'DESC', 'EXPLAIN', 'EXISTS'])

const READ_HINT = 'give one SELECT (or WITH … SELECT), SHOW, DESCRIBE, EXPLAIN or EXISTS statement'

type Kind = 'word' | 'string' | 'quoted' | 'heredoc' | 'number' | 'dot' | 'open' | 'close' | 'semicolon' | 'other'

/** A significant token (whitespace and comments are not tokens here): its kind and where it is in the text. */
interface Token {
  readonly kind: Kind
  readonly start: number
  /** Exclusive. */
  readonly end: number
}

/** The longest SQL an analyst's query may be, in UTF-8 bytes: ClickHouse's default max_query_size. */
export const MAX_SQL_BYTES = 262_144

/**
 * The one read statement of `sql`, without a trailing `;` or the comments after it, ready for ` FORMAT <fmt>` to be
 * appended. Throws a RateflowError with ErrorCode.BadInput whose message names what it refused: an empty text,
 * `INTO OUTFILE` (anywhere), more than one statement (a trailing `;` alone is fine), a statement that is not a read
 * (SELECT, WITH … SELECT, parenthesised or UNIONed selects, SHOW, DESCRIBE/DESC, EXPLAIN, EXISTS), a FORMAT clause
 * (the caller appends its own), an unterminated string, quoted identifier or comment, a NUL character.
 * Pure: it runs nothing; what it passes still needs `readonly=1`.
 */
export function readOnlyStatement(sql: string): string {
  // A C string ends at NUL: the engine could be handed less than what was checked.
  if (sql.includes('\0')) throw refused('the SQL contains a NUL character')
  // The engine parses at most max_query_size bytes of a statement and refuses the rest: said before any work on it.
  if (sql.length > MAX_SQL_BYTES || Buffer.byteLength(sql) > MAX_SQL_BYTES) {
    throw refused(`the SQL is longer than ${MAX_SQL_BYTES} bytes (the store's max_query_size): shorten it, e.g. a long IN list as a subquery`)
  }
  const all = tokens(sql)
  const word = (t: Token | undefined): string | undefined => (t?.kind === 'word' ? sql.slice(t.start, t.end).toUpperCase() : undefined)

  if (all.every((t) => t.kind === 'semicolon')) throw refused(`the SQL is empty: ${READ_HINT}`)
  // Before anything else: in any statement, at any depth, it writes a file.
  for (let i = 0; i + 1 < all.length; i++) {
    if (word(all[i]) === 'INTO' && word(all[i + 1]) === 'OUTFILE') {
      throw refused('INTO OUTFILE is not allowed for read-only queries: they write no file (redirect the printed result instead)')
    }
  }
  // ClickHouse decodes escapes in quoted names (`\x5f`, `\t`, …): system.`stack\x5ftrace` is
  // system.stack_trace to the engine, and ran while the check below saw `stackx5ftrace`. Refused rather than decoded:
  // no analyst's table or column needs an escape in its name, and a second decoder would have to match the engine's
  // in every case to be safe.
  for (const t of all) {
    if (t.kind === 'quoted' && sql.slice(t.start, t.end).includes('\\')) {
      throw refused(`a quoted name with a backslash (${shown(sql, t)}, from position ${t.start + 1}) is not allowed for read-only queries: write the name without escapes`)
    }
  }
  // The embedded store's default database lays the file system under its tables: a quoted name holding / or . names a
  // file, absolute or relative to the process's directory. readonly=1 refuses reading it, but `EXISTS TABLE "/etc/shadow"`
  // answered 1 or 0, and a SELECT or DESCRIBE of it failed one way for a file that exists and another for one that does
  // not: any analyst could learn which files the service's host has. No table of the store needs such a name; an alias
  // may have one where it is given (after AS) and where one sorts or groups by it (after BY).
  for (let i = 0; i < all.length; i++) {
    const t = all[i]!
    if (t.kind !== 'quoted' || !/[/.]/.test(identifierName(sql, t))) continue
    const before = word(all[i - 1])
    if (before === 'AS' || before === 'BY') continue
    throw refused(
      `a quoted name with / or . (${shown(sql, t)}, from position ${t.start + 1}) is allowed in read-only queries only right after AS or BY (an alias given, sorted or grouped by): the store reads such a name as a file's path`,
    )
  }
  // Reads that reach outside the store: a file, the network, a program. readonly=1 stops none of them.
  for (let i = 0; i < all.length; i++) {
    const t = all[i]!
    const next = all[i + 1]
    if (next?.kind === 'open' && sql[next.start] === '(' && (t.kind === 'word' || t.kind === 'quoted')) {
      const name = identifierName(sql, t)
      if (t.kind === 'quoted') throw refused(`a function called by a quoted name (${shown(sql, t)}) is not allowed for read-only queries: call functions by their plain names`)
      if (OUTSIDE_FUNCTIONS.has(name) || (TABLE_FUNCTIONS.has(name) && !SAFE_TABLE_FUNCTIONS.has(name))) {
        throw refused(`${sql.slice(t.start, t.end)}() is not allowed for read-only queries: it reads files or the network, or runs programs, outside the store's tables`)
      }
    }
    if (next?.kind === 'dot' && (t.kind === 'word' || t.kind === 'quoted') && identifierName(sql, t) === 'system') {
      const table = all[i + 2]
      if (table && (table.kind === 'word' || table.kind === 'quoted') && OUTSIDE_SYSTEM_TABLES.has(identifierName(sql, table))) {
        throw refused(`system.${identifierName(sql, table)} is not allowed for read-only queries: reading it starts a program or reaches outside the store`)
      }
    }
  }
  const semi = all.findIndex((t) => t.kind === 'semicolon')
  const stmt = semi < 0 ? all : all.slice(0, semi)
  if (semi >= 0 && all.slice(semi).some((t) => t.kind !== 'semicolon')) {
    throw refused('more than one statement is not allowed: give one statement per query (a trailing ; alone is fine)')
  }
  if (stmt.length === 0) throw refused(`the SQL is empty: ${READ_HINT}`)

  // `(SELECT 1) UNION ALL (SELECT 2)`: the kind is the first word inside the leading brackets.
  let lead = 0
  while (stmt[lead]?.kind === 'open') lead++
  const first = stmt[lead]
  const kind = word(first)
  if (kind === undefined || !READS.has(kind)) {
    const what = kind ?? (first ? `a statement that begins with ${shown(sql, first)}` : 'an empty statement')
    throw refused(`${what} is not allowed for read-only queries: ${READ_HINT}`)
  }
  if (kind === 'WITH') {
    // ClickHouse takes `WITH … INSERT INTO …` too: the statement is the first SELECT or INSERT after the WITH list,
    // at the WITH's own depth (the list's subqueries are deeper).
    const main = depths(stmt).find(({ t, depth }, i) => i > lead && depth === lead && (word(t) === 'SELECT' || word(t) === 'INSERT'))
    if (main === undefined) throw refused(`a WITH clause must be followed by SELECT: ${READ_HINT}`)
    if (word(main.t) === 'INSERT') throw refused(`INSERT is not allowed for read-only queries: ${READ_HINT}`)
  }
  if (hasFormatClause(sql, stmt, word)) {
    throw refused('a FORMAT clause is not allowed in the SQL: choose the output format with --format (format= on /v1/query)')
  }
  return sql.slice(0, stmt[stmt.length - 1]!.end)
}

/**
 * Every table function of the embedded engine (system.table_functions of chDB 3.4, ClickHouse 26.7), lowercased.
 * cli/query.test.ts fails when the engine knows one that is not here, so that a new one is judged before it runs.
 */
export const TABLE_FUNCTIONS: ReadonlySet<string> = new Set(
  [
    'SQLStandardValues', 'arrowstream', 'azureBlobStorage', 'azureBlobStorageCluster', 'cluster', 'clusterAllReplicas', 'cosn',
    'deltaLake', 'deltaLakeAzure', 'deltaLakeAzureCluster', 'deltaLakeCluster', 'deltaLakeLocal', 'deltaLakeS3', 'deltaLakeS3Cluster',
    'dictionary', 'eval', 'executable', 'file', 'fileCluster', 'filesystem', 'format', 'fuzzJSON', 'fuzzQuery', 'gcs',
    'generateRandom', 'generateSeries', 'generate_series', 'hdfs', 'hdfsCluster', 'hudi', 'hudiCluster', 'iceberg', 'icebergAzure',
    'icebergAzureCluster', 'icebergCluster', 'icebergHDFS', 'icebergHDFSCluster', 'icebergLocal', 'icebergLocalCluster', 'icebergS3',
    'icebergS3Cluster', 'input', 'jdbc', 'loop', 'merge', 'mergeTreeAnalyzeIndexes', 'mergeTreeAnalyzeIndexesUUID', 'mergeTreeIndex',
    'mergeTreeProjection', 'mergeTreeTextIndex', 'mongodb', 'mysql', 'null', 'numbers', 'numbers_mt', 'odbc', 'oss', 'paimon',
    'paimonAzure', 'paimonAzureCluster', 'paimonCluster', 'paimonHDFS', 'paimonHDFSCluster', 'paimonLocal', 'paimonS3',
    'paimonS3Cluster', 'postgresql', 'primes', 'prometheusQuery', 'prometheusQueryRange', 'redis', 'remote', 'remoteSecure', 's3',
    's3Cluster', 'sqlite', 'timeSeriesData', 'timeSeriesMetrics', 'timeSeriesSamples', 'timeSeriesSelector', 'timeSeriesTags', 'url',
    'urlCluster', 'values', 'view', 'viewExplain', 'viewIfPermitted', 'ytsaurus', 'zeros', 'zeros_mt',
  ].map((n) => n.toLowerCase()),
)

/**
 * The table functions an analyst may call: they make rows from their arguments, or run a query written inside them
 * (which is checked with the rest of the text). Every other one reads files (file, filesystem), the network (url,
 * s3, remote, mysql, …), starts programs (executable, odbc, jdbc) or reads tables named by strings (merge, loop),
 * which this check cannot see; readonly=1 stops none of them, and `DESCRIBE url(…)` fetched from any address.
 */
const SAFE_TABLE_FUNCTIONS: ReadonlySet<string> = new Set(
  ['numbers', 'numbers_mt', 'zeros', 'zeros_mt', 'generate_series', 'generateSeries', 'generateRandom', 'primes', 'values', 'SQLStandardValues', 'null', 'format', 'view', 'viewIfPermitted', 'viewExplain'].map((n) =>
    n.toLowerCase(),
  ),
)

/**
 * Functions that read outside the store: a file's contents (file), a model library run by a bridge program, and a
 * table named by a string (hasColumnInTable, joinGet), which the embedded store's default database resolves as a
 * file's path when no table has the name: `hasColumnInTable('default', '/etc/passwd', 'x')` failed one way for a file
 * that exists and another for one that does not.
 */
const OUTSIDE_FUNCTIONS: ReadonlySet<string> = new Set(['file', 'catboostevaluate', 'naivebayesclassifier', 'hascolumnintable', 'joinget', 'joingetornull'])

/** System tables whose reading starts a program (models: clickhouse-library-bridge) or signals every thread (stack_trace). */
const OUTSIDE_SYSTEM_TABLES: ReadonlySet<string> = new Set(['models', 'stack_trace', 'zookeeper', 'zookeeper_connection'])

/**
 * A word's or a quoted identifier's name, lowercased (quotes and doubled quotes dropped). A quoted name with a
 * backslash never gets here: readOnlyStatement refuses it first, as escapes would make the name another.
 */
function identifierName(sql: string, t: Token): string {
  const text = sql.slice(t.start, t.end)
  if (t.kind !== 'quoted') return text.toLowerCase()
  return text.slice(1, -1).replace(/(["`\u201d])\1/g, '$1').toLowerCase()
}

function refused(message: string): RateflowError {
  return new RateflowError(ErrorCode.BadInput, message)
}

/** A token as quoted in a message, cut short. */
function shown(sql: string, t: Token): string {
  const text = sql.slice(t.start, t.end)
  return JSON.stringify(text.length > 24 ? `${text.slice(0, 24)}…` : text)
}

/** Each token with its bracket depth: the number of (, [ and { open before it. */
function depths(ts: readonly Token[]): Array<{ t: Token; depth: number }> {
  let depth = 0
  return ts.map((t) => {
    if (t.kind === 'close') depth--
    const d = depth
    if (t.kind === 'open') depth++
    return { t, depth: d }
  })
}

/**
 * True when the statement ends in ClickHouse's output clause `FORMAT name [SETTINGS …]` at depth 0. A name alone
 * is not enough: `format` is also a function (`format('{}', x)`), a table (`FROM format f`), a column or an alias.
 */
function hasFormatClause(sql: string, stmt: readonly Token[], word: (t: Token | undefined) => string | undefined): boolean {
  const at = depths(stmt)
  for (let i = 1; i + 1 < at.length; i++) {
    const { t, depth } = at[i]!
    if (depth !== 0 || word(t) !== 'FORMAT') continue
    const prev = stmt[i - 1]!
    if (prev.kind === 'dot' || sql[prev.start] === ',' || ['FROM', 'JOIN', 'AS'].includes(word(prev) ?? '')) continue
    const name = stmt[i + 1]!
    if (name.kind !== 'word' && name.kind !== 'quoted') continue
    const after = stmt[i + 2]
    if (after === undefined || word(after) === 'SETTINGS') return true
  }
  return false
}

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9'
const isHex = (c: string | undefined): boolean => c !== undefined && /^[0-9a-fA-F]$/.test(c)
const isWordChar = (c: string | undefined): boolean => c !== undefined && /^[0-9a-zA-Z_]$/.test(c)
const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v'

/**
 * The significant tokens of `sql` as ClickHouse's lexer splits it (whitespace and comments left out). Throws the
 * refusal for what ClickHouse would fail on to the end of the text (unterminated strings, identifiers, comments).
 */
function tokens(sql: string): Token[] {
  const out: Token[] = []
  const n = sql.length
  let i = 0
  /** The previous significant token and, for a closing bracket, which one: numbers and dots depend on it. */
  let prev: Kind | undefined
  let prevClose = ''
  const push = (kind: Kind, start: number, end: number): void => {
    out.push({ kind, start, end })
    prev = kind
    prevClose = kind === 'close' ? sql[start]! : ''
    i = end
  }
  const lineComment = (from: number): void => {
    const nl = sql.indexOf('\n', from)
    i = nl < 0 ? n : nl
  }
  const unterminated = (what: string, start: number): RateflowError => refused(`the SQL has an unterminated ${what} (from position ${start + 1})`)

  while (i < n) {
    const start = i
    const c = sql[i]!
    const next = sql[i + 1]
    if (isSpace(c)) {
      i++
    } else if (isDigit(c)) {
      const end = numberEnd(sql, i, prev === 'dot')
      if (isWordChar(sql[end])) {
        // `1abc` is an identifier (or a wrong number, which the engine refuses).
        let e = end
        while (isWordChar(sql[e])) e++
        push('word', start, e)
      } else push('number', start, end)
    } else if (c === "'" || c === '"' || c === '`') {
      const end = quotedEnd(sql, i, c)
      if (end < 0) throw unterminated(c === "'" ? 'string literal' : 'quoted identifier', start)
      push(c === "'" ? 'string' : 'quoted', start, end)
    } else if (c === '(' || c === '[' || c === '{') {
      push('open', start, i + 1)
    } else if (c === ')' || c === ']' || c === '}') {
      push('close', start, i + 1)
    } else if (c === ';') {
      push('semicolon', start, i + 1)
    } else if (c === '.') {
      const afterOperand = prev === 'word' || prev === 'quoted' || prev === 'number' || prevClose === ')' || prevClose === ']'
      if (i > 0 && (!isDigit(next) || afterOperand)) push('dot', start, i + 1)
      else push('number', start, fractionEnd(sql, i + 1))
    } else if (c === '-' && next === '-') {
      lineComment(i + 2)
    } else if (c === '/' && next === '/') {
      lineComment(i + 2)
    } else if (c === '/' && next === '*') {
      // Nested, as ClickHouse (and the SQL standard) has them.
      let depth = 1
      let j = i + 2
      while (depth > 0) {
        if (j + 2 > n) throw unterminated('comment', start)
        if (sql[j] === '/' && sql[j + 1] === '*') {
          depth++
          j += 2
        } else if (sql[j] === '*' && sql[j + 1] === '/') {
          depth--
          j += 2
        } else j++
      }
      i = j
    } else if (c === '#' && (next === ' ' || next === '!')) {
      // Only `# ` and `#!` start a comment in ClickHouse; `#x` is an error token.
      lineComment(i + 1)
    } else if (c === '\u2018' || c === '\u201C') {
      // ‘string’ and “identifier”, as pasted from a word processor: no escapes, they end at the closing quote.
      const close = sql.indexOf(c === '\u2018' ? '\u2019' : '\u201D', i + 1)
      if (close < 0) throw unterminated(c === '\u2018' ? 'string literal' : 'quoted identifier', start)
      push(c === '\u2018' ? 'string' : 'quoted', start, close + 1)
    } else if (c === '$') {
      // A heredoc `$name$…$name$` (name of word characters, possibly none); else `$` alone, or a word.
      let j = i + 1
      while (isWordChar(sql[j])) j++
      const close = sql[j] === '$' ? sql.indexOf(sql.slice(i, j + 1), j + 1) : -1
      if (close >= 0) push('heredoc', start, close + (j + 1 - i))
      // Refused, where the engine may take `$a$` for a name: each unclosed opener cost a search of the rest of the
      // text, here and in the engine's lexer, and text of many such openers held the process for minutes.
      else if (sql[j] === '$') throw unterminated(`heredoc ${shown(sql, { kind: 'other', start, end: j + 1 })}`, start)
      else if (!isWordChar(next)) push('other', start, i + 1)
      else push('word', start, wordEnd(sql, i + 1))
    } else if ((c === 'x' || c === 'X' || c === 'b' || c === 'B') && next === "'" && i + 2 < n) {
      // x'4142' / b'0101': ClickHouse fails the whole text when the digits do not end in a quote.
      let j = i + 2
      const digit = c === 'x' || c === 'X' ? isHex : (d: string | undefined) => d === '0' || d === '1'
      while (j < n && digit(sql[j])) j++
      if (sql[j] !== "'") throw refused(`the SQL has a malformed ${c === 'x' || c === 'X' ? 'hex' : 'binary'} string literal (from position ${start + 1})`)
      push('string', start, j + 1)
    } else if (isWordChar(c)) {
      push('word', start, wordEnd(sql, i + 1))
    } else if (c.charCodeAt(0) > 0x7f) {
      // Unicode whitespace (NBSP, …) is whitespace here: `INTO<NBSP>OUTFILE` reads as the two words it is. Any other
      // non-ASCII character outside quotes is refused: taken for whitespace, `é SELECT …` passed and the engine
      // answered nothing at all (exit 0, an analyst read "no rows"), and what the engine makes of such a character
      // (part of a name, or a space: U+200B) is not something this check can match in every case.
      if (!/\s/.test(c)) {
        const ch = String.fromCodePoint(sql.codePointAt(i)!)
        throw refused(`the character ${JSON.stringify(ch)} (U+${sql.codePointAt(i)!.toString(16).toUpperCase().padStart(4, '0')}, position ${i + 1}) is not allowed outside quotes: write a name with it in backquotes (\`${ch}\`), text in single quotes`)
      }
      i++
    } else {
      push('other', start, i + 1)
    }
  }
  return out
}

/** End of a word at `i`: word characters and `$`. */
function wordEnd(sql: string, i: number): number {
  while (isWordChar(sql[i]) || sql[i] === '$') i++
  return i
}

/** End of a '…', "…" or `…` token opened at `i` (backslash escapes, doubled quotes); -1 when it never closes. */
function quotedEnd(sql: string, i: number, quote: string): number {
  for (let j = i + 1; j < sql.length; j++) {
    if (sql[j] === '\\') j++
    else if (sql[j] === quote) {
      if (sql[j + 1] === quote) j++
      else return j + 1
    }
  }
  return -1
}

/** ClickHouse's `_` between digits (`1_000`): not first in a block, followed by a digit. */
function separator(sql: string, i: number, startOfBlock: boolean, hex: boolean): boolean {
  return sql[i] === '_' && !startOfBlock && (hex ? isHex(sql[i + 1]) : isDigit(sql[i + 1]))
}

/**
 * End of a number that starts at the digit at `i`, as ClickHouse's lexer ends it. It matters where an exponent
 * takes its sign: `1e--1` is the number `1e-` then `-1` to ClickHouse, not `1e` and a comment.
 */
function numberEnd(sql: string, i: number, afterDot: boolean): number {
  const n = sql.length
  if (afterDot) {
    // `x.1.1` is tuple access twice: after a dot only a plain integer.
    i++
    while (i < n && (isDigit(sql[i]) || separator(sql, i, false, false))) i++
    return i
  }
  let block = false
  let hex = false
  if (i + 2 < n && sql[i] === '0' && 'xXbB'.includes(sql[i + 1]!)) {
    const isX = sql[i + 1] === 'x' || sql[i + 1] === 'X'
    const valid = isX ? isHex(sql[i + 2]) : sql[i + 2] === '0' || sql[i + 2] === '1'
    hex = isX && valid
    if (valid) {
      i += 2
      block = true
    } else i++
  } else i++
  const digit = hex ? isHex : isDigit
  while (i < n && (digit(sql[i]) || separator(sql, i, block, hex))) {
    i++
    block = false
  }
  if (sql[i] === '.') {
    i++
    block = true
    while (i < n && (digit(sql[i]) || separator(sql, i, block, hex))) {
      i++
      block = false
    }
  }
  return exponentEnd(sql, i, hex ? 'pP' : 'eE')
}

/** End of a number that starts with the decimal point before `i` (`.5e-3`). */
function fractionEnd(sql: string, i: number): number {
  let block = true
  while (i < sql.length && (isDigit(sql[i]) || separator(sql, i, block, false))) {
    i++
    block = false
  }
  return exponentEnd(sql, i, 'eE')
}

/** End of an optional exponent at `i` (`e`, `p` for hex), its sign included: the sign is taken as ClickHouse takes it. */
function exponentEnd(sql: string, i: number, marks: string): number {
  const n = sql.length
  if (!(i + 1 < n && marks.includes(sql[i]!))) return i
  i++
  if (i + 1 < n && (sql[i] === '-' || sql[i] === '+')) i++
  let block = true
  while (i < n && (isDigit(sql[i]) || separator(sql, i, block, false))) {
    i++
    block = false
  }
  return i
}
