import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ErrorCode, RateflowError } from '../../common/errors.js'
import { freePort } from '../../common/net.js'
import { serviceProgram } from './program.js'

const execFileP = promisify(execFile)

/** A mosquitto broker this process started and owns, listening on 127.0.0.1. */
export interface LocalMosquitto {
  readonly port: number
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string
  /** Ports of the extra `listeners` given to startMosquitto, in their order. */
  readonly listenerPorts: readonly number[]
  /** Stops the broker (SIGTERM); resolves once it has exited. */
  stop(): Promise<void>
}

/** An extra listener of a broker started by startMosquitto, for testing credentials and TLS against a real broker. */
export interface MosquittoListener {
  /** User name → password, hashed into a password_file with `mosquitto_passwd -b`; anonymous clients are refused. */
  readonly users?: Readonly<Record<string, string>>
  /** PEM files: the listener speaks MQTT over TLS. `require_client_cert`: clients must show a cert signed by `ca`. */
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string; readonly require_client_cert?: boolean }
}

/**
 * Starts mosquitto on 127.0.0.1 with a free port and its config file in `dir` (anonymous, no persistence,
 * plus `extraConf` lines such as `max_inflight_messages 1000`), and resolves once it accepts connections.
 * Each of `listeners` gets a free port of its own (`listenerPorts`) with its own settings, and the default
 * listener stays anonymous. Used by the MQTT tests and by `rateflow bench mqtt`; a deployment runs its own broker.
 */
export async function startMosquitto(
  dir: string,
  extraConf: readonly string[] = [],
  timeoutMs = 10_000,
  listeners: readonly MosquittoListener[] = [],
): Promise<LocalMosquitto> {
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  const lines = [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', ...extraConf]
  const listenerPorts: number[] = []
  if (listeners.length > 0) {
    // Without it, allow_anonymous and password_file would apply to every listener, the default one included.
    lines.unshift('per_listener_settings true')
    // Run by root, mosquitto drops to user `mosquitto` before reading password and key files, which then cannot
    // read a private temp directory; `user root` keeps it as root (the setting is ignored when not run by root).
    if (process.getuid?.() === 0) lines.unshift('user root')
    for (const [i, l] of listeners.entries()) {
      const p = await freePort()
      listenerPorts.push(p)
      lines.push(`listener ${p} 127.0.0.1`)
      if (l.users !== undefined) {
        const file = join(dir, `mosquitto-${i}.passwd`)
        writeFileSync(file, '')
        for (const [user, password] of Object.entries(l.users)) {
          try {
            await execFileP('mosquitto_passwd', ['-b', file, user, password])
          } catch (err) {
            throw new RateflowError(ErrorCode.ServiceUnavailable, `mosquitto_passwd failed for ${file}: ${(err as Error).message} (is mosquitto installed?)`, { cause: err })
          }
        }
        lines.push('allow_anonymous false', `password_file ${file}`)
      } else lines.push('allow_anonymous true')
      if (l.tls !== undefined) {
        lines.push(`cafile ${l.tls.ca}`, `certfile ${l.tls.cert}`, `keyfile ${l.tls.key}`)
        if (l.tls.require_client_cert) lines.push('require_certificate true')
      }
    }
  }
  writeFileSync(conf, [...lines, ''].join('\n'))
  // stderr is kept (its tail) so a broker that refuses its config says why; it must be read or mosquitto blocks.
  // The broker runs under a small shell guard, as nats-server does (services/nats-server.ts): when this process ends
  // for any reason, kill -9 of a benchmark included, our end of its stdin closes, `read` returns and the guard stops
  // the broker, so none is left behind. The guard exits with the broker's own status.
  // (A background job's stdin is /dev/null unless redirected, hence the copy of stdin on fd 3.)
  const guard = 'exec 3<&0; p=$1; shift; "$p" "$@" & child=$!; (read _ignored <&3; kill -TERM $child 2>/dev/null) & wait $child'
  const broker = spawn('sh', ['-c', guard, 'sh', serviceProgram('mosquitto') ?? 'mosquitto', '-c', conf], { stdio: ['pipe', 'ignore', 'pipe'] })
  let stderr = ''
  broker.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)))
  const exited = broker.exitCode === null ? once(broker, 'exit').then(() => undefined, () => undefined) : Promise.resolve()
  let spawnError: Error | undefined
  broker.once('error', (err) => (spawnError = err))
  const end = Date.now() + timeoutMs
  for (const p of [port, ...listenerPorts]) {
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const c = net.connect(p, '127.0.0.1', () => {
          c.destroy()
          resolve(true)
        })
        c.on('error', () => resolve(false))
      })
      if (ok) break
      if (spawnError !== undefined || broker.exitCode !== null || Date.now() > end) {
        broker.stdin?.end()
        broker.kill('SIGKILL')
        const why = spawnError
          ? `: ${spawnError.message}`
          : broker.exitCode === 127
            ? ': the mosquitto command was not found (install mosquitto, e.g. scripts/setup.sh)'
            : broker.exitCode !== null
              ? `: it exited with code ${broker.exitCode}`
              : ` within ${timeoutMs} ms`
        const said = stderr.trim() === '' ? '' : `; it said: ${stderr.trim()}`
        throw new RateflowError(ErrorCode.ServiceUnavailable, `mosquitto did not start on 127.0.0.1:${p}${why}${said}`, spawnError && { cause: spawnError })
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    listenerPorts,
    async stop() {
      if (broker.exitCode === null && broker.signalCode === null) {
        // Closing stdin makes the guard stop the broker (SIGTERM to the guard would leave the broker running).
        broker.stdin?.end()
        const timer = setTimeout(() => broker.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(timer)
      }
    },
  }
}
