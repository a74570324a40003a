import { describe, expect, it } from 'vitest'
import { redactUrl } from './redact.js'

describe('redactUrl', () => {
  it.each([
    // [given, shown]
    ['nats://rfuser:S3cretNatsPw@127.0.0.1:14222', 'nats://rfuser:***@127.0.0.1:14222'],
    ['nats://S3cretToken@127.0.0.1:4222', 'nats://***@127.0.0.1:4222'],
    ['rfuser:S3cretNatsPw@127.0.0.1:4222', 'rfuser:***@127.0.0.1:4222'],
    ['S3cretToken@127.0.0.1:4222', '***@127.0.0.1:4222'],
    ['http://rateflow:S3cretChPw@clickhouse:8123/rateflow', 'http://rateflow:***@clickhouse:8123/rateflow'],
    ['mqtts://rfmqtt:pw@broker:8883', 'mqtts://rfmqtt:***@broker:8883'],
    ['nats://u:@h:4222', 'nats://u:***@h:4222'],
    // Nothing to mask.
    ['nats://127.0.0.1:4222', 'nats://127.0.0.1:4222'],
    ['http://127.0.0.1:8123/db', 'http://127.0.0.1:8123/db'],
    ['', ''],
    // Not URLs: everything from // to the last @ is credentials.
    ['tcp://rateflow:S3cretChPw@ch:9000/rateflow', 'tcp://rateflow:***@ch:9000/rateflow'],
    ['http://rateflow:S3c/ret#Ch?Pw@ch:8123', 'http://rateflow:***@ch:8123'],
    ['nats://u:p@ss@h:4222', 'nats://u:***@h:4222'],
    ['mqtt://rfmqtt:S3cret MqttPw@127.0.0.1:1883', 'mqtt://rfmqtt:***@127.0.0.1:1883'],
    // Lists: each server; a comma inside a password stays with its server.
    ['nats://a:x1@h1:4222, nats://b:y2@h2:4222', 'nats://a:***@h1:4222, nats://b:***@h2:4222'],
    ['a:x1@h1:4222,b:y2@h2:4222', 'a:***@h1:4222,b:***@h2:4222'],
    ['nats://u:pass,word@h:4222', 'nats://u:***@h:4222'],
    ['tok@h1:4222,nats://tok@h2:4222', '***@h1:4222,nats://***@h2:4222'],
  ])('%s → %s', (given, shown) => {
    expect(redactUrl(given)).toBe(shown)
  })
})
