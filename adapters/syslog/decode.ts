/**
 * One syslog message (bytes of one UDP datagram or TCP frame) → WireItems. RFC 5424 or RFC 3164 is detected per
 * message (`<PRI>1 ` is 5424). The body is canonical key=value, or goes through the configured mapping; fields
 * come from the body and from RFC 5424 structured data (each SD param as `param` and `sd-id.param`; body wins).
 * event_time defaults to the syslog timestamp.
 */
import type { SyslogAdapterOptions } from '../config.js'
import { applyMapping, completeRecord, type MappingContext } from '../mapping.js'
import { notTextReason, rawText, reject, type WireItem } from '../wire.js'
import { canonicalFromBodyText, canonicalFromKv, parseKv } from './kv.js'
import { parseRfc3164 } from './rfc3164.js'
import { isRfc5424, parsePri, parseRfc5424 } from './rfc5424.js'

export interface DecodeContext {
  readonly options: Pick<SyslogAdapterOptions, 'source' | 'mapping' | 'hostname_as_device_id' | 'rfc3164_time_zone'>
  /** `syslog udp 10.0.0.1:514`, `syslog tcp 10.0.0.1:40112 #7`. */
  readonly origin: string
  readonly now: Date
}

export function decodeSyslog(bytes: Uint8Array, ctx: DecodeContext): WireItem[] {
  const { source } = ctx.options
  const raw = rawText(bytes)
  if (raw.startsWith('base64:')) return [reject(source, raw, `not a syslog text message: ${notTextReason(bytes)}`, ctx.origin)]
  let text = raw
  while (text.endsWith('\n') || text.endsWith('\r')) text = text.slice(0, -1)
  // A reject's raw is the message without its line ending too, as a record's is (mappingContext).
  const fail = (reason: string): WireItem[] => [reject(source, text, reason, ctx.origin)]

  const pri = parsePri(text)
  if ('error' in pri) return fail(pri.error)
  let timestamp: string | undefined
  let hostname: string | undefined
  let body: string
  const sd = new Map<string, string>()
  if (isRfc5424(text, pri.rest)) {
    const m = parseRfc5424(text)
    if (!m.ok) return fail(m.error)
    timestamp = m.message.timestamp
    hostname = m.message.hostname
    body = m.message.msg
    for (const el of m.message.structuredData) {
      for (const [name, value] of el.params) {
        sd.set(`${el.id}.${name}`, value)
        if (!sd.has(name)) sd.set(name, value)
      }
    }
  } else {
    const m = parseRfc3164(text, ctx.now, ctx.options.rfc3164_time_zone)
    if (!m.ok) return fail(m.error)
    timestamp = m.message.timestamp
    hostname = m.message.hostname
    body = m.message.msg
  }

  if (!ctx.options.mapping && sd.size === 0) {
    // The common message: skip the Map of parseKv (measured: a third of the decode time at 100k lines/s).
    const p = canonicalFromBodyText(body)
    if (p !== undefined) return [completeRecord(p, mappingContext(ctx, text, timestamp, hostname))]
  }
  const kv = parseKv(body)
  if (!kv.ok) return fail(`message body: ${kv.error}`)
  const mctx = mappingContext(ctx, text, timestamp, hostname)
  if (ctx.options.mapping) {
    const fields = kv.fields
    return applyMapping((f) => fields.get(f) ?? sd.get(f), ctx.options.mapping, mctx)
  }
  const p = canonicalFromKv(kv.fields, sd)
  if ('error' in p) return fail(`message body: ${p.error}`)
  return [completeRecord(p, mctx)]
}

/**
 * `message`: the message without the line ending it was framed with. A record's raw and its content hash (the event id
 * when it names none) are of the message, not of its framing: the same line sent over UDP with or without a newline,
 * or over TCP newline-framed or octet-counted, is one event.
 */
function mappingContext(ctx: DecodeContext, message: string, timestamp: string | undefined, hostname: string | undefined): MappingContext {
  return {
    source: ctx.options.source,
    raw: message,
    origin: ctx.origin,
    ...(timestamp !== undefined && { defaultTime: timestamp }),
    // The HOSTNAME is part of the message, so of its content id already: syslog ids stay as earlier releases made them.
    ...(ctx.options.hostname_as_device_id && hostname !== undefined && { defaultDeviceId: hostname, defaultDeviceInRaw: true }),
  }
}
