import { execFile, spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { validateRunConfig } from '../cli/run.js'
import { CSV_HEADER, sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { startMosquitto, type LocalMosquitto } from '../pipeline/services/mosquitto.js'
import { killStrayChildren, tempDir, writeJson } from './helpers/cli.js'

/**
 * The server deployment of docker-compose.yml, proven without a Docker engine (none runs here):
 *  - the compose file publishes ports on 127.0.0.1 only, keeps no secret, and builds rateflow from the Dockerfile;
 *  - deploy/rateflow.json is a valid `rateflow run` config;
 *  - the Dockerfile's steps, replayed in a temp dir (each stage a folder standing for its file system root; COPY and
 *    WORKDIR as Docker does them, RUN through `sh -c` in its WORKDIR), build an image tree with production packages
 *    only, and its CMD starts `rateflow run` from that tree, which rates a CSV dropped into its inbox.
 * What the replay cannot show: the base image (node:20-bookworm-slim) itself, `--chown`, USER. The run uses the
 * image's config with addresses of services this test starts (mosquitto on a free port, a local nats-server and
 * embedded ClickHouse instead of the compose services' host names).
 */
const ROOT = resolve(import.meta.dirname, '..')
const execFileP = promisify(execFile)
const tmp = tempDir('rateflow-deploy-')
let broker: LocalMosquitto | undefined
afterEach(() => {
  killStrayChildren()
})
afterAll(async () => {
  await broker?.stop()
  tmp.cleanup()
})

interface Stage {
  readonly name: string
  /** The folder standing for this stage's file system root. */
  readonly root: string
  workdir: string
}

/** Instructions of a Dockerfile, comments and blank lines dropped (this Dockerfile uses no line continuations). */
function instructions(text: string): Array<{ op: string; args: string; line: number }> {
  return text
    .split('\n')
    .map((l, i) => ({ l: l.trim(), line: i + 1 }))
    .filter(({ l }) => l !== '' && !l.startsWith('#'))
    .map(({ l, line }) => {
      if (l.endsWith('\\')) throw new Error(`Dockerfile:${line}: line continuations are not replayed`)
      const sp = l.indexOf(' ')
      return { op: l.slice(0, sp).toUpperCase(), args: l.slice(sp + 1).trim(), line }
    })
}

/** What .dockerignore keeps out of the build context (top-level names and simple globs). */
function ignored(): (rel: string) => boolean {
  const pats = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  const res = pats.map((p) => new RegExp('^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*') + '(/|$)'))
  return (rel) => res.some((r) => r.test(rel))
}

/** Replays the Dockerfile; returns the last stage and its CMD. */
async function replay(): Promise<{ stage: Stage; cmd: string[] }> {
  const stages: Stage[] = []
  let cmd: string[] = []
  const skip = ignored()
  const at = (s: Stage, p: string) => join(s.root, p.startsWith('/') ? p : join(s.workdir, p))
  for (const { op, args, line } of instructions(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))) {
    const cur = stages[stages.length - 1]
    if (op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      const root = join(tmp.dir, `stage-${stages.length}`)
      mkdirSync(root, { recursive: true })
      stages.push({ name: m?.[2] ?? String(stages.length), root, workdir: '/' })
    } else if (!cur) {
      throw new Error(`Dockerfile:${line}: ${op} before FROM`)
    } else if (op === 'WORKDIR') {
      cur.workdir = args.startsWith('/') ? args : join(cur.workdir, args)
      mkdirSync(join(cur.root, cur.workdir), { recursive: true })
    } else if (op === 'COPY') {
      const words = args.split(/\s+/)
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length)
      const paths = words.filter((w) => !w.startsWith('--'))
      const dst = paths.pop()!
      const source = from === undefined ? undefined : stages.find((s) => s.name === from)
      if (from !== undefined && !source) throw new Error(`Dockerfile:${line}: no stage ${from}`)
      for (const src of paths) {
        const abs = source ? join(source.root, src.startsWith('/') ? src : join(source.workdir, src)) : join(ROOT, src)
        if (!existsSync(abs)) throw new Error(`Dockerfile:${line}: COPY source ${src} does not exist`)
        const into = dst.endsWith('/') || paths.length > 1 ? join(at(cur, dst), basename(src)) : at(cur, dst)
        // A directory's contents go into the destination, as with Docker; the context minus .dockerignore.
        cpSync(abs, into, {
          recursive: true,
          filter: (f) => source !== undefined || !skip(f.slice(ROOT.length + 1)),
        })
      }
    } else if (op === 'RUN') {
      // Faithful only while the step stays inside its WORKDIR: an absolute path would touch this machine.
      if (/(^|[\s=])\//.test(args)) throw new Error(`Dockerfile:${line}: RUN uses an absolute path; the replay cannot run it`)
      // The npm cache of this machine's set-up serves the packages (the same versions the registry would).
      await execFileP('sh', ['-c', args], { cwd: join(cur.root, cur.workdir), env: { ...process.env, npm_config_prefer_offline: 'true' }, maxBuffer: 1 << 26 })
    } else if (op === 'CMD') {
      cmd = JSON.parse(args) as string[]
    } else if (!['USER', 'EXPOSE', 'ENV', 'LABEL'].includes(op)) {
      throw new Error(`Dockerfile:${line}: ${op} is not replayed by this test`)
    }
  }
  return { stage: stages[stages.length - 1]!, cmd }
}

describe('docker-compose.yml', () => {
  const compose = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')

  it('publishes every port on 127.0.0.1, keeps no password, and builds rateflow from the Dockerfile', () => {
    const published = [...compose.matchAll(/ports:\s*\[([^\]]*)\]/g)].flatMap((m) => m[1]!.split(',').map((p) => p.trim().replace(/"/g, '')))
    expect(published.length).toBeGreaterThan(0)
    for (const p of published) expect(p, p).toMatch(/^127\.0\.0\.1:/)
    expect(compose).toMatch(/CLICKHOUSE_PASSWORD: \$\{CLICKHOUSE_PASSWORD:\?/)
    // NATS takes only clients with the token (its port would otherwise let anyone publish usage that is billed).
    expect(compose).toMatch(/"--auth", "\$\{NATS_TOKEN:\?set NATS_TOKEN\}"/)
    expect(compose).toMatch(/NATS_URL: nats:\/\/\$\{NATS_TOKEN\}@nats:4222/)
    expect(compose).toMatch(/rateflow:\n(?:\s+#.*\n)?\s+build: \.\n/)
  })

  it('starts rateflow once the store and the queue answer (it exits at once when they do not), and again if it stops', () => {
    // A first `up` starts ClickHouse for seconds (it makes the user and the database): rateflow started beside it exited.
    expect(compose).toMatch(/depends_on:\n\s+nats: \{ condition: service_healthy \}\n\s+clickhouse: \{ condition: service_healthy \}/)
    expect(compose).toMatch(/\n {4}restart: unless-stopped\n/)
    for (const name of ['nats', 'clickhouse']) expect([name, compose.split(`\n  ${name}:\n`)[1]!.split(/\n {2}\w/)[0]]).toEqual([name, expect.stringContaining('healthcheck:')])
    // The healthcheck runs a program of the image: the plain nats image has none (no shell, no wget).
    expect(compose).toMatch(/image: nats:[\d.]+-alpine/)
  })

  it('deploy/rateflow.json is a valid `rateflow run` config', () => {
    expect(() => validateRunConfig(JSON.parse(readFileSync(join(ROOT, 'deploy/rateflow.json'), 'utf8')))).not.toThrow()
  })
})

describe('the Dockerfile, replayed', () => {
  it('builds production packages only, and its CMD runs rateflow, which rates a CSV dropped into the inbox', async () => {
    const { stage, cmd } = await replay()
    const app = join(stage.root, stage.workdir)
    expect(existsSync(join(app, 'dist/cli/main.js'))).toBe(true)
    // Pruned: the compiler and the test runner stay in the build stage.
    for (const dev of ['typescript', 'vitest', 'fast-check']) expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false)
    expect(cmd.slice(0, 3)).toEqual(['node', 'bin/rateflow.js', 'run'])
    const mapped = cmd.map((a) => (a.startsWith('/') ? join(stage.root, a) : a))
    const data = mapped[mapped.indexOf('--data') + 1]!
    const configPath = mapped[mapped.indexOf('--config') + 1]!
    expect(statSync(data).isDirectory()).toBe(true)

    // The image's config, pointed at services this test runs.
    broker = await startMosquitto(tmp.dir)
    const image = JSON.parse(readFileSync(configPath, 'utf8')) as {
      adapters: { mqtt: Array<Record<string, unknown>>; syslog: Array<Record<string, unknown>>; csv: Array<Record<string, unknown>> }
      http: Record<string, unknown>
    }
    const inbox = join(stage.root, image.adapters.csv[0]!.watch as string)
    writeJson(configPath, {
      adapters: {
        mqtt: image.adapters.mqtt.map((m) => ({ ...m, url: broker!.url })),
        syslog: image.adapters.syslog.map((s) => ({ ...s, host: '127.0.0.1', udp_port: 0, tcp_port: 0 })),
        csv: image.adapters.csv.map((c) => ({ ...c, watch: inbox })),
      },
      http: { ...image.http, host: '127.0.0.1', port: 0 },
    })
    const env = { ...process.env }
    delete env.NATS_URL
    delete env.CLICKHOUSE_URL
    const cli = (args: string[]) => execFileP(process.execPath, ['bin/rateflow.js', ...args], { cwd: app, env })
    await cli(['catalog', 'apply', writeJson(join(tmp.dir, 'catalog.json'), sampleCatalog()), '--data', data])
    await cli(['accounts', 'apply', writeJson(join(tmp.dir, 'accounts.json'), sampleAccounts({ customers: 2, devicesPerAccount: 2 })), '--data', data])

    const child = spawn(mapped[0] === 'node' ? process.execPath : mapped[0]!, mapped.slice(1), { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stderr!.on('data', (d: Buffer) => (err += d))
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)))
    const http = await new Promise<string>((res, rej) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d
        const line = out.split('\n').find((l) => l.includes('"status":"running"'))
        if (line) res((JSON.parse(line) as { http: string }).http)
      })
      void exited.then((code) => rej(new Error(`rateflow run exited ${code} before ready: ${err}`)))
    })
    try {
      expect(await (await fetch(`${http}/health`)).json()).toEqual({ status: 'ok' })
      writeFileSync(join(inbox, 'drop.csv.tmp'), `${CSV_HEADER}\nd1,2026-10-05T11:00:00Z,fw-002-2,,,bytes_out,1000,eu\nd2,2026-10-05T11:02:00Z,fw-001-2,,,api_calls,4,\n`)
      renameSync(join(inbox, 'drop.csv.tmp'), join(inbox, 'drop.csv'))
      const sql = encodeURIComponent('SELECT event_id, source FROM rated_usage ORDER BY event_id')
      const end = Date.now() + 60_000
      let rows = ''
      while (Date.now() < end) {
        rows = await (await fetch(`${http}/v1/query?sql=${sql}&format=JSONEachRow`)).text()
        if (rows.trim().split('\n').length === 2) break
        await new Promise((r) => setTimeout(r, 200))
      }
      expect(rows.trim().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
        { event_id: 'd1', source: 'csv:drop' },
        { event_id: 'd2', source: 'csv:drop' },
      ])
    } catch (e) {
      throw new Error(`${(e as Error).message}; rateflow run's stderr: ${err}`, { cause: e })
    } finally {
      child.kill('SIGINT')
    }
    expect([await exited, err]).toEqual([0, ''])
  }, 300_000)
})
