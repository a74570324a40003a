import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { afterAll, expect, it } from 'vitest'
import { startNatsServer } from './nats-server.js'
import { programProblem, serviceProgram } from './program.js'

const dir = mkdtempSync(join(tmpdir(), 'rateflow-nats-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/**
 * The pids of servers whose command line starts with the program and holds `text` after it: not their guard's shell,
 * whose command line names the program too (`sh -c … sh /usr/sbin/nats-server -c …`).
 */
function pidsOf(text: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', `^[^ ]*${text}`], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

it('stop() ends a nats-server that does not answer SIGTERM, not only its guard: no orphan keeps the data directory', async () => {
  const server = await startNatsServer(dir, { maxPayloadBytes: 1024 * 1024, stopGraceMs: 1_000 })
  const store = join(dir, 'nats')
  const [pid] = pidsOf(`nats-server -c ${store}`)
  expect(pid).toBeGreaterThan(0)
  // Stopped, it cannot act on SIGTERM (as a server stuck on a full disk did not); only SIGKILL ends it.
  process.kill(pid!, 'SIGSTOP')
  await server.stop()
  await new Promise((r) => setTimeout(r, 200))
  expect(pidsOf(`nats-server -c ${store}`)).toEqual([])
}, 30_000)

it('a server that ignores SIGTERM is killed by its guard 10 s after the rateflow process that started it died (kill -9)', async () => {
  const own = mkdtempSync(join(tmpdir(), 'rateflow-nats-orphan-'))
  try {
    const module = new URL('../../dist/pipeline/services/nats-server.js', import.meta.url).href
    const script = `const m = await import(${JSON.stringify(module)}); await m.startNatsServer(${JSON.stringify(own)}, { maxPayloadBytes: 1048576 }); console.log('up'); setInterval(() => {}, 1000)`
    const { spawn } = await import('node:child_process')
    const parent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve, reject) => {
      parent.stdout!.on('data', (d: Buffer) => d.toString().includes('up') && resolve())
      parent.once('exit', (code) => reject(new Error(`exited ${code}`)))
    })
    const store = join(own, 'nats')
    const [pid] = pidsOf(`nats-server -c ${store}`)
    expect(pid).toBeGreaterThan(0)
    process.kill(pid!, 'SIGSTOP')
    parent.kill('SIGKILL')
    const deadline = Date.now() + 20_000
    while (pidsOf(`nats-server -c ${store}`).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250))
    expect(pidsOf(`nats-server -c ${store}`)).toEqual([])
  } finally {
    // A guard that did not do its job must not leave the stopped server behind for the tests after this one.
    for (const p of pidsOf(`nats-server -c ${join(own, 'nats')}`)) {
      try {
        process.kill(p, 'SIGKILL')
      } catch {
        // gone already
      }
    }
    rmSync(own, { recursive: true, force: true })
  }
}, 40_000)

it('a process that started and stopped a server ends at once: nothing of the guard keeps its pipes open', async () => {
  const own = mkdtempSync(join(tmpdir(), 'rateflow-nats-exit-'))
  try {
    const module = new URL('../../dist/pipeline/services/nats-server.js', import.meta.url).href
    const script = `const m = await import(${JSON.stringify(module)}); const s = await m.startNatsServer(${JSON.stringify(own)}, { maxPayloadBytes: 1048576 }); await s.stop(); console.log('stopped', Date.now())`
    const { spawn } = await import('node:child_process')
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    await new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const stoppedAt = Number(/stopped (\d+)/.exec(out)?.[1])
    // A watchdog's `sleep 10` holding the server's stderr pipe kept such a process alive 10 s after stop().
    expect(Date.now() - stoppedAt).toBeLessThan(5_000)
  } finally {
    rmSync(own, { recursive: true, force: true })
  }
}, 40_000)

it('takes only connections with its token, new at each start, kept in a config file only its owner reads and off the command line', async () => {
  const own = mkdtempSync(join(tmpdir(), 'rateflow-nats-token-'))
  try {
    const config = join(own, 'nats', 'nats-server.conf')
    const server = await startNatsServer(own, { maxPayloadBytes: 1024 * 1024 })
    const first = server.token
    try {
      expect(first).toMatch(/^[0-9a-f]{64}$/)
      expect(server.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/)
      expect(server.authUrl).toBe(server.url.replace('nats://', `nats://${first}@`))
      expect(statSync(config).mode & 0o777).toBe(0o600)
      expect(statSync(join(own, 'nats')).mode & 0o777).toBe(0o700)
      expect(readFileSync(config, 'utf8')).toContain(`token: "${first}"`)
      for (const login of [{}, { token: 'f'.repeat(64) }, { user: 'rateflow', pass: first }]) {
        const err = await connect({ servers: server.url, reconnect: false, ...login }).then(async (nc) => (await nc.close(), undefined), (e: unknown) => e as Error)
        expect([login, err?.message]).toEqual([login, expect.stringMatching(/Authorization Violation/i)])
      }
      const nc = await connect({ servers: server.url, token: first, reconnect: false })
      await nc.close()
      expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toContain(first)
    } finally {
      await server.stop()
    }
    // A config file left readable (by an earlier release, or by hand) is made anew: 0600, with a new token.
    chmodSync(config, 0o644)
    const again = await startNatsServer(own, { maxPayloadBytes: 1024 * 1024 })
    try {
      expect(again.token).not.toBe(first)
      expect(statSync(config).mode & 0o777).toBe(0o600)
      const err = await connect({ servers: again.url, token: first, reconnect: false }).then(async (nc) => (await nc.close(), undefined), (e: unknown) => e as Error)
      expect(err?.message).toMatch(/Authorization Violation/i)
    } finally {
      await again.stop()
    }
  } finally {
    rmSync(own, { recursive: true, force: true })
  }
}, 30_000)

it("starts with a user's PATH, which lacks the /usr/sbin that apt-get installs nats-server in", async () => {
  const own = mkdtempSync(join(tmpdir(), 'rateflow-nats-path-'))
  const path = process.env.PATH
  // A login shell's PATH for a user who is not root (Debian's /etc/profile): setup.sh ran apt-get through sudo, and
  // the server was then "not installed" for that user.
  process.env.PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games'
  try {
    const server = await startNatsServer(own, { maxPayloadBytes: 1024 * 1024 })
    await server.stop()
  } finally {
    process.env.PATH = path
    rmSync(own, { recursive: true, force: true })
  }
}, 30_000)

it('serviceProgram: the first executable file of the name on PATH, else in the system directories, else undefined', () => {
  const bin = mkdtempSync(join(tmpdir(), 'rateflow-bin-'))
  try {
    writeFileSync(join(bin, 'tool'), '#!/bin/sh\n', { mode: 0o755 })
    writeFileSync(join(bin, 'plain'), 'not executable\n', { mode: 0o644 })
    mkdirSync(join(bin, 'dir'))
    expect(serviceProgram('tool', `/nonexistent:${bin}`)).toBe(join(bin, 'tool'))
    expect(serviceProgram('plain', bin)).toBeUndefined()
    expect(serviceProgram('dir', bin)).toBeUndefined()
    expect(serviceProgram('no-such-program-anywhere', bin)).toBeUndefined()
  } finally {
    rmSync(bin, { recursive: true, force: true })
  }
})

it('programProblem: none for a program that answers --version; else what went wrong, a hang cut at its time limit with what it started', async () => {
  const bin = mkdtempSync(join(tmpdir(), 'rateflow-bin-'))
  try {
    const script = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
      return join(bin, name)
    }
    expect(await programProblem(script('fine', 'echo "nats-server: v2.9.10"'))).toBeUndefined()
    expect(await programProblem(script('fails', 'echo "error while loading shared libraries" >&2; exit 127'))).toBe(
      `\`${join(bin, 'fails')} --version\` exited 127 (it said: error while loading shared libraries)`,
    )
    expect(await programProblem(script('dies', 'kill -SEGV $$'))).toMatch(/died on SIGSEGV$/)
    // exec: the program itself hangs, not a shell waiting on it.
    const started = Date.now()
    expect(await programProblem(script('hangs', 'exec sleep 60'), 500)).toBe(`\`${join(bin, 'hangs')} --version\` gave no answer in 0.5 s`)
    expect(Date.now() - started).toBeLessThan(30_000)
    // A wrapper whose child hangs: the child goes too (it outlived a kill of the wrapper alone).
    const marker = `sleep 59.${String(Date.now() % 100_000).padStart(5, '0')}`
    expect(await programProblem(script('wrapper', `${marker}\necho done`), 500)).toMatch(/gave no answer in 0\.5 s$/)
    await new Promise((r) => setTimeout(r, 200))
    expect(spawnSync('pgrep', ['-f', marker]).stdout.toString().trim()).toBe('')
    writeFileSync(join(bin, 'garbage'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0, 0]), { mode: 0o755 })
    expect(await programProblem(join(bin, 'garbage'))).toMatch(/could not be run: .*ENOEXEC|exited/)
  } finally {
    rmSync(bin, { recursive: true, force: true })
  }
})
