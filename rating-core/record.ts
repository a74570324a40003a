/**
 * The canonical usage record (CONTRACT §2). Every adapter normalises to this shape.
 * Quantities are decimal strings: money and quantities never become JS numbers.
 */
export interface CanonicalRecord {
  /** Unique per `source`; the dedupe key is (source, event_id). Adapters derive a content hash when the source has none. */
  event_id: string
  /** Adapter instance, e.g. `mqtt:plant-7`, `csv:oct-export`. */
  source: string
  /** ISO-8601 with offset, as received; validated and normalised to UTC by `validate`. */
  event_time: string
  device_id?: string
  account_id?: string
  subscription_id?: string
  metric: string
  /** Decimal string in the metric's own unit. */
  quantity: string
  dimensions?: Record<string, string>
}

/**
 * A record as it travels in a micro-batch: the canonical fields plus where it came from,
 * so a reject can name the file and line (or topic, or peer) and keep the raw bytes.
 */
export interface WireRecord extends CanonicalRecord {
  /** The raw input this record was made from (CSV line, MQTT payload, syslog line), for rejected_usage. */
  raw?: string
  /** Human-readable origin: `file.csv:123`, `mqtt devices/fw-1/usage`, `syslog tcp 127.0.0.1:5514`. */
  origin?: string
}

/** An input an adapter could not turn into a record at all; it still travels so it lands in rejected_usage. */
export interface WireReject {
  source: string
  raw: string
  reason: string
  origin?: string
}

/** One JetStream message body (msgpack). `id` is also the JetStream message id (Nats-Msg-Id). */
export interface UsageBatch {
  id: string
  records: WireRecord[]
  rejects: WireReject[]
}
