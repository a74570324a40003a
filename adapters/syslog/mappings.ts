/**
 * Built-in mappings for appliance traffic logs, named in config as `"mapping": "<name>"`. Each is an ordinary
 * RecordMapping (adapters/config.ts), so a user who needs a variant copies it into the config and edits it.
 */
import type { MappingPresets, RecordMapping } from '../config.js'

/**
 * FortiGate traffic log (`date=2026-10-01 time=12:00:01 devid=FG100E logid=… sentbyte=1200 rcvdbyte=5400
 * duration=30`): bytes_out from sentbyte, bytes_in from rcvdbyte, session_seconds from duration, device_id from
 * devid. date + time are local to the appliance: the `tz` field (`+0200`, FortiOS 6.2+) gives the offset, else UTC.
 * FortiGate logs carry no unique id, so event_id is the content hash of the line + metric.
 */
export const FORTIGATE: RecordMapping = Object.freeze({
  event_time: Object.freeze(['date', 'time']),
  time_format: 'iso' as const,
  time_zone_field: 'tz',
  time_zone: '+00:00',
  device_id: 'devid',
  metrics: Object.freeze([
    Object.freeze({ metric: 'bytes_out', quantity: 'sentbyte' }),
    Object.freeze({ metric: 'bytes_in', quantity: 'rcvdbyte' }),
    Object.freeze({ metric: 'session_seconds', quantity: 'duration' }),
  ]),
  dimensions: Object.freeze({ vdom: 'vd', service: 'service', policy_id: 'policyid' }),
})

/** Pass as `presets` to validateAdapterConfig. */
export const BUILTIN_MAPPINGS: MappingPresets = Object.freeze({ fortigate: FORTIGATE })
