import { describe, expect, it } from 'vitest'
import { ValidationError } from '../common/errors.js'
import { DEFAULT_ADAPTER_BATCHING, DEFAULT_SESSIONS, filtersOverlap, topicFilterProblem, validateAdapterConfig } from './config.js'
import { BUILTIN_MAPPINGS, FORTIGATE } from './syslog/mappings.js'

const problems = (doc: unknown) => {
  try {
    validateAdapterConfig(doc, { presets: BUILTIN_MAPPINGS, hostname: 'h1' })
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError)
    return (err as ValidationError).problems.map((p) => `${p.path}: ${p.message}`)
  }
  throw new Error('expected a ValidationError')
}

describe('validateAdapterConfig', () => {
  it('accepts the CONTRACT §8 example and fills frozen defaults', () => {
    const cfg = validateAdapterConfig({
      mqtt: [{ url: 'mqtt://127.0.0.1:1883', topics: ['devices/+/usage'], source: 'mqtt:plant' }],
      syslog: [{ udp_port: 5514, tcp_port: 5514, host: '127.0.0.1', source: 'syslog:edge' }],
      csv: [{ watch: './inbox', source: 'csv:drop' }],
    }, { presets: BUILTIN_MAPPINGS, hostname: 'h1' })
    expect(cfg.mqtt[0]).toMatchObject({ qos: 1, protocol_version: 5, client_id: 'rateflow_mqtt_plant_h1', device_id_level: 'auto', format: 'json', batching: DEFAULT_ADAPTER_BATCHING })
    expect(cfg.syslog[0]).toMatchObject({ max_message_bytes: 65_536, rfc3164_time_zone: '+00:00', hostname_as_device_id: false })
    expect(cfg.csv).toEqual([{ watch: './inbox', source: 'csv:drop' }])
    expect(Object.isFrozen(cfg.mqtt[0])).toBe(true)
  })

  it('a mapping named like a member of every object (constructor, toString, __proto__) is an unknown mapping', () => {
    for (const name of ['constructor', 'toString', '__proto__']) {
      expect(problems({ syslog: [{ tcp_port: 0, source: 'syslog:fw', mapping: name }] })).toEqual([
        `$.adapters.syslog[0].mapping: unknown mapping ${JSON.stringify(name)} (built-in: fortigate; or give an object)`,
      ])
    }
  })

  it('resolves a built-in mapping and session defaults', () => {
    const cfg = validateAdapterConfig({ syslog: [{ tcp_port: 0, source: 'syslog:fw', mapping: 'fortigate', sessions: { interim: 'delta' } }] }, { presets: BUILTIN_MAPPINGS })
    expect(cfg.syslog[0]!.mapping).toBe(FORTIGATE)
    expect(cfg.syslog[0]!.sessions).toEqual({ ...DEFAULT_SESSIONS, interim: 'delta' })
  })

  it('reports every problem with its JSON path', () => {
    expect(problems({
      mqtt: [
        { url: 'http://x', topics: [], source: 'mqtt:a', qos: 2, tls: { cert: 'c.pem' }, colour: 1 },
        { url: 'mqtt://b', topics: ['a/#/b', '$share/g'], source: 'mqtt:a', mapping: { metrics: [] }, batching: { max_records: 0 } },
      ],
      syslog: [{ source: 'syslog:x', mapping: 'paloalto', sessions: { interim: 'sum', idle_timeout_s: -1, kinds: { start: 'a', interim: 'a' } } }],
      kafka: [],
    }).sort()).toEqual([
      '$.adapters.kafka: unknown key (allowed: mqtt, syslog, csv)',
      '$.adapters.mqtt[0].colour: unknown key (allowed: url, topics, source, client_id, shared_group, qos, protocol_version, username, password, password_env, password_file, tls, session_expiry_s, receive_maximum, keepalive_s, connect_timeout_s, reconnect_period_ms, device_id_level, format, mapping, max_message_bytes, sessions, batching)',
      '$.adapters.mqtt[0].url: must be a URL like "mqtt://127.0.0.1:1883" or "mqtts://broker:8883"',
      '$.adapters.mqtt[0].topics: must be a non-empty array of topic filters, got an array',
      '$.adapters.mqtt[0].tls: cert and key must be given together',
      '$.adapters.mqtt[1].topics[0]: "#" must be a whole level and the last one',
      '$.adapters.mqtt[1].topics[1]: a shared subscription must look like "$share/<group>/<filter>"',
      '$.adapters.mqtt[1].mapping.metrics: must be a non-empty array of {"metric", "quantity"}, got an array',
      '$.adapters.mqtt[1].mapping.event_time: is required for MQTT (a message has no timestamp of its own)',
      '$.adapters.mqtt[1].batching.max_records: must be an integer from 1 to 1000000 (inclusive), got number 0',
      '$.adapters.syslog[0]: needs udp_port, tcp_port or both',
      '$.adapters.syslog[0].mapping: unknown mapping "paloalto" (built-in: fortigate; or give an object)',
      '$.adapters.syslog[0].sessions.kinds: start, interim and stop must be three different values',
      '$.adapters.syslog[0].sessions.interim: must be one of "cumulative", "delta", got "sum"',
      '$.adapters.syslog[0].sessions.idle_timeout_s: must be an integer from 1 to 604800 (inclusive), got number -1',
      '$.adapters.mqtt[0].qos: must be one of 0, 1, got number 2',
      '$.adapters.mqtt[1].source: "mqtt:a" is already used by $.adapters.mqtt[0]',
    ].sort())
  })

  it('credentials: one password source, a username for MQTT 3.1.1, tls only with a TLS URL', () => {
    const m = { topics: ['t'] }
    expect(problems({
      mqtt: [
        { ...m, url: 'mqtts://b:8883', source: 'mqtt:a', username: 'u', password: 'p', password_env: 'PW', password_file: '/run/secrets/pw' },
        { ...m, url: 'mqtt://b:1883', source: 'mqtt:b', protocol_version: 4, password_file: '/run/secrets/pw', tls: { ca: 'ca.pem' } },
        { topics: ['t2'], url: 'mqtt://b:1883', source: 'mqtt:c', username: 'u', password_env: 'not a name' },
      ],
    })).toEqual([
      '$.adapters.mqtt[0].password_env: give one of password, password_env, password_file (found password and password_env and password_file)',
      '$.adapters.mqtt[1].tls: needs an mqtts:// URL; with mqtt:// the connection would be plain TCP and tls ignored',
      '$.adapters.mqtt[1].username: is required with a password on MQTT 3.1.1 (protocol_version 4)',
      '$.adapters.mqtt[2].password_env: must be an environment variable name',
    ])
    // Without `resources`, nothing is read from the machine: a document can be checked anywhere.
    const cfg = validateAdapterConfig({ mqtt: [{ ...m, url: 'ssl://b:8883', source: 'mqtt:a', username: 'u', password_file: '/nope', tls: { ca: '/nope/ca.pem' } }] })
    expect(cfg.mqtt[0]).toMatchObject({ username: 'u', password_file: '/nope', tls: { ca: '/nope/ca.pem', reject_unauthorized: true } })
  })

  it('url: parsed as the client library would connect, a bad port, host or ignored path named at its path', () => {
    const url = (u: string) => ({ url: u, topics: ['t'], source: 'mqtt:a' })
    const bad = ['mqtt://127.0.0.1:99999', 'mqtt://127.0.0.1:0', 'mqtt://127.0.0.1:abc', 'mqtt://[::1', 'mqtt://bad host:1883', 'mqtt://:1883', 'mqtts://a!b:8883', 'mqtt://b:1883/plant']
    expect(bad.map((u) => problems({ mqtt: [url(u)] }))).toEqual([
      ['$.adapters.mqtt[0].url: port "99999" must be a number from 1 to 65535 (e.g. "mqtt://127.0.0.1:1883")'],
      ['$.adapters.mqtt[0].url: port "0" must be a number from 1 to 65535 (e.g. "mqtt://127.0.0.1:1883")'],
      ['$.adapters.mqtt[0].url: port "abc" must be a number from 1 to 65535 (e.g. "mqtt://127.0.0.1:1883")'],
      ['$.adapters.mqtt[0].url: host "[::1" is not a host name or IP address'],
      ['$.adapters.mqtt[0].url: must not contain spaces or control characters, got "mqtt://bad host:1883"'],
      ['$.adapters.mqtt[0].url: has no host (e.g. "mqtt://127.0.0.1:1883")'],
      ['$.adapters.mqtt[0].url: host "a!b" is not a host name or IP address'],
      ['$.adapters.mqtt[0].url: path "/plant" would be ignored: only ws:// and wss:// URLs have one (give "mqtt://b:1883")'],
    ])
    // A websocket URL's path is the HTTP request's (mosquitto and EMQX listen on /mqtt); no port is the scheme's default.
    // An international host name: the client library connects to its ASCII form (xn--brker-kua.example).
    for (const u of ['mqtt://b', 'mqtts://broker:8883/', 'tcp://[::1]:1883', 'ws://b:8080/mqtt', 'wss://b/mqtt', 'mqtt://bröker.example:1883']) {
      expect(validateAdapterConfig({ mqtt: [url(u)] }).mqtt[0]!.url).toBe(u)
    }
  })

  it('url with user:password@: its problems never quote the password', () => {
    const url = (u: string) => ({ url: u, topics: ['t'], source: 'mqtt:a' })
    const cases: Array<[string, string]> = [
      ['mqtt://rfmqtt:S3cret Pw@127.0.0.1:1883', 'must not contain spaces or control characters, got "mqtt://rfmqtt:***@127.0.0.1:1883"'],
      ['mqtt://rfmqtt:S3cretPw@127.0.0.1:99999', 'port "99999" must be a number from 1 to 65535 (e.g. "mqtt://127.0.0.1:1883")'],
      ['mqtt://rfmqtt:S3c@retPw@127.0.0.1:abc', 'port "abc" must be a number from 1 to 65535 (e.g. "mqtt://127.0.0.1:1883")'],
      ['mqtt://rfmqtt:S3cretPw@a!b:1883', 'host "a!b" is not a host name or IP address'],
      ['mqtt://rfmqtt:S3cretPw@b:1883/plant', 'path "/plant" would be ignored: only ws:// and wss:// URLs have one (give "mqtt://b:1883")'],
      // A "/" (or "?", "#") in the password, not percent-encoded, would end the host at it: its start read as the port or path.
      ['mqtt://rfmqtt:12/S3cretPw@127.0.0.1:1883', 'has "/", "?" or "#" before its last "@": in a user name or password write them percent-encoded (%2F, %3F, %23), or give username and password_env or password_file; in a path write "@" as %40'],
      ['mqtt://rfmqtt:S3c#retPw@127.0.0.1:99999', 'has "/", "?" or "#" before its last "@": in a user name or password write them percent-encoded (%2F, %3F, %23), or give username and password_env or password_file; in a path write "@" as %40'],
    ]
    expect(cases.map(([u]) => problems({ mqtt: [url(u)] }))).toEqual(cases.map(([, p]) => [`$.adapters.mqtt[0].url: ${p}`]))
    for (const u of ['mqtt://rfmqtt:S3cretPw@127.0.0.1:1883', 'mqtts://rfmqtt:p%2Fw%40d@broker:8883', 'wss://rfmqtt:pw@b/mqtt']) {
      expect(validateAdapterConfig({ mqtt: [url(u)] }).mqtt[0]!.url).toBe(u)
    }
  })

  it('an entry with a bad url or source is still checked against the machine and the other entries, so one run names all', () => {
    const withResources = (doc: unknown) => {
      try {
        validateAdapterConfig(doc, { hostname: 'h1', resources: { env: {} } })
      } catch (err) {
        return (err as ValidationError).problems.map((p) => `${p.path}: ${p.message}`)
      }
      throw new Error('expected a ValidationError')
    }
    // What entry 1 (client id "x", topic a/b) gets beside entry 0 (client id "x", topic a/#) on the same broker.
    const clashesWithFirst = [
      '$.adapters.mqtt[1].client_id: "x" is also used by $.adapters.mqtt[0] on the same broker; the broker would disconnect one of them in a loop',
      '$.adapters.mqtt[1].topics[0]: "a/b" overlaps "a/#" of $.adapters.mqtt[0] on the same broker: a message on a topic both match would be rated twice, once under each source; subscribe to it in one adapter',
    ]
    expect(withResources({ mqtt: [{ topics: ['a/+'], source: 'mqtt:a', password_env: 'NOPE', tls: { ca: '/nonexistent.pem' } }] })).toEqual([
      '$.adapters.mqtt[0].url: is required',
      '$.adapters.mqtt[0].password_env: environment variable NOPE is not set (or empty)',
      '$.adapters.mqtt[0].tls.ca: cannot read /nonexistent.pem: ENOENT',
    ])
    expect(problems({
      mqtt: [
        { url: 'mqtt://b:1883', topics: ['a/#'], source: 'mqtt:a', client_id: 'x' },
        { url: 'mqtt://b:1883', topics: ['a/b'], source: 'bad source!', client_id: 'x' },
        { url: 'mqtt://b:99999', topics: ['c'], source: 'mqtt:c', tls: {} },
      ],
    })).toEqual([
      '$.adapters.mqtt[1].source: must be letters, digits and _ . : @ - (e.g. "mqtt:plant-7")',
      '$.adapters.mqtt[2].url: port "99999" must be a number from 1 to 65535 (e.g. "mqtt://b:1883")',
      '$.adapters.mqtt[2].tls: needs an mqtts:// URL; with mqtt:// the connection would be plain TCP and tls ignored',
      ...clashesWithFirst,
    ])
    // A url wrong only by its path still names its broker: the client id and the topics are compared in the same run.
    expect(problems({
      mqtt: [
        { url: 'mqtt://b:1883', topics: ['a/#'], source: 'mqtt:a', client_id: 'x' },
        { url: 'mqtt://b:1883/plant', topics: ['a/b'], source: 'mqtt:b', client_id: 'x' },
      ],
    })).toEqual([
      '$.adapters.mqtt[1].url: path "/plant" would be ignored: only ws:// and wss:// URLs have one (give "mqtt://b:1883")',
      ...clashesWithFirst,
    ])
    expect(problems({ mqtt: [{ url: 'mqtt://bröker!.example:1883', topics: ['a'], source: 'mqtt:a' }] })).toEqual([
      '$.adapters.mqtt[0].url: host "bröker!.example" is not a host name or IP address',
    ])
  })

  it('sessions.max_open_sessions: a frozen default, bounds checked at its path', () => {
    const cfg = validateAdapterConfig({ syslog: [{ tcp_port: 0, source: 'syslog:s', sessions: {} }, { tcp_port: 0, source: 'syslog:t', sessions: { max_open_sessions: 5 } }] })
    expect(DEFAULT_SESSIONS.max_open_sessions).toBe(100_000)
    expect(Object.isFrozen(DEFAULT_SESSIONS)).toBe(true)
    expect(cfg.syslog.map((s) => s.sessions!.max_open_sessions)).toEqual([100_000, 5])
    expect(problems({ mqtt: [{ url: 'mqtt://b', topics: ['t'], source: 'mqtt:a', sessions: { max_open_sessions: 0 } }], syslog: [{ tcp_port: 0, source: 'syslog:s', sessions: { max_open_sessions: '10' } }] })).toEqual([
      '$.adapters.mqtt[0].sessions.max_open_sessions: must be an integer from 1 to 10000000 (inclusive), got number 0',
      '$.adapters.syslog[0].sessions.max_open_sessions: must be an integer from 1 to 10000000 (inclusive), got "10"',
    ])
  })

  it('rejects a non-object document and non-array sections', () => {
    expect(problems([])).toEqual(['$.adapters: must be an object, got an array'])
    expect(problems({ mqtt: {} })).toEqual(['$.adapters.mqtt: must be an array, got an object'])
  })

  it('refuses two instances with the same client id on one broker (mqtt://localhost and mqtt://127.0.0.1:1883 are one)', () => {
    expect(problems({ mqtt: [{ url: 'mqtt://localhost', topics: ['t1'], source: 'mqtt:a', client_id: 'x' }, { url: 'mqtt://127.0.0.1:1883', topics: ['t2'], source: 'mqtt:b', client_id: 'x' }] })).toEqual([
      '$.adapters.mqtt[1].client_id: "x" is also used by $.adapters.mqtt[0] on the same broker; the broker would disconnect one of them in a loop',
    ])
  })

  it('refuses two adapters on one broker whose filters a topic can match both: each message would be rated twice', () => {
    const m = (source: string, topics: string[], more: Record<string, unknown> = {}) => ({ url: 'mqtt://127.0.0.1:1883', topics, source, ...more })
    expect(problems({ mqtt: [m('mqtt:a', ['devices/+/usage']), m('mqtt:b', ['alarms/#', 'devices/#'])] })).toEqual([
      '$.adapters.mqtt[1].topics[1]: "devices/#" overlaps "devices/+/usage" of $.adapters.mqtt[0] on the same broker: a message on a topic both match would be rated twice, once under each source; subscribe to it in one adapter',
    ])
    // Not: disjoint filters, or other brokers.
    const fine = (doc: unknown) => expect(() => validateAdapterConfig(doc, { presets: BUILTIN_MAPPINGS, hostname: 'h1' })).not.toThrow()
    fine({ mqtt: [m('mqtt:a', ['devices/+/usage']), m('mqtt:b', ['devices/+/alarms', 'plant/#'])] })
    fine({ mqtt: [m('mqtt:a', ['devices/#']), { ...m('mqtt:b', ['devices/#']), url: 'mqtt://127.0.0.1:1884' }] })
    // One shared subscription split between two adapters: a message redelivered to the other member is rated again.
    expect(problems({ mqtt: [m('mqtt:a', ['devices/#'], { shared_group: 'raters' }), m('mqtt:b', ['$share/raters/devices/#'])] })).toHaveLength(1)
    // The client library's scheme aliases and loopback names are one listener.
    expect(problems({ mqtt: [{ ...m('mqtt:a', ['a/#']), url: 'mqtt://localhost' }, { ...m('mqtt:b', ['a/b']), url: 'tcp://[::1]:1883' }] })).toHaveLength(1)
  })
})

describe('filtersOverlap', () => {
  it('is true when some topic matches both filters', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a/b', 'a/b', true], ['a/b', 'a/c', false], ['a/+', 'a/b', true], ['a/+', 'a/b/c', false], ['a/#', 'a', true], ['a/#', 'a/b/c', true],
      ['#', 'x/y', true], ['+/b', 'a/+', true], ['+/+', 'a', false], ['a/+/c', 'a/b/+', true], ['a/+/c', 'a/b/d', false], ['#', '$SYS/x', false],
      ['+/x', '$SYS/x', false], ['$SYS/#', '$SYS/x', true], ['a/', 'a/+', true], ['a', 'a/+', false],
    ]
    for (const [a, b, overlap] of cases) {
      expect([a, b, filtersOverlap(a, b)]).toEqual([a, b, overlap])
      expect([b, a, filtersOverlap(b, a)]).toEqual([b, a, overlap])
    }
  })
})

describe('topicFilterProblem', () => {
  it('accepts valid filters and explains invalid ones', () => {
    for (const ok of ['a/b', 'a/+/c', '#', 'a/#', '$share/g/a/+']) expect(topicFilterProblem(ok)).toBeUndefined()
    expect(topicFilterProblem('a/b+')).toBe('"+" must be a whole level')
    expect(topicFilterProblem(3)).toMatch(/non-empty topic filter/)
  })
})
