import { existsSync, realpathSync, statSync } from 'node:fs'
import { dirname, join, resolve, sep } from 'node:path'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import os from 'node:os'
import { isIP, type AddressInfo } from 'node:net'
import { checkAdapterConfig, type AdaptersConfig, type ResourceCheck } from '../adapters/config.js'
import { CsvInbox, checkCsvInboxEntries, unsafeMoveFolders, type CsvInboxOptions } from '../adapters/csv-inbox.js'
import { MqttAdapter } from '../adapters/mqtt/index.js'
import { BUILTIN_MAPPINGS, SyslogAdapter } from '../adapters/syslog/index.js'
import { ErrorCode, RateflowError, ValidationError, type Problem } from '../common/errors.js'
import type { UsageBatch } from '../rating-core/record.js'
import { Rater, raterOptionsFromEnv, type BatchOutcome } from '../pipeline/rater.js'
import { analystLimitsFromEnv } from '../pipeline/analyst-limits.js'
import type { Store } from '../pipeline/store.js'
import { parse, runtimeFor, usage, type GlobalOptions, type Io } from './context.js'
import { readJsonFile, validatedJson } from './json-file.js'
import { jsonMemberPath } from '../common/strings.js'
import { announceRun, askOn, parseAsk, queryFormat, readOnlyQuery, type StoreAsk } from './query.js'

export interface RunConfig {
  adapters: AdaptersConfig
  csv: CsvInboxOptions[]
  http: { port: number; host: string }
}

const DEFAULT_HTTP = { port: 8080, host: '127.0.0.1' }

/**
 * Validates a parsed rateflow.json; throws one ValidationError listing every problem with its JSON path. With
 * `resources`, also checks the secrets and TLS files the adapters will read at start (see validateAdapterConfig).
 */
export function validateRunConfig(doc: unknown, opts: { resources?: ResourceCheck } = {}): RunConfig {
  const problems: Problem[] = []
  let adapters: AdaptersConfig = { mqtt: [], syslog: [], csv: [] }
  let syslogPaths: readonly string[] = []
  let csv: CsvInboxOptions[] = []
  const http = { ...DEFAULT_HTTP }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ValidationError('invalid config', [{ path: '$', message: 'must be a JSON object' }])
  }
  const o = doc as Record<string, unknown>
  for (const k of Object.keys(o)) if (k !== 'adapters' && k !== 'http') problems.push({ path: jsonMemberPath('$', k), message: 'unknown key' })
  if (o.adapters !== undefined) {
    // With problems too, the entries as far as they could be read: a bad MQTT url hid the syslog port clashes and the
    // CSV sources taken by another adapter until the next run.
    const checked = checkAdapterConfig(o.adapters, {
      presets: BUILTIN_MAPPINGS,
      hostname: os.hostname(),
      path: '$.adapters',
      ...(opts.resources && { resources: opts.resources }),
    })
    problems.push(...checked.problems)
    adapters = checked.config
    syslogPaths = checked.paths.syslog
    const rawCsv = (o.adapters as Record<string, unknown> | null)?.csv
    if (Array.isArray(rawCsv)) {
      const r = checkCsvInboxEntries(rawCsv, '$.adapters.csv')
      problems.push(...r.problems)
      csv = r.options
      const seen = new Map<string, string>()
      // A bad source is '' in `adapters`; named at its own path already.
      const others = new Set([...adapters.mqtt.map((m) => m.source), ...adapters.syslog.map((s) => s.source)].filter((s) => s !== ''))
      rawCsv.forEach((e, i) => {
        const s = (e as Record<string, unknown> | null)?.source
        if (typeof s !== 'string') return
        if (others.has(s) || seen.has(s)) problems.push({ path: `$.adapters.csv[${i}].source`, message: `${JSON.stringify(s)} is already used by another adapter` })
        else seen.set(s, `$.adapters.csv[${i}]`)
      })
      problems.push(...watchProblems(rawCsv, opts.resources !== undefined))
    }
  }
  if (o.http !== undefined) {
    const h = o.http
    if (typeof h !== 'object' || h === null || Array.isArray(h)) problems.push({ path: '$.http', message: 'must be an object' })
    else {
      const hh = h as Record<string, unknown>
      for (const k of Object.keys(hh)) if (k !== 'port' && k !== 'host') problems.push({ path: jsonMemberPath('$.http', k), message: 'unknown key' })
      if (hh.port !== undefined) {
        if (typeof hh.port !== 'number' || !Number.isInteger(hh.port) || hh.port < 0 || hh.port > 65535) {
          problems.push({ path: '$.http.port', message: 'must be an integer port 0..65535 (0 = any free port)' })
        } else http.port = hh.port
      }
      if (hh.host !== undefined) {
        if (typeof hh.host !== 'string' || hh.host === '') problems.push({ path: '$.http.host', message: 'must be a non-empty string' })
        else http.host = hh.host
      }
    }
  }
  problems.push(...portClashes(adapters, syslogPaths, http, o.http !== undefined && (o.http as Record<string, unknown> | null)?.port !== undefined))
  if (problems.length > 0) throw new ValidationError('invalid config', problems)
  return { adapters, csv, http }
}

/** How long a stop waits for HTTP requests in progress before it closes their connections. */
const HTTP_DRAIN_MS = 5_000

/** A failed analyst's query as HTTP: the SQL's fault 400; the store busy, closing or unreachable 503; else 500. */
function queryFailureStatus(err: unknown): number {
  if (!(err instanceof RateflowError)) return 500
  return err.code === ErrorCode.BadInput ? 400 : err.code === ErrorCode.ServiceUnavailable ? 503 : 500
}

/** The largest SQL `/v1/query` reads from a POST body. */
const MAX_QUERY_BYTES = 1024 * 1024

/**
 * Why a request is refused as another site's, or undefined when it may be answered. A web page the analyst opens can
 * make the browser ask this API: by a name the page's owner points at 127.0.0.1 (DNS rebinding: the request carries
 * that name as its Host, and the page may read the answer, billing data included), or from its own origin (an Origin
 * header of that site). So the Host must be an IP address, `localhost` or the configured http.host (any port), and an
 * Origin, when sent, must be the Host itself. A request without Host (HTTP/1.0) comes from no browser, and passes.
 * A browser sends no Origin with a page's plain GET (an image, a script, a no-cors fetch): the page cannot read the
 * answer, but it can time it, and `/v1/query?sql=SELECT if(sum(amount) > 1, sleep(2), 0) FROM rated_usage` told it
 * the totals bit by bit. Browsers name such a request's site in `Sec-Fetch-Site`: any but `same-origin` and `none`
 * (typed in the address bar) is refused. Clients that are no browser (curl, the CLI) send none, and pass.
 */
export function foreignRequest(
  headers: { host?: string | undefined; origin?: string | undefined; 'sec-fetch-site'?: string | string[] | undefined },
  configuredHost: string,
): string | undefined {
  const site = headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return `Sec-Fetch-Site ${JSON.stringify(site)}: a page of another site may not ask this API`
  }
  const host = headers.host
  if (host !== undefined) {
    let name: string
    try {
      name = new URL(`http://${host}`).hostname.toLowerCase()
    } catch {
      return `Host ${JSON.stringify(host)} is not a host name`
    }
    // `localhost.` is localhost: a trailing dot only roots the name.
    const bare = (name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name).replace(/\.$/, '')
    if (isIP(bare) === 0 && bare !== 'localhost' && bare !== configuredHost.toLowerCase().replace(/\.$/, '')) {
      return `Host ${JSON.stringify(host)} is not this API's: ask it by IP address, localhost or ${configuredHost} (config http.host), as a name pointed here by another site is refused`
    }
  }
  const origin = headers.origin
  if (origin !== undefined) {
    let same = false
    try {
      const o = new URL(origin)
      same = host !== undefined && o.protocol === 'http:' && o.host === new URL(`http://${host}`).host
    } catch {
      same = false
    }
    if (!same) return `Origin ${JSON.stringify(origin)} is not this API's own (${host ?? 'no Host'}): a page of another site may not ask it`
  }
  return undefined
}

/** A request's body as UTF-8 text, or undefined when it is longer than `max` bytes (the rest is read and dropped). */
function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const take = (c: Buffer) => {
      size += c.length
      if (size <= max) return void chunks.push(c)
      req.off('data', take)
      req.resume()
      resolve(undefined)
    }
    req.on('data', take)
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

/**
 * The CSV inboxes' directories: one directory watched by two entries would have each file dropped there rated once per
 * entry, under each source (the dedupe key is (source, event_id), so nothing catches it), and the entries race to move
 * it. So would one inside another's (an inbox moves each file it rated to its `done/`, where the inner one finds it).
 * Compared as absolute paths, and with `onMachine` as real paths (a symlink to a watched directory is that directory);
 * with `onMachine`, a path that exists and is no directory is named too, and a missing one the inbox cannot create
 * because a file stands where one of its parents would be (`mkdir` failed at start with ENOTDIR, naming no JSON path).
 */
function watchProblems(entries: readonly unknown[], onMachine: boolean): Problem[] {
  const problems: Problem[] = []
  const seen = new Map<string, string>()
  const within = (a: string, b: string) => a === b || a.startsWith(b.endsWith(sep) ? b : b + sep)
  entries.forEach((e, i) => {
    const w = (e as Record<string, unknown> | null)?.watch
    if (typeof w !== 'string' || w === '') return
    const path = `$.adapters.csv[${i}].watch`
    let dir = resolve(w)
    if (onMachine && existsSync(dir)) {
      if (!statSync(dir).isDirectory()) {
        problems.push({ path, message: `${w} is a file, not a directory to watch` })
        return
      }
      dir = realpathSync(dir)
      // Said at start, where the inbox would otherwise stall with one warning in the log.
      for (const { sub, link } of unsafeMoveFolders(dir)) {
        problems.push({
          path,
          message: `${join(w, sub)} is ${link ? 'a symbolic link' : 'not a directory'}: the inbox moves files through ${sub}/ and follows no link there; make it a directory of its own`,
        })
      }
    } else if (onMachine) {
      const file = fileAbove(dir)
      if (file !== undefined) {
        problems.push({ path, message: `${w} cannot be created: ${file} is a file, not a directory` })
        return
      }
    }
    const first = seen.get(dir)
    const nested = [...seen].find(([d]) => within(dir, d) || within(d, dir))
    if (first !== undefined) {
      problems.push({ path, message: `${w} is the directory ${first} watches too: each file dropped there would be rated once per entry, under each source` })
    } else if (nested !== undefined) {
      problems.push({ path, message: `${w} and the directory ${nested[1]} watches lie one inside the other: a file one inbox moves to its done/ or failed/ could be rated again by the other` })
    } else seen.set(dir, `$.adapters.csv[${i}]`)
  })
  return problems
}

/** The nearest existing parent of the missing `dir` when it is no directory (so `dir` cannot be made); else undefined. */
function fileAbove(dir: string): string | undefined {
  for (let p = dirname(dir); ; p = dirname(p)) {
    let isDir: boolean | undefined
    try {
      isDir = statSync(p, { throwIfNoEntry: false })?.isDirectory()
    } catch {
      // ENOTDIR: a file stands higher up.
      isDir = undefined
    }
    if (isDir !== undefined) return isDir ? undefined : p
    if (dirname(p) === p) return undefined
  }
}

/**
 * Listeners of one config that would take the same port: the second could never start. A fixed port (not 0) of one
 * protocol on the same host, or where either listens on every address (0.0.0.0, ::).
 */
function portClashes(adapters: AdaptersConfig, syslogPaths: readonly string[], http: { port: number; host: string }, httpPortGiven: boolean): Problem[] {
  // `localhost` is the loopback address the OS resolves it to; 127.0.0.1 on these machines.
  const address = (h: string) => (h === 'localhost' ? '127.0.0.1' : h)
  const taken: Array<{ proto: 'tcp' | 'udp'; port: number; host: string; path: string }> = []
  taken.push({ proto: 'tcp', port: http.port, host: address(http.host), path: httpPortGiven ? '$.http.port' : `$.http.port (default ${http.port})` })
  adapters.syslog.forEach((a, i) => {
    if (a.tcp_port !== undefined) taken.push({ proto: 'tcp', port: a.tcp_port, host: address(a.host), path: `${syslogPaths[i]!}.tcp_port` })
    if (a.udp_port !== undefined) taken.push({ proto: 'udp', port: a.udp_port, host: address(a.host), path: `${syslogPaths[i]!}.udp_port` })
  })
  const any = (h: string) => h === '0.0.0.0' || h === '::'
  const problems: Problem[] = []
  taken.forEach((t, i) => {
    if (t.port === 0 || t.host === '') return
    const first = taken.slice(0, i).find((u) => u.host !== '' && u.proto === t.proto && u.port === t.port && (u.host === t.host || any(u.host) || any(t.host)))
    if (first) problems.push({ path: t.path, message: `${t.proto} port ${t.port} on ${t.host} is also taken by ${first.path}; each listener needs a port of its own` })
  })
  return problems
}

function loadConfig(file: string | undefined): RunConfig {
  let path = file
  if (path === undefined) {
    if (!existsSync('rateflow.json')) return validateRunConfig({})
    path = 'rateflow.json'
  }
  const json = readJsonFile(path)
  try {
    // Secrets and TLS files are checked here, before any service starts, so one run names every missing one.
    return validatedJson(json, path, (doc) => validateRunConfig(doc, { resources: { env: process.env } }))
  } catch (err) {
    if (err instanceof ValidationError) throw new ValidationError(`${path}`, err.problems)
    throw err
  }
}

interface Running {
  kind: 'mqtt' | 'syslog' | 'csv'
  source: string
  start(): Promise<void>
  stop(): Promise<void>
  readonly stats: unknown
}

/** `rateflow run [--config rateflow.json]` (CONTRACT §1, §8). */
export async function runCommand(args: string[], g: GlobalOptions, io: Io): Promise<number> {
  let configFile: string | undefined
  try {
    configFile = parse(args, { config: { type: 'string' } }, 0).values.config as string | undefined
  } catch (err) {
    throw usage(`run: ${(err as Error).message}`)
  }
  // `--config=` (empty) read the file "" and said `: cannot read`.
  if (configFile === '') throw usage('run: --config needs a file (rateflow.json)')
  const config = loadConfig(configFile)
  // Before anything starts, as the config: a bad value exits 2 naming the variable.
  const limits = analystLimitsFromEnv()
  const rt = await runtimeFor(g)
  const log = rt.log
  // Since this run started. Of the stream's batches: read = rated + duplicates + rejected + suspended (held when read).
  // `released`: held usage (held by this run or before it) rated since, when the guiding data came to own it.
  const counts = { batches: 0, read: 0, rated: 0, duplicates: 0, rejected: 0, suspended: 0, released: 0 }
  const adapters: Running[] = []
  let rater: Rater | undefined
  /** The store, for the stop (analysts' queries waiting are refused before the HTTP drain). */
  let opened: Store | undefined
  let server: Server | undefined
  let withdraw: (() => void) | undefined
  let exitCode = 0
  let stopRequested: ((code: number) => void) | undefined
  const stopSignal = new Promise<number>((resolve) => (stopRequested = resolve))
  const onSignal = (sig: NodeJS.Signals) => {
    log.info({ signal: sig }, 'draining')
    stopRequested?.(0)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const queue = await rt.queue()
    const store = await rt.store()
    opened = store
    rater = new Rater({ store, queue, ownsQueue: rt.ownsQueue, repo: rt.repo, dataDir: rt.dataDir, log }, raterOptionsFromEnv())
    rater.on('outcome', (o: BatchOutcome) => {
      // A release's page reads no input (read 0): its rated events were counted as suspended when they were read.
      if (o.read === 0) {
        counts.released += o.rated
        return
      }
      counts.batches++
      counts.read += o.read
      counts.rated += o.rated
      counts.duplicates += o.duplicates
      counts.rejected += o.rejected
      counts.suspended += o.suspended
    })
    rater.on('error', (err: unknown) => {
      io.err(`rateflow: rater failed: ${err instanceof Error ? err.message : String(err)}`)
      stopRequested?.(1)
    })
    await rater.start()

    const sink = (b: UsageBatch) => queue.publish(b).then(() => undefined)
    const maxBatchBytes = queue.maxBatchBytes
    for (const m of config.adapters.mqtt) {
      const a = new MqttAdapter(m, { sink, logger: log, maxBatchBytes })
      adapters.push({ kind: 'mqtt', source: m.source, start: () => a.start(), stop: () => a.stop(), get stats() { return a.stats } })
    }
    const syslogs: Array<{ source: string; a: SyslogAdapter }> = []
    for (const s of config.adapters.syslog) {
      const a = new SyslogAdapter(s, { sink, logger: log, maxBatchBytes })
      syslogs.push({ source: s.source, a })
      adapters.push({ kind: 'syslog', source: s.source, start: () => a.start(), stop: () => a.stop(), get stats() { return a.stats } })
    }
    for (const c of config.csv) {
      const a = new CsvInbox(c, { sink, logger: log, maxBatchBytes })
      adapters.push({ kind: 'csv', source: c.source, start: () => a.start(), stop: () => a.stop(), get stats() { return a.stats } })
    }
    for (const a of adapters) await a.start()

    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost')
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(body))
      }
      const foreign = foreignRequest(req.headers, config.http.host)
      if (foreign !== undefined) return send(403, { error: `forbidden: ${foreign}` })
      const isQuery = url.pathname === '/v1/query'
      const isAsk = url.pathname === '/v1/ask'
      if (isAsk ? req.method !== 'POST' : req.method !== 'GET' && !(isQuery && req.method === 'POST')) {
        // HTTP asks a 405 to say which methods the resource takes.
        res.setHeader('allow', isAsk ? 'POST' : isQuery ? 'GET, POST' : 'GET')
        return send(405, { error: 'method not allowed' })
      }
      if (isAsk) {
        // `catalog apply` / `accounts apply` on this data directory: a named question, answered on the writer's session.
        readBody(req, MAX_QUERY_BYTES).then(
          async (text) => {
            if (text === undefined) return send(413, { error: `ask: the body is longer than ${MAX_QUERY_BYTES} bytes` })
            let ask: StoreAsk
            try {
              ask = parseAsk(text)
            } catch (err) {
              return send(400, { error: (err as Error).message })
            }
            try {
              send(200, await askOn(store, ask))
            } catch (err) {
              send(500, { error: `ask: ${(err as Error).message}` })
            }
          },
          (err: unknown) => send(400, { error: `ask: could not read the body: ${(err as Error).message}` }),
        )
        return
      }
      if (url.pathname === '/health') return send(200, { status: 'ok' })
      if (isQuery) {
        // `rateflow query` on this data directory comes here: read-only SQL, the CLI's formats, errors as 400. The SQL
        // comes as ?sql= (GET), or as the body of a POST: a long IN list passes Node's 16 KiB limit on a request's
        // headers once URL-encoded, and was refused with 431 before it was read.
        // A parameter given twice: which was meant is not for the server to guess (the first was taken, silently).
        const twice = ['sql', 'format'].find((k) => url.searchParams.getAll(k).length > 1)
        if (twice !== undefined) return send(400, { error: `query: ${twice} is given more than once` })
        const name = url.searchParams.get('format') ?? 'JSONEachRow'
        let format: ReturnType<typeof queryFormat>
        try {
          format = queryFormat(name)
        } catch (err) {
          return send(400, { error: (err as Error).message })
        }
        const answer = (sql: string) =>
          readOnlyQuery(store, sql, format, limits).then(
            (text) => {
              res.writeHead(200, { 'content-type': name === 'JSONEachRow' ? 'application/x-ndjson' : 'text/plain; charset=utf-8' })
              res.end(text)
            },
            (err: unknown) => send(queryFailureStatus(err), { error: (err as Error).message }),
          )
        if (req.method === 'POST') {
          readBody(req, MAX_QUERY_BYTES).then(
            (sql) => (sql === undefined ? send(413, { error: `query: the SQL is longer than ${MAX_QUERY_BYTES} bytes` }) : answer(sql)),
            (err: unknown) => send(400, { error: `query: could not read the SQL: ${(err as Error).message}` }),
          )
          return
        }
        const sql = url.searchParams.get('sql')
        // Missing: an HTTP caller's mistake. Empty (`rateflow query ""` forwarded here): the read-only check words it,
        // as the CLI does when no run owns the store.
        if (sql === null) return send(400, { error: 'query: give the SQL as ?sql= or as the body of a POST' })
        void answer(sql)
        return
      }
      if (url.pathname === '/v1/stats') {
        return send(200, {
          adapters: adapters.map((a) => ({ kind: a.kind, source: a.source, stats: a.stats })),
          outcomes: { ...counts },
        })
      }
      return send(404, { error: 'not found' })
    })
    const srv = server
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error) =>
        reject(new RateflowError(ErrorCode.ServiceUnavailable, `http: cannot listen on ${config.http.host} port ${config.http.port} (config http.port / http.host): ${err.message}`, { cause: err }))
      srv.once('error', failed)
      srv.listen(config.http.port, config.http.host, () => {
        srv.off('error', failed)
        resolve()
      })
    })
    const port = (server.address() as AddressInfo).port
    const host = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host
    // Reachable for `rateflow query` on this data directory while this process owns it.
    const queryHost = config.http.host === '0.0.0.0' ? '127.0.0.1' : config.http.host === '::' ? '[::1]' : host
    withdraw = announceRun(rt.dataDir, { pid: process.pid, http: `http://${queryHost}:${port}` })
    io.out(
      JSON.stringify({
        status: 'running',
        http: `http://${host}:${port}`,
        syslog: syslogs.map(({ source, a }) => ({ source, udp: a.ports.udp ?? null, tcp: a.ports.tcp ?? null })),
      }),
    )
    exitCode = await stopSignal
  } finally {
    // Drain: adapters stop (their batchers flush), then the HTTP API, then the rater, then the services.
    for (const a of adapters.reverse()) {
      try {
        await a.stop()
      } catch (err) {
        io.err(`rateflow: stopping ${a.kind} adapter ${a.source}: ${(err as Error).message}`)
        exitCode = 1
      }
    }
    withdraw?.()
    // Analysts' queries waiting for their turn are answered now (503, the run is stopping), within the drain below.
    opened?.refuseAnalystQueries()
    if (server) {
      // close() waits for every open connection: one client that connected and sent nothing (a probe, a scanner) held
      // the stop for as long as it stayed. Idle ones are closed now, and any left after HTTP_DRAIN_MS (a query still
      // being answered) then.
      const srv = server
      const closed = new Promise<void>((resolve) => srv.close(() => resolve()))
      srv.closeIdleConnections()
      const cut = setTimeout(() => srv.closeAllConnections(), HTTP_DRAIN_MS)
      await closed
      clearTimeout(cut)
    }
    try {
      await rater?.stop()
    } finally {
      await rt.close()
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
  return exitCode
}
