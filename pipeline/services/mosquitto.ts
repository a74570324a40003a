import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { ErrorCode, RateflowError } from '../../common/errors.js'
import { freePort } from '../../common/net.js'

/** A mosquitto broker this process started and owns, listening on 127.0.0.1. */
export interface LocalMosquitto {
  readonly port: number
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string
  /** Sends SIGTERM; resolves once the broker has exited. */
  stop(): Promise<void>
}

/**
 * Starts mosquitto on 127.0.0.1 with a free port and its config file in `dir` (anonymous, no persistence,
 * plus `extraConf` lines such as `max_inflight_messages 1000`), and resolves once it accepts connections.
 * Used by the MQTT tests and by `rateflow bench mqtt`; a deployment runs its own broker.
 */
export async function startMosquitto(dir: string, extraConf: readonly string[] = [], timeoutMs = 10_000): Promise<LocalMosquitto> {
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', ...extraConf, ''].join('\n'))
  const broker = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' })
  const exited = broker.exitCode === null ? once(broker, 'exit').then(() => undefined, () => undefined) : Promise.resolve()
  let spawnError: Error | undefined
  broker.once('error', (err) => (spawnError = err))
  const end = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy()
        resolve(true)
      })
      c.on('error', () => resolve(false))
    })
    if (ok) break
    if (spawnError !== undefined || broker.exitCode !== null || Date.now() > end) {
      broker.kill('SIGKILL')
      const why = spawnError ? `: ${spawnError.message} (is mosquitto installed?)` : broker.exitCode !== null ? `: it exited with code ${broker.exitCode}` : ` within ${timeoutMs} ms`
      throw new RateflowError(ErrorCode.ServiceUnavailable, `mosquitto did not start on 127.0.0.1:${port}${why}`, spawnError && { cause: spawnError })
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async stop() {
      if (broker.exitCode === null && broker.signalCode === null) broker.kill('SIGTERM')
      await exited
    },
  }
}
