import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { HeldByAnotherError } from '../common/errors.js'
import { acquireLock, lockOwner, removeStaleLock } from './data-dir-lock.js'

const dirs: string[] = []
const newDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'rateflow-lock-'))
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** A live process that is not this one: `sleep`, ended by the caller. */
function otherProcess() {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' })
  return { pid: child.pid!, stop: () => child.kill('SIGKILL') }
}

describe('the data directory lock', () => {
  it('names its owner with the pid, when it started and the boot: a live process that reused the pid is no owner', () => {
    const dir = newDir()
    const release = acquireLock(dir)
    const text = readFileSync(join(dir, 'owner.pid'), 'utf8').trim().split(' ')
    expect(text).toHaveLength(3)
    expect(Number(text[0])).toBe(process.pid)
    expect(lockOwner(dir)).toBe(process.pid)
    release()
    // A lock left by a process that is gone, whose pid a live process has now (after a reboot, say).
    const other = otherProcess()
    try {
      writeFileSync(join(dir, 'owner.pid'), `${other.pid} 1 ${text[2]}\n`)
      expect(lockOwner(dir)).toBeUndefined()
      const again = acquireLock(dir)
      expect(lockOwner(dir)).toBe(process.pid)
      again()
      // The same process as recorded: held.
      const stat = readFileSync(`/proc/${other.pid}/stat`, 'utf8')
      const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
      writeFileSync(join(dir, 'owner.pid'), `${other.pid} ${start} ${text[2]}\n`)
      expect(() => acquireLock(dir)).toThrow(HeldByAnotherError)
      // The same pid and start in another boot: not the owner.
      writeFileSync(join(dir, 'owner.pid'), `${other.pid} ${start} another-boot\n`)
      expect(lockOwner(dir)).toBeUndefined()
      // An earlier release's lock, the pid alone: a live pid holds it.
      writeFileSync(join(dir, 'owner.pid'), `${other.pid}\n`)
      expect(() => acquireLock(dir)).toThrow(HeldByAnotherError)
    } finally {
      other.stop()
    }
  })

  it('a stale lock is removed only if it still holds the text judged stale, and only by the holder of the takeover guard', () => {
    const dir = newDir()
    const file = join(dir, 'owner.pid')
    const other = otherProcess()
    try {
      const stat = readFileSync(`/proc/${other.pid}/stat`, 'utf8')
      const live = `${other.pid} ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]} ${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}\n`
      // Judged stale ("999999999"), then another process took it over before this one acted: its lock stays.
      writeFileSync(file, live)
      removeStaleLock(dir, '999999999\n')
      expect(readFileSync(file, 'utf8')).toBe(live)
      // Another process holds the guard: nothing is removed now, even a lock still stale.
      writeFileSync(file, '999999999\n')
      writeFileSync(`${file}.takeover`, '1')
      removeStaleLock(dir, '999999999\n')
      expect(readFileSync(file, 'utf8')).toBe('999999999\n')
      // A guard left by a process that died holding it goes once old; the next attempt removes the stale lock.
      utimesSync(`${file}.takeover`, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
      removeStaleLock(dir, '999999999\n')
      removeStaleLock(dir, '999999999\n')
      expect(readdirSync(dir)).toEqual([])
    } finally {
      other.stop()
    }
  })

  it('of processes that find one stale lock at once, exactly one takes it over; no other file is left', async () => {
    const script = `
      const { acquireLock } = await import(${JSON.stringify(new URL('../dist/pipeline/data-dir-lock.js', import.meta.url).href)})
      try { acquireLock(process.argv[1]); console.log('won'); await new Promise((r) => setTimeout(r, 1500)) }
      catch (e) { console.log(e.name === 'HeldByAnotherError' ? 'held' : 'error ' + e.message) }`
    for (let round = 0; round < 4; round++) {
      const dir = newDir()
      writeFileSync(join(dir, 'owner.pid'), '999999999\n') // no such process
      const runs = Array.from({ length: 4 }, () => promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, dir]))
      const outs = (await Promise.all(runs)).map((r) => r.stdout.trim()).sort()
      expect(outs).toEqual(['held', 'held', 'held', 'won'])
      expect(readdirSync(dir)).toEqual(['owner.pid']) // the winner's (it ended without releasing), nothing else
    }
  }, 60_000)
})
