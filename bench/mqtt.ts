import { randomBytes } from 'node:crypto'
import mqtt from 'mqtt'
import pino from 'pino'
import { validateAdapterConfig } from '../adapters/config.js'
import { MqttAdapter } from '../adapters/mqtt/mqtt-adapter.js'
import { startMosquitto } from '../pipeline/services/mosquitto.js'
import { adapterTable, envInt, openHarness, type StoredCounts } from './adapter-harness.js'
import { leanSubscriber, startLoad } from './load.js'
import { perSecond, saveResult } from './results.js'

/** The goal for MQTT on the 2-core reference machine. */
export const MQTT_GOAL_RECORDS_PER_S = 50_000

/** One run's figures. */
export interface MqttBenchResult {
  messages: number
  records_per_message: number
  receive_maximum: number
  rateflow_records_per_s: number
  /** A bare mqtt.js subscriber. */
  raw_records_per_s: number
  /** A lean socket-level subscriber: what the broker itself can deliver here. */
  broker_records_per_s: number
  ratio: number
  ratio_to_broker: number
  goal_records_per_s: number
  goal_met: boolean
  /** How fast the publisher got its PUBACKs from the broker in each run. */
  publisher_messages_per_s: { broker: number; raw: number; rateflow: number }
  stream: StoredCounts
}

/**
 * A bare mqtt.js subscriber (QoS 1, mqtt.js acking each message at once, as any plain client does): the raw rate
 * of broker → client without Rateflow. Resolves `done` with performance.now() at the `expect`-th message.
 */
async function bareSubscriber(url: string, receiveMaximum: number, expect: number): Promise<{ done: Promise<number>; close(): Promise<void> }> {
  let count = 0
  let resolveDone!: (t: number) => void
  const done = new Promise<number>((r) => (resolveDone = r))
  const client = await mqtt.connectAsync(url, {
    clientId: `rateflow-bench-bare-${process.pid}`,
    clean: true,
    protocolVersion: 5,
    properties: { receiveMaximum: receiveMaximum },
    reconnectPeriod: 0,
  })
  client.on('message', () => {
    if (++count === expect) resolveDone(performance.now())
  })
  await client.subscribeAsync('devices/+/usage', { qos: 1 })
  return { done, close: () => client.endAsync() }
}

/**
 * Canonical JSON records published with QoS 1 by a separate process → mosquitto → MqttAdapter (QoS 1, PUBACK only
 * after the batch is stored) → JetStream; records/s from the go signal to the batch that completes the count stored.
 * In the same run, the same publisher against two bare subscribers with the same QoS: a plain mqtt.js client (what
 * any Node subscriber gets), and a lean socket-level one that only counts and acks (what the broker can deliver).
 */
export async function benchMqtt(messages: number, recordsPerMessage: number, receiveMaximum: number): Promise<MqttBenchResult> {
  const h = await openHarness('mqtt')
  // The broker must queue what the subscriber has not taken yet: mosquitto's default (1,000 per client) would drop
  // QoS 1 messages beyond it whenever the publisher runs ahead. max_inflight_messages applies to MQTT 3.1.1
  // clients; MQTT 5 clients (both subscribers here) set their own receive maximum.
  const broker = await startMosquitto(h.dir, [`max_queued_messages ${Math.max(messages, 100_000)}`, `max_inflight_messages ${receiveMaximum}`])
  const records = messages * recordsPerMessage
  try {
    const spec = { kind: 'mqtt' as const, url: broker.url, messages, recordsPerMessage, window: 1000 }
    // 1. Raw, the broker's ceiling: a lean subscriber that only counts and acks.
    const lean = await leanSubscriber(broker.url, 'devices/+/usage', messages)
    const leanLoad = await startLoad({ ...spec, runId: randomBytes(4).toString('hex') })
    const leanStart = performance.now()
    const leanPub = leanLoad.go()
    const leanEnd = await lean.done
    const leanPublisher = await leanPub
    leanLoad.kill()
    lean.close()

    // 2. Raw, a plain client: a bare mqtt.js subscriber.
    const bare = await bareSubscriber(broker.url, receiveMaximum, messages)
    const rawLoad = await startLoad({ ...spec, runId: randomBytes(4).toString('hex') })
    const rawStart = performance.now()
    const rawPub = rawLoad.go()
    const rawEnd = await bare.done
    const rawPublisher = await rawPub
    rawLoad.kill()
    await bare.close()

    // 3. Rateflow: the adapter as `rateflow run` configures it (receive_maximum set as for the bare subscriber).
    const config = validateAdapterConfig({
      mqtt: [{ url: broker.url, topics: ['devices/+/usage'], source: 'mqtt:bench', client_id: `rateflow-bench-${process.pid}`, receive_maximum: receiveMaximum }],
    })
    const adapter = new MqttAdapter(config.mqtt[0]!, { sink: h.sink, logger: pino({ level: 'warn' }) })
    await adapter.start()
    const load = await startLoad({ ...spec, runId: randomBytes(4).toString('hex') })
    const t0 = performance.now()
    const pub = load.go()
    const t1 = await h.storedAt(records)
    const publisher = await pub
    load.kill()
    await adapter.stop()
    const stats = adapter.stats
    if (stats.acked !== messages) throw new Error(`bench mqtt: ${stats.acked} of ${messages} messages acked after storage`)

    const stream = await h.recount()
    if (stream.records !== records || stream.rejects !== 0) throw new Error(`bench mqtt: the stream holds ${JSON.stringify(stream)}, expected ${records} records`)
    const rate = perSecond(records, t1 - t0)
    const rawRate = perSecond(records, rawEnd - rawStart)
    const brokerRate = perSecond(records, leanEnd - leanStart)
    return {
      messages,
      records_per_message: recordsPerMessage,
      receive_maximum: receiveMaximum,
      rateflow_records_per_s: rate,
      raw_records_per_s: rawRate,
      broker_records_per_s: brokerRate,
      ratio: +(rate / rawRate).toFixed(2),
      ratio_to_broker: +(rate / brokerRate).toFixed(2),
      goal_records_per_s: MQTT_GOAL_RECORDS_PER_S,
      goal_met: rate >= MQTT_GOAL_RECORDS_PER_S,
      publisher_messages_per_s: {
        broker: perSecond(leanPublisher.sent, leanPublisher.ms),
        raw: perSecond(rawPublisher.sent, rawPublisher.ms),
        rateflow: perSecond(publisher.sent, publisher.ms),
      },
      stream,
    }
  } finally {
    await broker.stop()
    await h.close()
  }
}

/**
 * `rateflow bench mqtt`: BENCH_RECORDS messages (default 200,000) of BENCH_MQTT_RECORDS_PER_MESSAGE records
 * (default 1), subscribers' receive maximum BENCH_MQTT_RECEIVE_MAXIMUM (default 1000, the adapter's default);
 * prints the table, writes bench/out/mqtt-<time>.json.
 */
export async function run(out: (s: string) => void): Promise<number> {
  const messages = envInt('BENCH_RECORDS', 200_000)
  const perMessage = envInt('BENCH_MQTT_RECORDS_PER_MESSAGE', 1)
  const receiveMaximum = envInt('BENCH_MQTT_RECEIVE_MAXIMUM', 1000)
  const res = await benchMqtt(messages, perMessage, receiveMaximum)
  out(
    adapterTable(
      `benchmark mqtt: ${messages.toLocaleString('en')} QoS 1 messages × ${perMessage} JSON record${perMessage === 1 ? '' : 's'}, mosquitto → adapter → JetStream (receive maximum ${receiveMaximum})`,
      { label: 'Rateflow: MqttAdapter → batches → JetStream', perSecond: res.rateflow_records_per_s, unit: 'records/s' },
      [
        { label: 'raw: bare mqtt.js subscriber, QoS 1', perSecond: res.raw_records_per_s, unit: 'records/s' },
        { label: 'raw: lean socket subscriber (broker ceiling)', perSecond: res.broker_records_per_s, unit: 'records/s' },
      ],
      MQTT_GOAL_RECORDS_PER_S,
      [
        `publisher got its PUBACKs at ${res.publisher_messages_per_s.raw.toLocaleString('en')} (mqtt.js run), ${res.publisher_messages_per_s.broker.toLocaleString('en')} (lean run) and ${res.publisher_messages_per_s.rateflow.toLocaleString('en')} (Rateflow run) messages/s`,
        `stream holds ${res.stream.batches} batches, ${res.stream.records} records, ${res.stream.rejects} rejects; every message PUBACKed after storage`,
      ],
    ),
  )
  saveResult('mqtt', res)
  return 0
}
