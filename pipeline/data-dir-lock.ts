import { linkSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, HeldByAnotherError, RateflowError } from '../common/errors.js'

/**
 * One process owns a data directory at a time: chDB binds its directory to one process, and the local
 * nats-server's store is one server's. The lock file names the owner: its pid, and where the system tells them, when
 * that process started and the boot it started in, so a pid a later process reuses (after a reboot, say) is not
 * taken for the owner. A lock whose process is gone (kill -9) is taken over. File system only, so a command that
 * merely asks who owns a directory (`query`) loads none of the services.
 *
 * The file is created whole (written aside, then linked into place: no moment where it exists empty). A stale one is
 * removed only by the holder of a takeover guard (`owner.pid.takeover`, created exclusively), and only if it still
 * holds the text that was judged stale: a dead owner cannot change it, and no one can link over it while it exists, so
 * the check and the removal cannot race with another process taking over. Of processes that find one stale lock at
 * once, one takes it over and the others find the new owner. A guard left by a process that died holding it is
 * removed once it is GUARD_STALE_MS old.
 */
export function acquireLock(dataDir: string): () => void {
  const file = lockFile(dataDir)
  const mine = `${file}.${process.pid}.new`
  try {
    writeFileSync(mine, lockText(process.pid))
  } catch (err) {
    throw new RateflowError(ErrorCode.BadUsage, `data directory ${dataDir}: cannot write its lock file: ${(err as Error).message}`, { cause: err })
  }
  const release = () => rmSync(file, { force: true })
  try {
    // Each round either links the lock, finds its live owner, or removes a stale one (or waits for whoever does).
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        linkSync(mine, file)
        return release
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      const text = readLock(file)
      if (text === undefined) continue // gone meanwhile: try again
      const pid = liveOwner(text)
      if (pid === process.pid) return release
      if (pid !== undefined) throw new HeldByAnotherError(`data directory ${dataDir} is in use by rateflow process ${pid}; stop it, or use another --data`)
      removeStaleLock(dataDir, text)
    }
  } finally {
    rmSync(mine, { force: true })
  }
  throw new RateflowError(ErrorCode.Internal, `could not lock ${dataDir}: its lock file ${file} kept changing`)
}

/** How old a takeover guard must be to be taken for one a process left when it died holding it. */
const GUARD_STALE_MS = 10_000

/**
 * Removes a stale lock of `dataDir` (`judged`: its text when it was found stale) under the takeover guard, if it still
 * holds that text. Returns without removing anything when another process holds the guard (the caller reads the lock
 * again). Exported for tests, which play the other process's part in between.
 */
export function removeStaleLock(dataDir: string, judged: string): void {
  const file = lockFile(dataDir)
  const guard = `${file}.takeover`
  try {
    writeFileSync(guard, String(process.pid), { flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    try {
      if (Date.now() - statSync(guard).mtimeMs > GUARD_STALE_MS) rmSync(guard, { force: true })
    } catch {
      // gone meanwhile
    }
    // Another process is taking over: give it a moment, then read the lock again.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
    return
  }
  try {
    if (readLock(file) === judged) rmSync(file, { force: true })
  } finally {
    rmSync(guard, { force: true })
  }
}

/** The pid of the live process holding the directory's lock, or undefined (no lock, or its process is gone). */
export function lockOwner(dataDir: string): number | undefined {
  const text = readLock(lockFile(dataDir))
  return text === undefined ? undefined : liveOwner(text)
}

function readLock(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/**
 * The pid a lock's text names, when that process still runs: `pid` (an earlier release's lock: the pid alone decides),
 * or `pid start boot`, where the process of that pid must have started at `start` (clock ticks after boot,
 * /proc/<pid>/stat) in boot `boot` (/proc/sys/kernel/random/boot_id).
 */
function liveOwner(text: string): number | undefined {
  const [p, start, boot] = text.trim().split(' ')
  const pid = Number(p)
  if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined
  if (start === undefined || boot === undefined) return pid
  const now = processStart(pid)
  // Where the system does not tell (no /proc), the pid alone decides, as before.
  if (now === undefined || currentBoot() === undefined) return pid
  return now === start && currentBoot() === boot ? pid : undefined
}

/**
 * This process's identity beyond its pid, where /proc tells: when it started (clock ticks after boot) and the boot's id.
 * A pid is reused (a container's node runs as pid 1 after every restart); the pid with these is not. `pidns` names the
 * pid namespace they are read in (containers sharing a hostname each have a pid 1).
 */
export function processIdentity(): { start: string; boot: string; pidns: string } | undefined {
  const start = processStart(process.pid)
  const boot = currentBoot()
  let pidns: string
  try {
    // `pid:[4026531836]`: which pid namespace the pid and start are read in.
    pidns = readlinkSync('/proc/self/ns/pid')
  } catch {
    return undefined
  }
  return start !== undefined && boot !== undefined ? { start, boot, pidns } : undefined
}

/**
 * Whether the process `pid` still runs, and is the one that started at `start` in boot `boot` when they are given
 * (processIdentity); the pid alone decides where they are not (an earlier release's record), or where /proc is missing.
 */
export function processLive(pid: number, start?: string, boot?: string): boolean {
  return liveOwner(start !== undefined && boot !== undefined ? `${pid} ${start} ${boot}` : `${pid}`) !== undefined
}

/** A lock file's text for the process `pid`. */
function lockText(pid: number): string {
  const start = processStart(pid)
  const boot = currentBoot()
  return start !== undefined && boot !== undefined ? `${pid} ${start} ${boot}\n` : `${pid}\n`
}

/** When process `pid` started, in clock ticks after boot (field 22 of /proc/<pid>/stat), or undefined without /proc. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, starttime 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

let bootId: string | null | undefined
function currentBoot(): string | undefined {
  if (bootId === undefined) {
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    } catch {
      bootId = null
    }
  }
  return bootId ?? undefined
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
