/** pipeline: the queue, the rater (partition owner), the store, and the runtime that opens them. */
export { openRuntime, type Runtime, type RuntimeOptions } from './runtime.js'
export { acquireLock, lockOwner } from './data-dir-lock.js'
export { DEFAULT_RATER, Rater, raterOptionsFromEnv, readCommittedKeys, type BatchOutcome, type RaterDeps, type RaterOptions } from './rater.js'
export { BatchTooLargeError, DEFAULT_QUEUE, decodeBatch, encodeBatch, openQueue, RATER_DURABLE, USAGE_STREAM, USAGE_SUBJECT, type Queue, type QueueOptions } from './queue.js'
export { DDL, FLUSHED_TABLES, openStore, type InsertOptions, type QueryFormat, type Store } from './store.js'
export { readOnlyStatement } from './read-only-sql.js'
export { DEFAULT_NATS_SERVER, startNatsServer, type LocalNatsServer, type NatsServerOptions } from './services/nats-server.js'
export { startMosquitto, type LocalMosquitto } from './services/mosquitto.js'
