/**
 * Load generators for the adapter benchmarks, run as a child process (`fork`) so that producing the load does not
 * take the event loop of the adapter being measured. Protocol over the IPC channel:
 *   parent → fork(load.js, [JSON LoadSpec]);  child → {type:'ready'} once connected and every payload is built;
 *   parent → {type:'go'};                     child → {type:'done', sent, ms} once the last message is handed off
 *   (MQTT: PUBACKed by the broker; TCP: written to the socket and the socket ended).
 * The same generator feeds Rateflow's adapter and the bare receiver of the raw baseline, so both see the same load.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import { deviceId } from './sample-data.js'

/** What one generator process sends. */
export type LoadSpec =
  | {
      readonly kind: 'mqtt'
      readonly url: string
      /** Messages to publish, each on `devices/<device>/usage`. */
      readonly messages: number
      /** Canonical records per message: 1 is a plain record object, more is an array (CONTRACT §8). */
      readonly recordsPerMessage: number
      /** QoS 1 publishes awaiting their PUBACK at once. */
      readonly window: number
      /** Distinguishes the event ids of separate runs. */
      readonly runId: string
    }
  | {
      readonly kind: 'syslog-tcp'
      readonly port: number
      readonly lines: number
      /** `lf`: newline-terminated lines; `octet`: RFC 6587 octet counting. */
      readonly framing: 'lf' | 'octet'
      readonly runId: string
    }

/** Messages between the bench process and a generator. */
export type LoadMessage = { type: 'ready' } | { type: 'go' } | { type: 'done'; sent: number; ms: number } | { type: 'error'; message: string }

/** A running generator: `go()` starts the load and resolves with the child's report when it has sent everything. */
export interface LoadProcess {
  go(): Promise<{ sent: number; ms: number }>
  kill(): void
}

/** Forks a generator and resolves once it is ready (connected, payloads built). */
export async function startLoad(spec: LoadSpec): Promise<LoadProcess> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const next = (): Promise<LoadMessage> =>
    new Promise((resolve, reject) => {
      const onMsg = (m: LoadMessage) => {
        cleanup()
        resolve(m)
      }
      const onExit = (code: number | null) => {
        cleanup()
        reject(new Error(`bench load generator (${spec.kind}) exited with code ${code} before reporting`))
      }
      const cleanup = () => {
        child.off('message', onMsg)
        child.off('exit', onExit)
      }
      child.on('message', onMsg)
      child.on('exit', onExit)
    })
  const expect = async <T extends LoadMessage['type']>(type: T): Promise<Extract<LoadMessage, { type: T }>> => {
    const m = await next()
    if (m.type === 'error') throw new Error(`bench load generator (${spec.kind}): ${m.message}`)
    if (m.type !== type) throw new Error(`bench load generator (${spec.kind}): expected ${type}, got ${m.type}`)
    return m as Extract<LoadMessage, { type: T }>
  }
  await expect('ready')
  return {
    async go() {
      const done = expect('done')
      child.send({ type: 'go' } satisfies LoadMessage)
      const m = await done
      return { sent: m.sent, ms: m.ms }
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGTERM')
    },
  }
}

/** The device of message n: 50 customers × 10 devices, as in the sample data. */
function deviceOf(n: number): string {
  return deviceId(1 + (n % 50), 1 + (Math.floor(n / 50) % 10))
}

const REGIONS = ['eu', 'us', 'apac']

/** One canonical record of the benchmarks (event ids unique per run). */
function recordJson(runId: string, n: number): string {
  const t = new Date(Date.parse('2026-10-01T00:00:00Z') + (n % 2_592_000) * 1000).toISOString()
  return `{"event_id":"${runId}-${n}","event_time":"${t}","metric":"bytes_out","quantity":"${1000 + (n % 50_000)}","dimensions":{"region":"${REGIONS[n % 3]}"}}`
}

/** One RFC 5424 line with a canonical key=value body (CONTRACT §8); event_time comes from the header. */
export function syslogLine(runId: string, n: number): string {
  const t = new Date(Date.parse('2026-10-01T00:00:00Z') + (n % 2_592_000) * 1000).toISOString()
  const dev = deviceOf(n)
  return `<134>1 ${t} ${dev} fwlog - usage - event_id=${runId}-${n} device_id=${dev} metric=bytes_out quantity=${1000 + (n % 50_000)} dim.region=${REGIONS[n % 3]}`
}

async function mqttLoad(spec: Extract<LoadSpec, { kind: 'mqtt' }>, send: (m: LoadMessage) => void, go: Promise<void>): Promise<void> {
  const topics: string[] = []
  const payloads: Buffer[] = []
  let n = 0
  for (let m = 0; m < spec.messages; m++) {
    topics.push(`devices/${deviceOf(m)}/usage`)
    if (spec.recordsPerMessage === 1) payloads.push(Buffer.from(recordJson(spec.runId, n++)))
    else {
      const recs: string[] = []
      for (let i = 0; i < spec.recordsPerMessage; i++) recs.push(recordJson(spec.runId, n++))
      payloads.push(Buffer.from(`[${recs.join(',')}]`))
    }
  }
  const client = await mqtt.connectAsync(spec.url, { clientId: `rateflow-bench-pub-${process.pid}`, clean: true, protocolVersion: 4, reconnectPeriod: 0 })
  send({ type: 'ready' })
  await go
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    let next = 0
    let acked = 0
    const pump = (): void => {
      while (next < spec.messages && next - acked < spec.window) {
        const i = next++
        client.publish(topics[i]!, payloads[i]!, { qos: 1 }, (err) => {
          if (err) return reject(err)
          if (++acked === spec.messages) resolve()
          else pump()
        })
      }
    }
    pump()
  })
  const ms = performance.now() - t0
  await client.endAsync()
  send({ type: 'done', sent: spec.messages, ms })
}

async function syslogLoad(spec: Extract<LoadSpec, { kind: 'syslog-tcp' }>, send: (m: LoadMessage) => void, go: Promise<void>): Promise<void> {
  // Chunks of about 256 KiB, built before the clock starts: the generator should cost as little as possible.
  const chunks: Buffer[] = []
  let parts: string[] = []
  let size = 0
  for (let n = 0; n < spec.lines; n++) {
    const line = syslogLine(spec.runId, n)
    const framed = spec.framing === 'lf' ? `${line}\n` : `${Buffer.byteLength(line)} ${line}`
    parts.push(framed)
    size += framed.length
    if (size >= 1 << 18) {
      chunks.push(Buffer.from(parts.join('')))
      parts = []
      size = 0
    }
  }
  if (parts.length) chunks.push(Buffer.from(parts.join('')))
  const socket = net.connect(spec.port, '127.0.0.1')
  await once(socket, 'connect')
  send({ type: 'ready' })
  await go
  const t0 = performance.now()
  for (const c of chunks) if (!socket.write(c)) await once(socket, 'drain')
  socket.end()
  await once(socket, 'close')
  send({ type: 'done', sent: spec.lines, ms: performance.now() - t0 })
}

// Child process entry: run when forked with a spec argument.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
  const send = (m: LoadMessage): void => void process.send!(m)
  const go = new Promise<void>((resolve) => process.on('message', (m: LoadMessage) => m.type === 'go' && resolve()))
  const work = spec.kind === 'mqtt' ? mqttLoad(spec, send, go) : syslogLoad(spec, send, go)
  work.then(
    () => process.disconnect(),
    (err: unknown) => {
      send({ type: 'error', message: err instanceof Error ? err.message : String(err) })
      process.disconnect()
      process.exitCode = 1
    },
  )
}
