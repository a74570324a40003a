import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ValidationError } from '../common/errors.js'
import { validateRunConfig } from './run.js'

function problems(doc: unknown): string[] {
  try {
    validateRunConfig(doc)
  } catch (err) {
    if (err instanceof ValidationError) return err.problems.map((p) => `${p.path}: ${p.message}`)
    throw err
  }
  return []
}

describe('validateRunConfig: listeners that would take one port', () => {
  it('names every listener whose port is already taken in the same config, with its JSON path', () => {
    expect(
      problems({
        adapters: { syslog: [{ tcp_port: 15606, source: 'syslog:a' }, { tcp_port: 15606, udp_port: 15607, source: 'syslog:b' }, { udp_port: 15607, host: '0.0.0.0', source: 'syslog:c' }] },
        http: { port: 15606 },
      }),
    ).toEqual([
      '$.adapters.syslog[0].tcp_port: tcp port 15606 on 127.0.0.1 is also taken by $.http.port; each listener needs a port of its own',
      '$.adapters.syslog[1].tcp_port: tcp port 15606 on 127.0.0.1 is also taken by $.http.port; each listener needs a port of its own',
      '$.adapters.syslog[2].udp_port: udp port 15607 on 0.0.0.0 is also taken by $.adapters.syslog[1].udp_port; each listener needs a port of its own',
    ])
  })

  it('takes localhost as 127.0.0.1', () => {
    expect(problems({ adapters: { syslog: [{ tcp_port: 9001, host: 'localhost', source: 'syslog:b' }, { tcp_port: 9001, source: 'syslog:c' }] }, http: { port: 9002 } })).toEqual([
      '$.adapters.syslog[1].tcp_port: tcp port 9001 on 127.0.0.1 is also taken by $.adapters.syslog[0].tcp_port; each listener needs a port of its own',
    ])
  })

  it('allows one port number for UDP and TCP, port 0 anywhere, and the same port on different addresses', () => {
    expect(
      problems({
        adapters: { syslog: [{ udp_port: 5514, tcp_port: 5514, source: 'syslog:edge' }, { tcp_port: 0, source: 'syslog:x' }, { tcp_port: 5514, host: '127.0.0.2', source: 'syslog:y' }] },
        http: { port: 0 },
      }),
    ).toEqual([])
  })
})

describe('validateRunConfig: every problem in one run', () => {
  it('checks ports and sources across sections though some adapter entry is bad', () => {
    expect(
      problems({
        adapters: {
          mqtt: [{ topics: ['a/+'], source: 'mqtt:a' }],
          syslog: [{ tcp_port: 9001, source: 'syslog:a' }, 'x', { tcp_port: 9001, source: 'bad source!' }, { tcp_port: 9001, host: 5, source: 'syslog:d' }],
          csv: [{ watch: '/tmp/rateflow-never-made', source: 'syslog:a' }],
        },
        http: { port: 0 },
      }),
    ).toEqual([
      '$.adapters.mqtt[0].url: is required',
      '$.adapters.syslog[1]: must be an object, got "x"',
      '$.adapters.syslog[2].source: must be letters, digits and _ . : @ - (e.g. "mqtt:plant-7")',
      '$.adapters.syslog[3].host: must be a non-empty string, got number 5',
      '$.adapters.csv[0].source: "syslog:a" is already used by another adapter',
      '$.adapters.syslog[2].tcp_port: tcp port 9001 on 127.0.0.1 is also taken by $.adapters.syslog[0].tcp_port; each listener needs a port of its own',
    ])
  })
})

describe('validateRunConfig: the HTTP API default port', () => {
  it('counts the default HTTP port as taken', () => {
    expect(problems({ adapters: { syslog: [{ tcp_port: 8080, source: 'syslog:a' }] } })).toEqual([
      '$.adapters.syslog[0].tcp_port: tcp port 8080 on 127.0.0.1 is also taken by $.http.port (default 8080); each listener needs a port of its own',
    ])
  })
})

describe('validateRunConfig: CSV inboxes that would rate each file twice', () => {
  it('names a directory two entries watch, however its path is written, and a watch path that is a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rateflow-watch-'))
    try {
      mkdirSync(join(dir, 'inbox'))
      symlinkSync(join(dir, 'inbox'), join(dir, 'link'))
      writeFileSync(join(dir, 'file.csv'), '')
      const entries = [
        { watch: join(dir, 'inbox'), source: 'csv:a' },
        { watch: join(dir, 'inbox') + '/', source: 'csv:b' },
        { watch: join(dir, 'link'), source: 'csv:c' },
        { watch: join(dir, 'file.csv'), source: 'csv:d' },
        { watch: join(dir, 'other'), source: 'csv:e' },
        { watch: join(dir, 'inbox', 'done'), source: 'csv:f' },
        { watch: join(dir, 'other-2'), source: 'csv:g' },
      ]
      const onMachine = (doc: unknown) => {
        try {
          validateRunConfig(doc, { resources: { env: {} } })
        } catch (err) {
          if (err instanceof ValidationError) return err.problems.map((p) => `${p.path}: ${p.message}`)
          throw err
        }
        return []
      }
      expect(onMachine({ adapters: { csv: entries }, http: { port: 0 } })).toEqual([
        `$.adapters.csv[1].watch: ${join(dir, 'inbox')}/ is the directory $.adapters.csv[0] watches too: each file dropped there would be rated once per entry, under each source`,
        `$.adapters.csv[2].watch: ${join(dir, 'link')} is the directory $.adapters.csv[0] watches too: each file dropped there would be rated once per entry, under each source`,
        `$.adapters.csv[3].watch: ${join(dir, 'file.csv')} is a file, not a directory to watch`,
        `$.adapters.csv[5].watch: ${join(dir, 'inbox', 'done')} and the directory $.adapters.csv[0] watches lie one inside the other: a file one inbox moves to its done/ or failed/ could be rated again by the other`,
      ])
      // A folder the inbox would have to create under a file (mkdir failed at start with ENOTDIR, exit 1, no path).
      expect(onMachine({ adapters: { csv: [{ watch: join(dir, 'file.csv', 'inbox'), source: 'csv:a' }, { watch: join(dir, 'file.csv', 'a', 'b'), source: 'csv:b' }] }, http: { port: 0 } })).toEqual([
        `$.adapters.csv[0].watch: ${join(dir, 'file.csv', 'inbox')} cannot be created: ${join(dir, 'file.csv')} is a file, not a directory`,
        `$.adapters.csv[1].watch: ${join(dir, 'file.csv', 'a', 'b')} cannot be created: ${join(dir, 'file.csv')} is a file, not a directory`,
      ])
      // processing/, done/ or failed/ as a link (the inbox follows none there, and would stall with one warning), or a
      // file: named at start. A watch folder that is itself a link is fine.
      mkdirSync(join(dir, 'linked'))
      mkdirSync(join(dir, 'elsewhere'))
      symlinkSync(join(dir, 'elsewhere'), join(dir, 'linked', 'done'))
      writeFileSync(join(dir, 'linked', 'failed'), '')
      symlinkSync(join(dir, 'linked'), join(dir, 'watch-link'))
      expect(onMachine({ adapters: { csv: [{ watch: join(dir, 'watch-link'), source: 'csv:l' }] }, http: { port: 0 } })).toEqual([
        `$.adapters.csv[0].watch: ${join(dir, 'watch-link', 'done')} is a symbolic link: the inbox moves files through done/ and follows no link there; make it a directory of its own`,
        `$.adapters.csv[0].watch: ${join(dir, 'watch-link', 'failed')} is not a directory: the inbox moves files through failed/ and follows no link there; make it a directory of its own`,
      ])
      // Without looking at the machine, the same absolute path is still caught.
      expect(problems({ adapters: { csv: entries.slice(0, 2) }, http: { port: 0 } })).toHaveLength(1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
