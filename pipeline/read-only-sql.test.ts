import { describe, expect, it } from 'vitest'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { readOnlyStatement } from './read-only-sql.js'

/** The statement passed on (a string), or the refusal's message as a RateflowError of BadInput. */
function outcome(sql: string): string {
  try {
    return readOnlyStatement(sql)
  } catch (err) {
    expect(err).toBeInstanceOf(RateflowError)
    expect((err as RateflowError).code).toBe(ErrorCode.BadInput)
    return `refused: ${(err as Error).message}`
  }
}

const EMPTY = /^refused: the SQL is empty: give one SELECT \(or WITH … SELECT\), SHOW, DESCRIBE, EXPLAIN or EXISTS statement$/
const OUTFILE = /^refused: INTO OUTFILE is not allowed for read-only queries/
const MANY = /^refused: more than one statement is not allowed: give one statement per query \(a trailing ; alone is fine\)$/
const OUTSIDE = (name: string): RegExp => new RegExp(`^refused: ${name}\\(\\) is not allowed for read-only queries: it reads files or the network, or runs programs, outside the store's tables$`)
const ESCAPED = (token: string, position: number): RegExp =>
  new RegExp(`^refused: a quoted name with a backslash \\(${JSON.stringify(token).replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}, from position ${position}\\) is not allowed for read-only queries: write the name without escapes$`)
const FORMAT = /^refused: a FORMAT clause is not allowed in the SQL: choose the output format with --format/
const notRead = (what: string): RegExp =>
  new RegExp(`^refused: ${what} is not allowed for read-only queries: give one SELECT \\(or WITH … SELECT\\), SHOW, DESCRIBE, EXPLAIN or EXISTS statement$`)

/** `expect`: the statement passed on, or what the refusal says. */
const escapeRe = (t: string) => t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
const FILE_NAME = (name: string, at: number) =>
  new RegExp(`^${escapeRe(`refused: a quoted name with / or . (${JSON.stringify(name)}, from position ${at}) is allowed in read-only queries only right after AS or BY`)}`)
const cases: Array<{ sql: string; expect: string | RegExp }> = [
  // Reads pass, without a trailing ; or the comments after the statement (a FORMAT clause is appended to them).
  { sql: 'SELECT 1', expect: 'SELECT 1' },
  { sql: '  select 1 ;  ', expect: '  select 1' },
  { sql: 'SELECT 1;;', expect: 'SELECT 1' },
  { sql: 'SELECT 1; -- done', expect: 'SELECT 1' },
  { sql: 'SELECT 1 -- the count', expect: 'SELECT 1' },
  { sql: '-- why\nSELECT 1', expect: '-- why\nSELECT 1' },
  { sql: 'SeLeCt 1 UNION ALL SELECT 2', expect: 'SeLeCt 1 UNION ALL SELECT 2' },
  { sql: '(SELECT 1) UNION ALL (SELECT 2)', expect: '(SELECT 1) UNION ALL (SELECT 2)' },
  { sql: '((SELECT 1))', expect: '((SELECT 1))' },
  { sql: 'WITH 1 AS x SELECT x', expect: 'WITH 1 AS x SELECT x' },
  { sql: 'WITH x AS (SELECT 1 AS a) SELECT a FROM x', expect: 'WITH x AS (SELECT 1 AS a) SELECT a FROM x' },
  { sql: 'WITH (SELECT 1) AS x SELECT x', expect: 'WITH (SELECT 1) AS x SELECT x' },
  { sql: 'SHOW TABLES', expect: 'SHOW TABLES' },
  { sql: 'DESCRIBE TABLE rated_usage', expect: 'DESCRIBE TABLE rated_usage' },
  { sql: 'desc rated_usage', expect: 'desc rated_usage' },
  { sql: 'EXPLAIN SELECT 1', expect: 'EXPLAIN SELECT 1' },
  { sql: 'EXISTS TABLE rated_usage', expect: 'EXISTS TABLE rated_usage' },
  // Keywords inside literals, quoted identifiers, heredocs and comments do not count.
  { sql: "SELECT 'INTO OUTFILE' AS s", expect: "SELECT 'INTO OUTFILE' AS s" },
  { sql: "SELECT 'x' AS s WHERE s != 'y INTO OUTFILE z'", expect: "SELECT 'x' AS s WHERE s != 'y INTO OUTFILE z'" },
  { sql: "SELECT 'a; KILL QUERY WHERE 1' AS s;", expect: "SELECT 'a; KILL QUERY WHERE 1' AS s" },
  { sql: "SELECT 'it''s; INTO OUTFILE', 'a\\'; INTO OUTFILE'", expect: "SELECT 'it''s; INTO OUTFILE', 'a\\'; INTO OUTFILE'" },
  { sql: 'SELECT 1 AS "into outfile; FORMAT CSV"', expect: 'SELECT 1 AS "into outfile; FORMAT CSV"' },
  { sql: 'SELECT 1 AS `a``; INTO OUTFILE`', expect: 'SELECT 1 AS `a``; INTO OUTFILE`' },
  { sql: 'SELECT $$; INTO OUTFILE \'x\'$$', expect: "SELECT $$; INTO OUTFILE 'x'$$" },
  { sql: "SELECT $q$it's; INTO OUTFILE$q$", expect: "SELECT $q$it's; INTO OUTFILE$q$" },
  { sql: 'SELECT ‘INTO OUTFILE; KILL’', expect: 'SELECT ‘INTO OUTFILE; KILL’' },
  { sql: 'SELECT 1 /* INTO OUTFILE; KILL QUERY WHERE 1 */', expect: 'SELECT 1' },
  { sql: 'SELECT 1 /* a /* nested */ INTO OUTFILE; */ + 1', expect: 'SELECT 1 /* a /* nested */ INTO OUTFILE; */ + 1' },
  { sql: 'SELECT 1 // INTO OUTFILE; KILL', expect: 'SELECT 1' },
  { sql: 'SELECT 1 # INTO OUTFILE; KILL', expect: 'SELECT 1' },
  { sql: '#!/usr/bin/env rateflow\nSELECT 1', expect: '#!/usr/bin/env rateflow\nSELECT 1' },
  // `format` as a function, a column, a table or an alias is no FORMAT clause.
  { sql: "SELECT format('{} {}', 'a', 'b')", expect: "SELECT format('{} {}', 'a', 'b')" },
  { sql: 'SELECT format FROM t', expect: 'SELECT format FROM t' },
  { sql: 'SELECT x FROM format f', expect: 'SELECT x FROM format f' },
  { sql: 'SELECT x FROM t, format f', expect: 'SELECT x FROM t, format f' },
  { sql: 'SELECT 1 AS format', expect: 'SELECT 1 AS format' },
  { sql: 'SELECT t.format FROM t', expect: 'SELECT t.format FROM t' },
  { sql: 'SELECT 1e-3, 0x1p-3, 1_000, x.1 FROM t', expect: 'SELECT 1e-3, 0x1p-3, 1_000, x.1 FROM t' },

  // Non-ASCII outside quotes: Unicode whitespace is whitespace; anything else is refused, naming it and where.
  // `é SELECT …` passed as `SELECT …` and the engine answered nothing at all (exit 0: "no rows").
  { sql: 'SELECT\u00a01', expect: 'SELECT\u00a01' },
  { sql: "SELECT 'café', `café` FROM t", expect: "SELECT 'café', `café` FROM t" },
  { sql: 'é SELECT count() FROM rated_usage', expect: /^refused: the character "é" \(U\+00E9, position 1\) is not allowed outside quotes: write a name with it in backquotes \(`é`\), text in single quotes$/ },
  { sql: 'SELECT 1 AS é', expect: /^refused: the character "é" \(U\+00E9, position 13\)/ },
  { sql: 'SELECT 1 → 2', expect: /^refused: the character "→" \(U\+2192, position 10\)/ },
  { sql: 'SELECT 1 AS 😀', expect: /^refused: the character "😀" \(U\+1F600, position 13\)/ },
  // A zero-width space is no whitespace to this check: `INTO<ZWSP>OUTFILE` is refused either way.
  { sql: "SELECT 1 INTO\u200bOUTFILE 'out.txt'", expect: /^refused: the character "\u200b" \(U\+200B, position 14\)/ },

  // Empty.
  { sql: '', expect: EMPTY },
  { sql: '   \n', expect: EMPTY },
  { sql: ';', expect: EMPTY },
  { sql: '-- only a comment', expect: EMPTY },

  // INTO OUTFILE, in every form ClickHouse takes, in any statement.
  { sql: "SELECT 1 INTO OUTFILE '/tmp/x/out.txt'", expect: OUTFILE },
  { sql: "select 1 into outfile '/data/catalog/accounts.json' truncate", expect: OUTFILE },
  { sql: "SELECT 1 INTO OUTFILE 'out.txt' APPEND", expect: OUTFILE },
  { sql: "SELECT 1 INTO OUTFILE 'out.txt' AND STDOUT", expect: OUTFILE },
  { sql: "SELECT 1 INTO OUTFILE 'out.gz' COMPRESSION 'gzip' LEVEL 3", expect: OUTFILE },
  { sql: "SELECT 1 INTO/**/OUTFILE 'out.txt'", expect: OUTFILE },
  { sql: "SELECT 1 Into -- why\n\tOutFile 'out.txt'", expect: OUTFILE },
  { sql: "SELECT 1 INTO\u00a0OUTFILE 'out.txt'", expect: OUTFILE },
  { sql: "EXPLAIN SELECT 1 INTO OUTFILE 'out.txt'", expect: OUTFILE },
  { sql: "SHOW CREATE TABLE rated_usage INTO OUTFILE 'out.txt'", expect: OUTFILE },
  { sql: "SELECT 'INTO OUTFILE' INTO OUTFILE 'out.txt'", expect: OUTFILE },
  { sql: "SELECT 1 INTO OUTFILE 'out.txt'; SELECT 2", expect: OUTFILE },
  // … and where a lexer that knows less than ClickHouse's would see a literal or a comment.
  { sql: "SELECT 'a\\\\' INTO OUTFILE 'out.txt'", expect: OUTFILE },
  { sql: "SELECT 1e--1 INTO OUTFILE 'out.txt'", expect: OUTFILE },
  { sql: "SELECT $a$'$a$ INTO OUTFILE 'out.txt' --'", expect: OUTFILE },
  { sql: "SELECT $a, b$ INTO OUTFILE 'out.txt' -- $a, b$", expect: OUTFILE },
  { sql: "SELECT ‘'’ INTO OUTFILE 'out.txt' --'", expect: OUTFILE },
  { sql: "SELECT 1 // '\nINTO OUTFILE 'out.txt' --'", expect: OUTFILE },
  { sql: "SELECT 1 # '\nINTO OUTFILE 'out.txt' --'", expect: OUTFILE },
  { sql: "SELECT 1 /* /* */ '*/ INTO OUTFILE 'out.txt' --'", expect: OUTFILE },

  // One statement per query.
  { sql: 'SELECT 1; SELECT 2', expect: MANY },
  { sql: 'SELECT 1;SELECT 2;', expect: MANY },
  { sql: "SELECT ';'; KILL QUERY WHERE 1", expect: MANY },
  { sql: 'SELECT 1; -- and\nSELECT 2', expect: MANY },
  { sql: 'SELECT 1 /* ; */; SET readonly = 0', expect: MANY },

  // The output format is the caller's.
  { sql: 'SELECT 1 FORMAT CSV', expect: FORMAT },
  { sql: 'select 1 format JSON;', expect: FORMAT },
  { sql: 'SELECT 1 FORMAT CSV SETTINGS max_threads = 1', expect: FORMAT },
  { sql: 'SELECT 1 UNION ALL SELECT 2 FORMAT TSV', expect: FORMAT },
  { sql: '(SELECT 1) FORMAT `CSV`', expect: FORMAT },

  // Anything but a read.
  { sql: 'SET readonly = 0', expect: notRead('SET') },
  { sql: 'KILL QUERY WHERE 1', expect: notRead('KILL') },
  { sql: '/* SELECT */ kill query where 1', expect: notRead('KILL') },
  { sql: 'SYSTEM FLUSH LOGS', expect: notRead('SYSTEM') },
  { sql: 'INSERT INTO rated_usage (event_id) VALUES (1)', expect: notRead('INSERT') },
  { sql: 'CREATE TABLE t (a Int8) ENGINE = Memory', expect: notRead('CREATE') },
  { sql: 'OPTIMIZE TABLE rated_usage FINAL', expect: notRead('OPTIMIZE') },
  { sql: 'DROP TABLE rated_usage', expect: notRead('DROP') },
  { sql: 'ALTER TABLE rated_usage DELETE WHERE 1', expect: notRead('ALTER') },
  { sql: 'TRUNCATE TABLE rated_usage', expect: notRead('TRUNCATE') },
  { sql: 'USE system', expect: notRead('USE') },
  { sql: 'WITH 1 AS x INSERT INTO t SELECT x', expect: notRead('INSERT') },
  { sql: 'WITH (SELECT 1) AS x INSERT INTO t SELECT x', expect: notRead('INSERT') },
  { sql: "'SELECT'", expect: notRead('a statement that begins with "\'SELECT\'"') },
  { sql: 'WITH 1 AS x', expect: /^refused: a WITH clause must be followed by SELECT/ },

  // What ClickHouse would fail on to the end of the text.
  { sql: "SELECT 'abc", expect: /^refused: the SQL has an unterminated string literal \(from position 8\)$/ },
  { sql: 'SELECT "abc', expect: /^refused: the SQL has an unterminated quoted identifier \(from position 8\)$/ },
  { sql: 'SELECT 1 /* a /* b */', expect: /^refused: the SQL has an unterminated comment \(from position 10\)$/ },
  { sql: 'SELECT ‘abc', expect: /^refused: the SQL has an unterminated string literal/ },
  { sql: "SELECT x'4G'", expect: /^refused: the SQL has a malformed hex string literal \(from position 8\)$/ },
  { sql: 'SELECT 1\0', expect: /^refused: the SQL contains a NUL character$/ },
  // A heredoc opener never closed: each cost a search of the rest of the text, here and in the engine's lexer (800 KB of
  // them held `rateflow run` for minutes and lost its lease).
  { sql: 'SELECT 1 $a$', expect: /^refused: the SQL has an unterminated heredoc "\$a\$" \(from position 10\)$/ },
  { sql: 'SELECT $$abc', expect: /^refused: the SQL has an unterminated heredoc "\$\$" \(from position 8\)$/ },
  { sql: "SELECT $a$x$a$, '$b$'", expect: "SELECT $a$x$a$, '$b$'" },
  { sql: 'SELECT 1 AS $x', expect: 'SELECT 1 AS $x' },
  // Longer than the engine parses: refused before any work on it.
  { sql: `SELECT 1 /* ${'x'.repeat(262_144)} */`, expect: /^refused: the SQL is longer than 262144 bytes \(the store's max_query_size\)/ },
  { sql: `SELECT '${'é'.repeat(131_070)}'`, expect: /^refused: the SQL is longer than 262144 bytes/ },
  // Reads that reach outside the store: files, the network, programs, tables named by strings.
  { sql: "SELECT file('/etc/hostname')", expect: OUTSIDE('file') },
  { sql: "SELECT FILE('/etc/hostname')", expect: OUTSIDE('FILE') },
  { sql: "DESC url('http://127.0.0.1:1/x.csv', 'CSVWithNames')", expect: OUTSIDE('url') },
  { sql: "DESCRIBE TABLE s3('http://127.0.0.1:1/b/x.csv')", expect: OUTSIDE('s3') },
  { sql: "SELECT * FROM remote('127.0.0.1:1', system.one)", expect: OUTSIDE('remote') },
  { sql: "SELECT * FROM executable('x.sh', 'TSV', 'a String')", expect: OUTSIDE('executable') },
  { sql: "SELECT * FROM merge('system', '^models$')", expect: OUTSIDE('merge') },
  { sql: "SELECT * FROM loop('system', 'models')", expect: OUTSIDE('loop') },
  { sql: "SELECT * FROM filesystem('/')", expect: OUTSIDE('filesystem') },
  { sql: "SELECT * FROM view(SELECT file ('/etc/passwd'))", expect: OUTSIDE('file') },
  { sql: "SELECT catboostEvaluate('m.bin', 1)", expect: OUTSIDE('catboostEvaluate') },
  { sql: "SELECT `file`('/etc/hostname')", expect: /^refused: a function called by a quoted name \("`file`"\) is not allowed/ },
  { sql: 'SELECT * FROM system.models', expect: /^refused: system\.models is not allowed for read-only queries: reading it starts a program/ },
  { sql: 'SELECT * FROM "system" . "models"', expect: /^refused: system\.models is not allowed/ },
  { sql: 'SELECT * FROM system.stack_trace', expect: /^refused: system\.stack_trace is not allowed/ },
  // ClickHouse decodes escapes in quoted names: `stack\x5ftrace` is stack_trace to it. Any backslash in a quoted name
  // is refused (it ran system.stack_trace, and system.models started clickhouse-library-bridge).
  { sql: 'SELECT count() FROM system.`stack\\x5ftrace`', expect: ESCAPED('`stack\\x5ftrace`', 28) },
  { sql: 'SELECT count() FROM `sys\\x74em`.stack_trace', expect: ESCAPED('`sys\\x74em`', 21) },
  { sql: 'SELECT * FROM system.`model\\x73`', expect: ESCAPED('`model\\x73`', 22) },
  { sql: 'SELECT * FROM `sys\\x74em`.`zoo\\x6beeper`', expect: ESCAPED('`sys\\x74em`', 15) },
  { sql: 'SELECT * FROM system."stack\\137trace"', expect: ESCAPED('"stack\\137trace"', 22) },
  { sql: 'SELECT * FROM system.`model\\u0073`', expect: ESCAPED('`model\\u0073`', 22) },
  { sql: 'SELECT * FROM system.`stack\\_trace`', expect: ESCAPED('`stack\\_trace`', 22) },
  { sql: 'SELECT 1 AS `a\\`b`', expect: ESCAPED('`a\\`b`', 13) },
  { sql: 'SELECT 1 AS "tab\\there"', expect: ESCAPED('"tab\\there"', 13) },
  // …while backslashes in string literals stay as they were, and a doubled quote in a name is no escape.
  { sql: "SELECT 'stack\\x5ftrace' AS `a``b`", expect: "SELECT 'stack\\x5ftrace' AS `a``b`" },
  // …but a name that is only a column, alias or string is no call, and the safe table functions run.
  { sql: "SELECT 'file(x)', file_size AS url FROM t", expect: "SELECT 'file(x)', file_size AS url FROM t" },
  { sql: 'SELECT * FROM numbers(3)', expect: 'SELECT * FROM numbers(3)' },
  { sql: "SELECT format('{}', 1), * FROM values('a UInt8', 1)", expect: "SELECT format('{}', 1), * FROM values('a UInt8', 1)" },
  { sql: 'SELECT * FROM system.tables', expect: 'SELECT * FROM system.tables' },
  // The default database lays the file system under the store's tables: a quoted name with / or . is a file's path.
  // EXISTS answered whether /etc/shadow exists; a SELECT or DESCRIBE of it failed one way or another as it did.
  { sql: 'EXISTS TABLE "/etc/shadow"', expect: FILE_NAME('"/etc/shadow"', 14) },
  { sql: 'EXISTS "/etc/shadow"', expect: FILE_NAME('"/etc/shadow"', 8) },
  { sql: 'SELECT count() FROM `/etc/passwd`', expect: FILE_NAME('`/etc/passwd`', 21) },
  { sql: 'SELECT * FROM rated_usage, "rateflow.json"', expect: FILE_NAME('"rateflow.json"', 28) },
  { sql: 'DESCRIBE TABLE default.`probe.txt`', expect: FILE_NAME('`probe.txt`', 24) },
  { sql: 'SHOW CREATE TABLE "/etc/shadow"', expect: FILE_NAME('"/etc/shadow"', 19) },
  // …and a table named by a string, which such a database resolves alike.
  { sql: "SELECT hasColumnInTable('default', '/etc/passwd', 'x')", expect: OUTSIDE('hasColumnInTable') },
  { sql: "SELECT joinGet('/etc/passwd', 'x', 1)", expect: OUTSIDE('joinGet') },
  { sql: "SELECT joinGetOrNull('/etc/passwd', 'x', 1)", expect: OUTSIDE('joinGetOrNull') },
  // …while an alias may hold them where it is given and where one sorts or groups by it.
  { sql: 'SELECT sum(amount) AS "eur/kwh" FROM rated_usage GROUP BY account_id ORDER BY "eur/kwh"', expect: 'SELECT sum(amount) AS "eur/kwh" FROM rated_usage GROUP BY account_id ORDER BY "eur/kwh"' },
  { sql: 'SELECT 1 AS `v1.2`', expect: 'SELECT 1 AS `v1.2`' },
  { sql: 'SELECT * FROM `default`.`rated_usage`', expect: 'SELECT * FROM `default`.`rated_usage`' },
]

describe('readOnlyStatement', () => {
  for (const c of cases) {
    it(`${JSON.stringify(c.sql)}`, () => {
      if (typeof c.expect === 'string') expect(outcome(c.sql)).toBe(c.expect)
      else expect(outcome(c.sql)).toMatch(c.expect)
    })
  }
})
