import { spawnSync } from 'node:child_process'
import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'

/**
 * Where Debian puts daemons (nats-server, mosquitto): directories on root's PATH but not on other users'. A user
 * who ran scripts/setup.sh (apt-get through sudo) was told the program was not installed, and setup installed it
 * again at every run.
 */
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/**
 * The path of the program `name` that a service is started with: the first executable file of that name on PATH,
 * else in the system directories daemons are installed in. Undefined when there is none.
 */
export function serviceProgram(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of [...path.split(delimiter).filter((d) => d !== ''), ...SYSTEM_DIRS]) {
    const file = join(dir, name)
    try {
      accessSync(file, constants.X_OK)
      if (statSync(file).isFile()) return file
    } catch {
      // Not here.
    }
  }
  return undefined
}

/** How long `program --version` may take before the program is taken for broken (programProblem). */
export const VERSION_PROBE_MS = 10_000

/**
 * Why the installed `program` cannot be started as a service, found by running `program --version` (at most
 * `timeoutMs`): it exits with another status than 0, dies on a signal, cannot be run, or does not answer in time
 * (one that hung there hung the whole command). Undefined when it answered.
 */
export function programProblem(program: string, timeoutMs = VERSION_PROBE_MS): string | undefined {
  const r = spawnSync(program, ['--version'], { timeout: timeoutMs, stdio: ['ignore', 'ignore', 'pipe'], killSignal: 'SIGKILL' })
  const said = r.stderr?.toString('utf8').trim().split('\n')[0]?.slice(0, 200)
  const tail = said ? ` (it said: ${said})` : ''
  if (r.error !== undefined) {
    if ((r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') return `\`${program} --version\` gave no answer in ${timeoutMs / 1000} s`
    return `\`${program} --version\` could not be run: ${r.error.message}`
  }
  if (r.status === 0) return undefined
  return `\`${program} --version\` ${r.status === null ? `died on ${r.signal}` : `exited ${r.status}`}${tail}`
}
