import { randomBytes } from 'node:crypto'
import mqtt from 'mqtt'
import pino from 'pino'
import { validateAdapterConfig } from '../adapters/config.js'
import { MqttAdapter } from '../adapters/mqtt/mqtt-adapter.js'
import { startMosquitto } from '../pipeline/services/mosquitto.js'
import { adapterTable, envInt, openHarness, type StoredCounts } from './adapter-harness.js'
import { leanSubscriber, timedLoad, type LoadSpec } from './load.js'
import { median, saveResult } from './results.js'

/** The issue's goal for MQTT on the 2-core reference machine. */
export const MQTT_GOAL_RECORDS_PER_S = 50_000

/** One run's figures; rates are medians over the rounds, `rounds` has each round's. */
export interface MqttBenchResult {
  messages: number
  records_per_message: number
  receive_maximum: number
  rateflow_records_per_s: number
  /** A bare mqtt.js subscriber. */
  raw_records_per_s: number
  /** A lean socket-level subscriber: what the broker itself delivers here. */
  broker_records_per_s: number
  ratio: number
  ratio_to_broker: number
  goal_records_per_s: number
  goal_met: boolean
  rounds: Array<{ rateflow: number; raw: number; broker: number }>
  stream: StoredCounts
}

/**
 * A bare mqtt.js subscriber (QoS 1, mqtt.js acking each message at once, as any plain client does): the raw rate
 * of broker → client without Rateflow. Resolves `done` with performance.now() at the `expect`-th message.
 */
async function bareSubscriber(url: string, filter: string, receiveMaximum: number, expect: number): Promise<{ done: Promise<number>; close(): Promise<void> }> {
  let count = 0
  let resolveDone!: (t: number) => void
  const done = new Promise<number>((r) => (resolveDone = r))
  const client = await mqtt.connectAsync(url, {
    clientId: `rateflow-bench-bare-${process.pid}`,
    clean: true,
    protocolVersion: 5,
    properties: { receiveMaximum },
    reconnectPeriod: 0,
  })
  client.on('message', () => {
    if (++count === expect) resolveDone(performance.now())
  })
  await client.subscribeAsync(filter, { qos: 1 })
  return { done, close: () => client.endAsync() }
}

/**
 * Canonical JSON records published with QoS 1 by a separate process → mosquitto → MqttAdapter (QoS 1, PUBACK only
 * after the batch is stored) → JetStream; records/s from the go signal to the batch that completes the count stored.
 * In the same run, the same publisher against two bare subscribers with the same QoS: a plain mqtt.js client (what
 * any Node subscriber gets), and a lean socket-level one that only counts and acks (what the broker can deliver).
 * Each round runs the three one after the other, each on a topic root of its own; rates are the rounds' medians.
 */
export async function benchMqtt(messages: number, recordsPerMessage: number, receiveMaximum: number, roundCount: number): Promise<MqttBenchResult> {
  const h = await openHarness('mqtt')
  // The broker must queue what a subscriber has not taken yet: mosquitto's default (1,000 per client) would drop
  // QoS 1 messages beyond it whenever the publisher runs ahead. Every subscriber here speaks MQTT 5 and sets its
  // receive maximum (mosquitto's max_inflight_messages is for MQTT 3.1.1 clients).
  const broker = await startMosquitto(h.dir, [`max_queued_messages ${Math.max(messages, 100_000)}`])
  const records = messages * recordsPerMessage
  const spec = (topicRoot: string): LoadSpec => ({ kind: 'mqtt', url: broker.url, topicRoot, messages, recordsPerMessage, window: 1000, runId: randomBytes(4).toString('hex') })
  // The adapter as `rateflow run` configures it (receive_maximum as for the bare subscriber), up for every round.
  const config = validateAdapterConfig({
    mqtt: [{ url: broker.url, topics: ['devices/+/usage'], source: 'mqtt:bench', client_id: `rateflow-bench-${process.pid}`, receive_maximum: receiveMaximum }],
  })
  const adapter = new MqttAdapter(config.mqtt[0]!, { sink: h.sink, logger: pino({ level: 'warn' }) })
  try {
    await adapter.start()
    const rounds: MqttBenchResult['rounds'] = []
    for (let r = 1; r <= roundCount; r++) {
      const lean = await leanSubscriber(broker.url, 'lean/+/usage', receiveMaximum, messages)
      const brokerRate = await timedLoad(spec('lean'), records, () => lean.done)
      lean.close()
      const bare = await bareSubscriber(broker.url, 'bare/+/usage', receiveMaximum, messages)
      const rawRate = await timedLoad(spec('bare'), records, () => bare.done)
      await bare.close()
      const rateflow = await timedLoad(spec('devices'), records, () => h.storedAt(records * r))
      rounds.push({ rateflow, raw: rawRate, broker: brokerRate })
    }
    await adapter.stop()
    const stats = adapter.stats
    if (stats.acked !== messages * roundCount) throw new Error(`bench mqtt: ${stats.acked} of ${messages * roundCount} messages acked after storage`)
    const stream = await h.expectStreamHolds('mqtt', records * roundCount)
    const rate = median(rounds.map((x) => x.rateflow))
    const rawRate = median(rounds.map((x) => x.raw))
    const brokerRate = median(rounds.map((x) => x.broker))
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
      rounds,
      stream,
    }
  } finally {
    await adapter.abort().catch(() => undefined)
    await broker.stop()
    await h.close()
  }
}

/**
 * `rateflow bench mqtt`: BENCH_RECORDS messages per round (default 200,000) of BENCH_MQTT_RECORDS_PER_MESSAGE records
 * (default 1), subscribers' receive maximum BENCH_MQTT_RECEIVE_MAXIMUM (default 1000, the adapter's default),
 * BENCH_ROUNDS rounds (default 3); prints the table, writes bench/out/mqtt-<time>.json.
 */
export async function run(out: (s: string) => void): Promise<number> {
  const messages = envInt('BENCH_RECORDS', 200_000)
  const perMessage = envInt('BENCH_MQTT_RECORDS_PER_MESSAGE', 1)
  const receiveMaximum = envInt('BENCH_MQTT_RECEIVE_MAXIMUM', 1000)
  const rounds = envInt('BENCH_ROUNDS', 3)
  const res = await benchMqtt(messages, perMessage, receiveMaximum, rounds)
  out(
    adapterTable(
      `benchmark mqtt: ${messages.toLocaleString('en')} QoS 1 messages × ${perMessage} JSON record${perMessage === 1 ? '' : 's'}, mosquitto → adapter → JetStream (receive maximum ${receiveMaximum}; median of ${rounds} rounds)`,
      { label: 'Rateflow: MqttAdapter → batches → JetStream', perSecond: res.rateflow_records_per_s, unit: 'records/s' },
      [
        { label: 'raw: bare mqtt.js subscriber, QoS 1', perSecond: res.raw_records_per_s, unit: 'records/s' },
        { label: 'raw: lean socket subscriber (broker ceiling)', perSecond: res.broker_records_per_s, unit: 'records/s' },
      ],
      MQTT_GOAL_RECORDS_PER_S,
      [
        `rounds (Rateflow / mqtt.js / lean): ${res.rounds.map((x) => `${x.rateflow.toLocaleString('en')} / ${x.raw.toLocaleString('en')} / ${x.broker.toLocaleString('en')}`).join('; ')}`,
        `stream holds ${res.stream.batches} batches, ${res.stream.records} records, ${res.stream.rejects} rejects; every message PUBACKed after storage`,
      ],
    ),
  )
  saveResult('mqtt', res)
  return 0
}
