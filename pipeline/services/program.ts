import { spawn } from 'node:child_process'
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
 * (one that hung there hung the whole command). Undefined when it answered. It runs in a process group of its own,
 * killed whole when it does not answer: a wrapper script's child (a shim, a snap) outlived a kill of the wrapper alone.
 */
export function programProblem(program: string, timeoutMs = VERSION_PROBE_MS): Promise<string | undefined> {
  return new Promise((resolve) => {
    let child: ReturnType<typeof spawn>
    try {
      child = spawn(program, ['--version'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true })
    } catch (err) {
      resolve(`\`${program} --version\` could not be run: ${(err as Error).message}`)
      return
    }
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString('utf8')
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child.pid)
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      resolve(`\`${program} --version\` could not be run: ${err.message}`)
    })
    child.once('close', (status, signal) => {
      clearTimeout(timer)
      // What it left behind (a wrapper's child holding no pipe of ours) goes with the group.
      killGroup(child.pid)
      if (timedOut) return resolve(`\`${program} --version\` gave no answer in ${timeoutMs / 1000} s`)
      if (status === 0) return resolve(undefined)
      const said = stderr.trim().split('\n')[0]?.slice(0, 200)
      resolve(`\`${program} --version\` ${status === null ? `died on ${signal}` : `exited ${status}`}${said ? ` (it said: ${said})` : ''}`)
    })
  })
}

/**
 * SIGKILL to the process group `pid` leads (a child spawned `detached`), if it is still there: its children go with
 * it. False when there is no such group (gone already, or no pid).
 */
export function killGroup(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(-pid, 'SIGKILL')
    return true
  } catch {
    return false
  }
}
