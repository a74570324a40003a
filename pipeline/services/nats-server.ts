import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { ErrorCode, RateflowError } from '../../common/errors.js'
import { freePort } from '../../common/net.js'
import { killGroup, programProblem, serviceProgram } from './program.js'

/** A nats-server with JetStream that this process started and owns. */
export interface LocalNatsServer {
  /** `nats://127.0.0.1:<port>`, without the token: what a log line or message may name. */
  readonly url: string
  /** The token the server takes connections with (a secret: never in a log line or message). */
  readonly token: string
  /** `url` with the token, as NATS_URL and openQueue take it (a secret, as the token). */
  readonly authUrl: string
  stop(): Promise<void>
}

export interface NatsServerOptions {
  /** The server's max_payload: the largest message it takes, so the largest usage batch. Bytes, at most 64 MiB. */
  readonly maxPayloadBytes: number
  /** How long stop() waits for the server to end on SIGTERM before it kills it (ms). */
  readonly stopGraceMs?: number
}

/**
 * 8 MiB, where NATS's default is 1 MiB: the largest CSV row the parser accepts (DEFAULT_MAX_ROW_CHARS, 1 Mi
 * characters) takes up to 3 MiB in UTF-8 and travels twice in its record (raw text and parsed fields), so up to
 * ~6 MiB in one batch of its own. NATS allows 64 MB and advises against more than 8 MB.
 */
export const DEFAULT_NATS_SERVER: Readonly<NatsServerOptions> = Object.freeze({ maxPayloadBytes: 8 * 1024 * 1024 })

/** NATS's own ceiling for max_payload. */
const MAX_PAYLOAD_CEILING = 64 * 1024 * 1024

/**
 * Starts `nats-server -js` on 127.0.0.1 with a free port, its store under `dataDir/nats`, and messages of up to
 * `options.maxPayloadBytes` (written to `dataDir/nats/nats-server.conf`: nats-server 2.9 has no flag for it).
 *
 * The server takes only connections that give a token, new at each start (32 random bytes, hex), written into that
 * config file (mode 0600, not the command line, which every local user can read in `ps`). Without it, any local user
 * who found the port (it is in the log) could publish usage that gets billed, or purge the USAGE stream.
 *
 * The server runs under a small shell guard that reads our stdin: when this process ends for any reason,
 * kill -9 included, the pipe closes, `read` returns and the guard stops the server. So no orphan keeps the
 * store directory after a crash, and the next run can open it.
 */
export async function startNatsServer(dataDir: string, options: NatsServerOptions = DEFAULT_NATS_SERVER): Promise<LocalNatsServer> {
  const max = options.maxPayloadBytes
  if (!Number.isInteger(max) || max < 1024 || max > MAX_PAYLOAD_CEILING) {
    throw new RateflowError(ErrorCode.BadConfig, `nats-server maxPayloadBytes: must be an integer from 1024 to ${MAX_PAYLOAD_CEILING} (inclusive), got ${max}`)
  }
  const program = serviceProgram('nats-server')
  if (program === undefined) {
    throw new RateflowError(
      ErrorCode.ServiceUnavailable,
      'nats-server is not installed: install it (apt-get install nats-server, or scripts/setup.sh) or set NATS_URL',
    )
  }
  // Installed but broken (it was reported as not installed), or hanging (it hung the command for good).
  const broken = await programProblem(program)
  if (broken !== undefined) {
    throw new RateflowError(
      ErrorCode.ServiceUnavailable,
      `nats-server at ${program} does not work: ${broken}: reinstall it (apt-get install --reinstall nats-server) or set NATS_URL`,
    )
  }
  const storeDir = join(dataDir, 'nats')
  mkdirSync(storeDir, { recursive: true, mode: 0o700 })
  const port = await freePort()
  const config = join(storeDir, 'nats-server.conf')
  const token = randomBytes(32).toString('hex')
  // Made anew, so that it is created with mode 0600 (a mode given to an existing file is not applied), and the token
  // is never in a file others may read, not for a moment.
  rmSync(config, { force: true })
  writeFileSync(config, `max_payload: ${max}\nauthorization {\n  token: "${token}"\n}\n`, { mode: 0o600, flag: 'wx' })
  const args = ['-c', config, '-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir]
  // stop: SIGTERM, and SIGKILL 10 s later if the server is still there (one that stopped serving, on a full disk,
  // ignored SIGTERM, and the guard waited for it for ever after its parent was gone). The watchdog is killed as soon
  // as the server is reaped (its sleep with it), so it never signals a pid the system has handed to another process
  // since; it holds none of our pipes (a sleep holding stderr kept every command alive 10 s after its work was done).
  const guard =
    // (A stop begun by a signal while one from stdin runs ends that one's watchdog first: only one can outlive it.)
    'w=; stop() { [ -n "$w" ] && kill $w 2>/dev/null; kill -TERM $child 2>/dev/null; ' +
    '( sleep 10 & s=$!; trap \'kill $s; exit 0\' TERM; wait $s; kill -KILL $child ) </dev/null >/dev/null 2>&1 & w=$!; ' +
    'wait $child; kill $w 2>/dev/null; }; ' +
    'p=$1; shift; "$p" "$@" & child=$!; trap \'stop; exit 0\' TERM INT; read _ignored; stop'
  // A process group of its own (guard and server), so that a kill reaches the server, not only the guard: killing the
  // guard alone left a server that ignored SIGTERM (seen on a full disk) running on the data directory.
  const child: ChildProcess = spawn('sh', ['-c', guard, 'sh', program, ...args], { stdio: ['pipe', 'ignore', 'pipe'], detached: true })
  const killAll = () => {
    if (!killGroup(child.pid)) child.kill('SIGKILL')
  }
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000)
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = `nats://127.0.0.1:${port}`
  const authUrl = `nats://${token}@127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) {
      throw new RateflowError(ErrorCode.ServiceUnavailable, `nats-server exited at start-up: ${stderr.trim()}`)
    }
    try {
      const nc: NatsConnection = await connect({ servers: url, token, reconnect: false, timeout: 500 })
      await nc.close()
      break
    } catch (err) {
      if (Date.now() > deadline) {
        killAll()
        throw new RateflowError(ErrorCode.ServiceUnavailable, `nats-server did not answer on ${url}: ${stderr.trim()}`, {
          cause: err,
        })
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  return {
    url,
    token,
    authUrl,
    async stop() {
      if (child.exitCode === null) {
        child.stdin?.end()
        const timer = setTimeout(killAll, options.stopGraceMs ?? 10_000)
        await exited
        clearTimeout(timer)
      }
    },
  }
}
