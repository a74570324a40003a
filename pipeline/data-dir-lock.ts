import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, HeldByAnotherError, RateflowError } from '../common/errors.js'

/**
 * One process owns a data directory at a time: chDB binds its directory to one process, and the local
 * nats-server's store is one server's. The lock file holds the owner's pid; a lock whose process is gone
 * (kill -9) is taken over. File system only, so a command that merely asks who owns a directory (`query`)
 * loads none of the services.
 */
export function acquireLock(dataDir: string): () => void {
  const file = lockFile(dataDir)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(file, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = lockOwner(dataDir)
      if (pid !== undefined && pid !== process.pid) {
        throw new HeldByAnotherError(`data directory ${dataDir} is in use by rateflow process ${pid}; stop it, or use another --data`)
      }
      rmSync(file, { force: true })
    }
  }
  throw new RateflowError(ErrorCode.Internal, `could not lock ${dataDir}`)
}

/** The pid of the live process holding the directory's lock, or undefined (no lock, or its process is gone). */
export function lockOwner(dataDir: string): number | undefined {
  let pid: number
  try {
    pid = Number(readFileSync(lockFile(dataDir), 'utf8').trim())
  } catch {
    return undefined
  }
  return pid && processAlive(pid) ? pid : undefined
}

function lockFile(dataDir: string): string {
  return join(dataDir, 'owner.pid')
}

/** True when a process with this pid runs on this host (one we may not signal counts). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
