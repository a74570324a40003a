import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { applyAccounts, cycleChangingAccounts, plansNotInCatalog } from '../catalog/accounts.js'
import { storedAccounts, storedCatalogs } from '../catalog/repository.js'
import { timeRatedGaps, validateCatalog, validateCatalogVersionOrder, versionWarnings } from '../catalog/validate-catalog.js'
import { findCharge, priceCharge, rateEvent } from '../rating-core/pricing.js'
import { ErrorCode, HeldByAnotherError, isSystemCallError, isUserError, RateflowError, ValidationError, type Problem } from '../common/errors.js'
import type { Catalog } from '../catalog/types.js'
import { isoUtc } from '../common/time.js'
import { logLevelFromEnv } from '../common/logger.js'
import { namedInteger } from '../common/env.js'
import { DEFAULT_DATA_DIR, clickhouseUrlFromEnv, natsUrlFromEnv, parse, processIo, refuseNonDirectory, runtimeFor, usage, type GlobalOptions, type Io } from './context.js'
import { readJsonFile, validatedJson } from './json-file.js'
import { askOn, askRun, queryFormat, queryRun, readOnlyQuery, runningRun, type RunInfo, type StoreAsk } from './query.js'
import type { Store } from '../pipeline/store.js'
import type { RaterOptions } from '../pipeline/rater.js'
import { analystLimitsFromEnv, type AnalystLimits } from '../pipeline/analyst-limits.js'

const HELP = `rateflow — usage mediation, rating and billing

Usage: rateflow <command> [options]        (every command takes --data DIR, default ${DEFAULT_DATA_DIR})

  run [--config rateflow.json]             the whole pipeline in one process (Ctrl-C drains and exits 0)
  catalog apply FILE | catalog list        store a catalog version / list versions
  accounts apply FILE                      upsert customers, accounts, subscriptions, device bindings
  ingest csv FILE... [--source NAME] [--wait]
  query SQL [--format JSONEachRow|CSV|Pretty]   read-only SQL on the store
  price --catalog FILE --plan P --charge C (--quantity Q | --events q1,q2,…)
  rate --catalog FILE --plan P --charge C --start TIME --quantity Q [--timezone TZ (default UTC)]
  demo                                     sample catalog, accounts and 100,000 events, end to end
  bench [NAME]                             benchmarks

Environment: NATS_URL (nats://[user:password@ or token@]host:port, several comma-separated; else a local nats-server),
CLICKHOUSE_URL (else embedded chDB).
Exit codes: 0 ok, 1 runtime failure, 2 bad input or usage.`

type Handler = (args: string[], g: GlobalOptions, io: Io) => Promise<number>

const commands: Record<string, Handler> = {
  run: async (args, g, io) => (await import('./run.js')).runCommand(args, g, io),
  catalog: async (args, g, io) => {
    const [sub, ...rest] = args
    if (sub === 'apply') {
      const { positionals } = parse(rest, {}, 1, 'catalog apply FILE')
      // The release after the apply is a rater: its knobs are checked before anything is stored.
      const raterOptions = (await import('../pipeline/rater.js')).raterOptionsFromEnv()
      const stored = storedCatalogs(g.data)
      const catalog = validatedJson(readJsonFile(positionals[0]!), 'catalog', (doc) => checkedCatalog(doc, stored))
      const rt = await runtimeFor(g)
      const before = rt.repo.catalogs()
      const outcome = validateCatalogVersionOrder(before, catalog)
      const warnings = [...timeRatedGaps(catalog), ...(outcome === 'unchanged' ? [] : versionWarnings(before, catalog, rt.repo.accounts()))]
      if (outcome !== 'unchanged') rt.repo.putCatalog(catalog)
      for (const w of warnings) io.err(`rateflow: warning: ${w.path}: ${w.message}`)
      // Usage already rated at or after the new version's effective_from stays on the version that rated it (no
      // re-rating): said, so it is not found out on an invoice. Asked of the store, or of the `rateflow run` that owns it.
      await releaseWhenIdle(g, 'the catalog version', raterOptions, async (store) => {
        let ratedAfter = 0
        // An earliest version prices only time before every other version's, where nothing was rated.
        if (outcome === 'latest') {
          // The store, or the run that owns it (it was not checked then, and said nothing: read as "none").
          const ask: StoreAsk = { ask: 'rated_after', at: catalog.effective_from }
          let row: { n: string; last: string } | undefined
          try {
            row = (store !== undefined ? await askOn<{ n: string; last: string }>(store, ask) : await askRows<{ n: string; last: string }>(g, ask))[0]
          } catch (err) {
            io.err(`rateflow: warning: whether usage at or after ${catalog.effective_from} was rated already could not be read (${(err as Error).message}); a catalog version does not re-price rated usage`)
          }
          ratedAfter = Number(row?.n ?? 0)
          if (ratedAfter > 0) {
            io.err(
              `rateflow: warning: ${ratedAfter} rated rows have an event_time at or after ${catalog.effective_from} (the latest ${isoUtc(Number(row!.last))}) and stay priced by the version that rated them; a catalog version does not re-price rated usage`,
            )
          }
        }
        io.out(
          JSON.stringify({
            version: catalog.version,
            effective_from: catalog.effective_from,
            status: outcome === 'unchanged' ? 'unchanged' : 'stored',
            ...(ratedAfter > 0 ? { rated_on_earlier_versions: ratedAfter } : {}),
          }),
        )
      })
      return 0
    }
    if (sub === 'list') {
      parse(rest, {}, 0, 'catalog list')
      // Read without opening the data directory: a mistyped --data is named, not made (and listed as empty).
      if (!existsSync(g.data)) {
        throw usage(`--data ${g.data}: no such directory: no catalog was applied there (catalog apply FILE --data ${g.data} makes it)`)
      }
      refuseNonDirectory(g.data)
      const versions = storedCatalogs(g.data)
      io.out(
        JSON.stringify(
          versions.map((c, i) => ({
            version: c.version,
            effective_from: c.effective_from,
            effective_to: versions[i + 1]?.effective_from ?? null,
            currency: c.currency,
            plans: c.plans.map((p) => p.id),
          })),
          null,
          2,
        ),
      )
      return 0
    }
    throw usage('catalog: expected "apply FILE" or "list"')
  },
  accounts: async (args, g, io) => {
    const [sub, ...rest] = args
    if (sub !== 'apply') throw usage('accounts: expected "apply FILE"')
    const { positionals } = parse(rest, {}, 1, 'accounts apply FILE')
    const raterOptions = (await import('../pipeline/rater.js')).raterOptionsFromEnv()
    // Checked before the data directory is opened: a bad file changes nothing, not even a directory.
    const stored = storedAccounts(g.data)
    const json = readJsonFile(positionals[0]!)
    const doc = json.doc
    const changing = cycleChangingAccounts(stored, doc)
    // The file's own problems and the merge's first, as for any file: a cycle change is then looked up in the store.
    if (changing.length > 0 || json.problems.length > 0) validatedJson(json, 'accounts', (d) => applyAccounts(stored, d, { rated: new Set() }))
    const { incoming, merged } = applyAccounts(stored, doc, { rated: changing.length === 0 ? new Set() : await accountsWithRatedUsage(g, changing) })
    const rt = await runtimeFor(g)
    rt.repo.putAccounts(merged)
    for (const w of plansNotInCatalog(incoming, rt.repo.catalogs())) io.err(`rateflow: warning: ${w.path}: ${w.message}`)
    const count = (k: 'accounts' | 'subscriptions') =>
      k === 'accounts'
        ? incoming.customers.reduce((s, c) => s + c.accounts.length, 0)
        : incoming.customers.reduce((s, c) => s + c.accounts.reduce((t, a) => t + a.subscriptions.length, 0), 0)
    const released = await releaseWhenIdle(g, 'the accounts', raterOptions)
    if (released === undefined) {
      // `released: 0` alone read as "nothing this data owns was held" while the running rater was releasing it.
      const run = runningRun(g.data)
      io.err(
        run !== undefined
          ? `rateflow: held usage this data owns is released by the rateflow run on this data directory (pid ${run.pid}; its /v1/stats counts it), not by this command`
          : 'rateflow: another process holds the data directory or the stream (an ingest --wait, a rater elsewhere, or a query): held usage this data owns is released by its rater, if it runs one, else by the next rater to start or the next accounts or catalog apply, not by this command',
      )
    }
    io.out(JSON.stringify({ customers: incoming.customers.length, accounts: count('accounts'), subscriptions: count('subscriptions'), released: released ?? 0 }))
    return 0
  },
  ingest: async (args, g, io) => {
    const [sub, ...rest] = args
    if (sub !== 'csv') throw usage('ingest: expected "csv FILE..."')
    const { values, positionals } = parse(rest, { source: { type: 'string' }, wait: { type: 'boolean' } }, -1)
    const { checkIngest, ingestCsv } = await import('./ingest.js')
    const opts = { files: positionals, source: values.source as string | undefined, wait: Boolean(values.wait) }
    // Before the data directory is opened: bad input makes nothing, not even the directory.
    await checkIngest(opts)
    const rt = await runtimeFor(g)
    // Ctrl-C ends the command at once, as a kill does (what was committed stays, the rest is rated by the same command
    // again): said, where it ended without a word. The signal then takes its default course (exit 130 / 143).
    const onSignal = (signal: NodeJS.Signals): void => {
      io.err(
        `rateflow: ingest csv: interrupted (${signal}): the events committed so far are kept; run the same command again to ingest the rest (what was rated already counts as duplicates)`,
      )
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      process.kill(process.pid, signal)
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    try {
      const counts = await ingestCsv(rt, { ...opts, checked: true })
      io.out(JSON.stringify(counts))
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      await rt.close()
    }
    return 0
  },
  query: async (args, g, io) => {
    const { values, positionals } = parse(args, { format: { type: 'string' } }, -1)
    if (positionals.length !== 1) {
      throw usage(`query: expected the SQL as one argument, got ${positionals.length}${positionals.length > 1 ? ' (quote the SQL)' : ''}: rateflow query "SELECT …" [--format JSONEachRow|CSV|Pretty]`)
    }
    const format = (values.format as string | undefined) ?? 'JSONEachRow'
    // Both checked even when a run answers (it applies its own limits): a bad value is named before anything is asked.
    queryFormat(format)
    const limits = analystLimitsFromEnv()
    io.out(await askStore(g, positionals[0]!, format, limits))
    return 0
  },
  price: async (args, _g, io) => {
    const { values } = parse(
      args,
      { catalog: { type: 'string' }, plan: { type: 'string' }, charge: { type: 'string' }, quantity: { type: 'string' }, events: { type: 'string' } },
      0,
    )
    const { catalog, plan, charge } = required(values, ['catalog', 'plan', 'charge'], 'price')
    if ((values.quantity === undefined) === (values.events === undefined)) throw usage('price: give exactly one of --quantity Q or --events q1,q2,…')
    const cat = validatedJson(readJsonFile(catalog), 'catalog', validateCatalog)
    // A unique_count meter's values are a dimension's values: any text, compared exactly as the rater compares them
    // (not trimmed, and "-x" is no negative number). Every other meter's are decimals.
    const found = findCharge(cat, plan, charge).charge
    const asText = found.kind === 'usage' && cat.meters.find((m) => m.id === found.meter)?.aggregation === 'unique_count'
    const input =
      values.quantity !== undefined
        ? { quantity: nonNegative(String(values.quantity), '--quantity') }
        : { events: String(values.events).split(',').map((v, k) => (asText ? v : nonNegative(v.trim(), `--events value ${k + 1}`))) }
    io.out(JSON.stringify(priceCharge(cat, plan, charge, input)))
    return 0
  },
  rate: async (args, _g, io) => {
    const { values } = parse(
      args,
      {
        catalog: { type: 'string' },
        plan: { type: 'string' },
        charge: { type: 'string' },
        start: { type: 'string' },
        quantity: { type: 'string' },
        timezone: { type: 'string' },
      },
      0,
    )
    const v = required(values, ['catalog', 'plan', 'charge', 'start', 'quantity'], 'rate')
    const tz = (values.timezone as string | undefined) ?? 'UTC'
    io.out(JSON.stringify(rateEvent(validatedJson(readJsonFile(v.catalog), 'catalog', validateCatalog), v.plan, v.charge, v.start, nonNegative(v.quantity, '--quantity'), tz)))
    return 0
  },
  bench: async (args, _g, io) => {
    const { positionals } = parse(args, {}, -1)
    const { runBench } = await import('../bench/index.js')
    return runBench(positionals[0], io.out)
  },
  demo: async (args, g, io) => {
    const { values } = parse(args, { events: { type: 'string' } }, 0, 'demo')
    // --events was read and ignored: the demo always wrote 100,000.
    const problems: Problem[] = []
    const events = namedInteger({ '--events': values.events as string | undefined }, '--events', { min: 1, max: 100_000_000 }, 100_000, problems)
    if (problems.length > 0) throw usage(`demo: ${problems[0]!.path}: ${problems[0]!.message}`)
    const { runDemo } = await import('./demo.js')
    return runDemo(g, io, events)
  },
}

/**
 * Which of `accounts` have rows in rated_usage: asked of a running `rateflow run` that owns the store, else of the store
 * itself, opened to read (none when there is no store yet); undefined when another process holds the data directory.
 */
async function accountsWithRatedUsage(g: GlobalOptions, accounts: readonly string[]): Promise<Set<string> | undefined> {
  try {
    if (clickhouseUrlFromEnv() === undefined && runningRun(g.data) === undefined && !existsSync(join(g.data, 'clickhouse'))) return new Set()
    return new Set((await askRows<{ account_id: string }>(g, { ask: 'accounts_with_rated_usage', accounts: [...accounts] })).map((r) => r.account_id))
  } catch (err) {
    if (err instanceof HeldByAnotherError) return undefined
    const which = accounts.map((a) => JSON.stringify(a)).join(', ')
    const [account, has, its] = accounts.length === 1 ? ['account', 'has', 'its'] : ['accounts', 'have', 'their']
    throw new RateflowError(
      ErrorCode.ServiceUnavailable,
      `accounts apply: cannot tell whether ${account} ${which} ${has} rated usage (${its} bill_cycle_day or timezone changes, which is refused once ${accounts.length === 1 ? 'it has' : 'they have'}): ${(err as Error).message}`,
      { cause: err },
    )
  }
}

/** How long `accounts apply` and `catalog apply` wait for a running `rateflow run` to answer what they ask of the store. */
const ASK_RUN_MS = 30_000

/**
 * The rows a command's own question of the store (StoreAsk) gets: from the `rateflow run` that owns an embedded store
 * (on its writer's session, not behind analysts' queries), waited for ASK_RUN_MS at most (one that is announced but
 * does not answer, stopped with SIGSTOP say, held the command for good); else from the store opened to read.
 */
function askRows<T>(g: GlobalOptions, ask: StoreAsk): Promise<T[]> {
  return fromRunOrStore(
    g,
    (run) => askRun<T>(run, ask, ASK_RUN_MS),
    (store) => askOn<T>(store, ask),
  )
}

/**
 * The answer of read-only SQL on the store of `g.data`, in the `--format` named `format`: from the `rateflow run` that
 * owns an embedded store, else from the store opened to read, within `limits`.
 */
function askStore(g: GlobalOptions, sql: string, format: string, limits?: AnalystLimits): Promise<Buffer> {
  return fromRunOrStore(
    g,
    (run) => queryRun(run, sql, format),
    (store) => readOnlyQuery(store, sql, queryFormat(format), limits),
  )
}

/**
 * `viaRun` of the `rateflow run` that owns the embedded store of `g.data` (no other process can open the directory
 * while it runs); else `viaStore` of the store opened to read, and closed after. Only an existing store is read: a
 * mistyped --data must not create an empty one and answer from it.
 */
async function fromRunOrStore<T>(g: GlobalOptions, viaRun: (run: RunInfo) => Promise<T>, viaStore: (store: Store) => Promise<T>): Promise<T> {
  const url = clickhouseUrlFromEnv()
  const run = url ? undefined : runningRun(g.data)
  if (run !== undefined) return viaRun(run)
  const { openStoreToRead } = await import('../pipeline/runtime.js')
  const opened = await openStoreToRead({ dataDir: g.data, clickhouseUrl: url })
  try {
    return await viaStore(opened.store)
  } finally {
    await opened.close()
  }
}

/**
 * After guiding data changed: when no process owns the data directory (no `rateflow run`), release
 * suspended usage here, so late bindings are rated with no manual step. A running owner polls the guiding
 * data and releases by itself; then this returns undefined. `beforeRelease`, when given, runs first: with the store, or
 * with undefined when it cannot be opened (another process owns it, or it failed). A failure of the store or queue
 * says that `applied` (what the command stored before) is stored all the same, and who releases later.
 */
async function releaseWhenIdle(
  g: GlobalOptions,
  applied: string,
  raterOptions: RaterOptions,
  beforeRelease?: (store: Store | undefined) => Promise<void>,
): Promise<number | undefined> {
  // The hook reports what was applied: once, whichever try gets that far.
  let reported = false
  const report = async (store: Store | undefined): Promise<void> => {
    if (reported) return
    reported = true
    await beforeRelease?.(store)
  }
  const deadline = Date.now() + HOLDER_WAIT_MS
  for (;;) {
    try {
      return await releaseOnce(g, applied, raterOptions, report)
    } catch (err) {
      if (!(err instanceof HeldByAnotherError)) throw err
      // A `rateflow run` releases by itself: it looks at the guiding files before each batch it takes. Another holder (an
      // `ingest csv --wait` finishing, another apply) may be past its last look at them: an apply that wrote while it
      // stopped left the usage it owned held, with both commands at exit 0. So it is waited for, and the release done here.
      if (runningRun(g.data) !== undefined || Date.now() >= deadline) {
        await report(undefined)
        return undefined
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  }
}

/**
 * How long an apply waits for a holder of the data directory or the stream that is not a `rateflow run` to let go, so
 * that it releases what the applied data owns itself. One that holds on longer (a long `ingest csv --wait`) looks at
 * the guiding files again when it settles, after this apply wrote them.
 */
const HOLDER_WAIT_MS = 10_000

/** One try of releaseWhenIdle: HeldByAnotherError when another process holds the data directory or the stream. */
async function releaseOnce(
  g: GlobalOptions,
  applied: string,
  raterOptions: RaterOptions,
  beforeRelease: (store: Store | undefined) => Promise<void>,
): Promise<number> {
  const rt = await runtimeFor(g)
  try {
    let store: Store
    try {
      store = await rt.store()
    } catch (err) {
      // What was applied is stored whatever the store says: the hook still reports it (but not while a try may follow).
      if (!(err instanceof HeldByAnotherError)) await beforeRelease(undefined)
      throw err
    }
    await beforeRelease(store)
    // A store or queue others share: release only while no rater holds the stream (its lease); a running one
    // releases by itself within a second of the change.
    const queue = rt.embeddedStore && rt.ownsQueue ? undefined : await rt.queue()
    const { Rater } = await import('../pipeline/rater.js')
    return await Rater.releaseOnly({ store, queue, ownsQueue: rt.ownsQueue, repo: rt.repo, dataDir: rt.dataDir, log: rt.log }, raterOptions)
  } catch (err) {
    // The data directory or the stream is another process's: releaseWhenIdle decides.
    if (err instanceof HeldByAnotherError) throw err
    // Exit 1 alone read as "nothing was applied", and a second apply then answered "unchanged". So did exit 2 for a
    // store that cannot be used as configured (a ClickHouse server too old for it).
    if (err instanceof RateflowError && (!isUserError(err) || err.code === ErrorCode.BadConfig)) {
      throw new RateflowError(
        err.code,
        `${applied} ${applied.endsWith('s') ? 'are' : 'is'} stored, but held usage was not released (the next rater to start, or the next apply, releases it): ${err.message}`,
        { cause: err },
      )
    }
    throw err
  } finally {
    await rt.close()
  }
}

function required<K extends string>(values: Record<string, unknown>, keys: K[], cmd: string): Record<K, string> {
  const missing = keys.filter((k) => typeof values[k] !== 'string' || values[k] === '')
  if (missing.length) throw usage(`${cmd}: missing ${missing.map((k) => `--${k}`).join(', ')}`)
  return values as Record<K, string>
}

/**
 * Returns `value` unless it is negative, which is a usage error naming the flag. The pipeline rejects
 * negative quantities (README, "Quantities"), so a quote for one would price usage that cannot exist;
 * the models would silently bill it as 0.
 */
function nonNegative(value: string, flag: string): string {
  if (value.startsWith('-')) throw usage(`${flag} "${value}" is negative: usage quantities are 0 or more`)
  return value
}

/**
 * A catalog file checked whole: its own problems and, with them, how it stands against the stored versions (a new
 * version must be effective after the latest; a stored id must keep its content), so that one run names every problem.
 * The order is checked when the file's version and effective_from are themselves valid.
 */
function checkedCatalog(doc: unknown, stored: Catalog[]): Catalog {
  const problems: Problem[] = []
  let catalog: Catalog | undefined
  try {
    catalog = validateCatalog(doc)
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err
    problems.push(...err.problems)
  }
  const head = doc as { version?: unknown; effective_from?: unknown } | null
  const headOk = typeof head?.version === 'string' && typeof head.effective_from === 'string' && !problems.some((q) => q.path === '$.version' || q.path === '$.effective_from')
  if (headOk) {
    try {
      validateCatalogVersionOrder(stored, (catalog ?? head) as Catalog)
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err
      // A stored id with other content is this file's problem only when the file is otherwise valid (else any fix differs).
      problems.push(...err.problems.filter((q) => catalog !== undefined || q.path !== '$.version'))
    }
  }
  if (problems.length > 0) throw new ValidationError('catalog', problems)
  return catalog!
}

/** Entry point: returns the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  // --data is global: take it out wherever it stands.
  // RATEFLOW_DATA, when set, replaces the default; --data replaces both. Empty, it would be the current directory.
  const dataEnv = process.env.RATEFLOW_DATA
  const g: GlobalOptions = { data: dataEnv ?? DEFAULT_DATA_DIR }
  const args: string[] = []
  let dataGiven = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--data' || a.startsWith('--data=')) {
      const v = a === '--data' ? argv[++i] : a.slice(7)
      if (!v) return fail(io, usage('--data needs a directory'))
      if (dataGiven) return fail(io, usage('--data is given more than once'))
      dataGiven = true
      g.data = v
    } else args.push(a)
  }
  if (!dataGiven && dataEnv === '') return fail(io, usage('RATEFLOW_DATA is empty: set it to a data directory, or unset it for the default ./.rateflow'))
  const [name, ...rest] = args
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(HELP)
    return name ? 0 : 2
  }
  const handler = commands[name]
  if (!handler) return fail(io, usage(`unknown command "${name}"; see rateflow --help`))
  // `rateflow query --help`: the help, not a usage error about an unknown option.
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(HELP)
    return 0
  }
  try {
    // Checked for every command, those that log nothing included: a knob that is wrong is named wherever it is set.
    logLevelFromEnv()
    natsUrlFromEnv()
    clickhouseUrlFromEnv()
    return await handler(rest, g, io)
  } catch (err) {
    return fail(io, err)
  }
}

function fail(io: Io, err: unknown): number {
  if (isUserError(err)) {
    io.err(`rateflow: ${(err as Error).message}`)
    return 2
  }
  // A RateflowError says what and where on purpose (a service unreachable, the store failing): its message is the
  // report. So does a failed system call (`EROFS: read-only file system, open '…/accounts.json.tmp'`): what and where,
  // from the machine, not from a defect. Anything else is unexpected, and its stack is what helps.
  io.err(`rateflow: ${err instanceof RateflowError || isSystemCallError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  return 1
}

