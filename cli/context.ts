import { existsSync, statSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ErrorCode, isSystemCallError, RateflowError } from '../common/errors.js'
import { createLogger, type Logger } from '../common/logger.js'
import { redactUrl } from '../common/redact.js'
import { parseNatsUrl } from '../pipeline/nats-url.js'
import type { Runtime } from '../pipeline/runtime.js'

/** Options every command takes (CONTRACT §1). */
export interface GlobalOptions {
  data: string
}

export const DEFAULT_DATA_DIR = './.rateflow'

/** Output sinks, injectable so commands can be exercised in-process. */
export interface Io {
  /**
   * Text, or bytes of UTF-8 text (a query's result, which may be longer than a JS string can be); a newline is added
   * when it has none. Nothing at all is written for an empty one: a query with no rows prints no line (a blank line was
   * one JSONEachRow row that no JSON parser reads).
   */
  out(text: string | Uint8Array): void
  err(text: string): void
}
export const processIo: Io = {
  out: (t) => {
    if (t.length === 0) return
    if (typeof t === 'string') process.stdout.write(t.endsWith('\n') ? t : t + '\n')
    else {
      process.stdout.write(t)
      if (t[t.length - 1] !== 0x0a) process.stdout.write('\n')
    }
  },
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : t + '\n'),
}

/**
 * The services of a data directory for one command. Loaded on demand: `price` and `rate` need none of the
 * queue, store or adapter modules, and loading them took ~0.25 s of each such command's start-up.
 */
export async function runtimeFor(opts: GlobalOptions, log: Logger = createLogger('rateflow')): Promise<Runtime> {
  const { openRuntime } = await import('../pipeline/runtime.js')
  refuseNonDirectory(opts.data)
  try {
    return openRuntime({
      dataDir: opts.data,
      log,
      natsUrl: natsUrlFromEnv(),
      clickhouseUrl: clickhouseUrlFromEnv(),
    })
  } catch (err) {
    // The directory cannot be made or written (a read-only mount, no permission, a file in its path): bad usage.
    if (isSystemCallError(err)) throw usage(`--data ${opts.data}: cannot use it as a data directory: ${err.message}`)
    throw err
  }
}

/**
 * CLICKHOUSE_URL: undefined when unset or empty (the store is embedded), else an http:// or https:// URL; another value
 * is bad usage naming the variable (exit 2), where the client's own error came with its stack trace (exit 1).
 */
export function clickhouseUrlFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): string | undefined {
  const url = env.CLICKHOUSE_URL
  if (url === undefined || url === '') return undefined
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {
    parsed = undefined
  }
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.hostname === '') {
    throw usage(`CLICKHOUSE_URL: ${JSON.stringify(redactUrl(url))} is not an http:// or https:// URL of a ClickHouse server (e.g. http://127.0.0.1:8123)`)
  }
  return url
}

/**
 * NATS_URL: undefined when unset or empty (rateflow starts its own nats-server), else one or more NATS server URLs,
 * comma-separated, as the NATS client reads them (`nats://host:port`, `tls://…`, or `host:port`), each with the same
 * credentials (`user:password@` or `token@`) or none (parseNatsUrl). A value the client cannot read as such is bad usage
 * naming the variable (exit 2), where it came as "cannot reach NATS … Invalid URL" (exit 1) as if a server were down.
 */
export function natsUrlFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): string | undefined {
  const value = env.NATS_URL
  if (value === undefined || value === '') return undefined
  parseNatsUrl(value)
  return value
}

/** Throws bad usage when `data` exists and is not a directory: a file where the data directory should be is named (exit 2), not a failed mkdir with a stack trace. */
export function refuseNonDirectory(data: string): void {
  if (existsSync(data) && !statSync(data).isDirectory()) throw usage(`--data ${data} is not a directory`)
}

export function usage(message: string): RateflowError {
  return new RateflowError(ErrorCode.BadUsage, message)
}

/**
 * parseArgs with strict options; `positionals` = exact count, or -1 for any. An option given twice is a usage error
 * (which one was meant?). `synopsis`, when given, heads a wrong count of arguments: `catalog apply FILE: expected 1
 * argument, got 0` says which command and what it takes.
 */
export function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>, positionals: number, synopsis?: string) {
  let parsed
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true })
  } catch (err) {
    throw usage((err as Error).message)
  }
  const seen = new Set<string>()
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || options[t.name]?.multiple) continue
    if (seen.has(t.name)) throw usage(`--${t.name} is given more than once`)
    seen.add(t.name)
  }
  if (positionals >= 0 && parsed.positionals.length !== positionals) {
    throw usage(`${synopsis ? `${synopsis}: ` : ''}expected ${positionals} argument${positionals === 1 ? '' : 's'}, got ${parsed.positionals.length}`)
  }
  return parsed
}
