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
