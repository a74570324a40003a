import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { freePort } from '../../common/net.js'

/** A real mosquitto broker on 127.0.0.1 with a free port, started for a test. */
export interface TestBroker {
  readonly port: number
  stop(): void
}

/**
 * Starts mosquitto with its config in `dir` (anonymous, no persistence, plus `extraConf` lines) and
 * resolves once it accepts connections.
 */
export async function startMosquitto(dir: string, extraConf: readonly string[] = [], timeoutMs = 10_000): Promise<TestBroker> {
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', ...extraConf, ''].join('\n'))
  const broker = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' })
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
    if (Date.now() > end) {
      broker.kill('SIGKILL')
      throw new Error('mosquitto did not start')
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { port, stop: () => void broker.kill('SIGTERM') }
}
