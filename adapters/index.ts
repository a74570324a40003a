/** adapters: sources that normalise input to canonical records and publish micro-batches. */
export { DEFAULT_BATCHING, MicroBatcher, MIN_BATCH_BYTES, type BatchSink, type MicroBatcherOptions, type StoredCallback } from './batcher.js'
export {
  CSV_COLUMNS,
  csvBatchIdPrefix,
  csvFileProblems,
  defaultCsvSource,
  fileFingerprint,
  ingestCsvFile,
  mapHeader,
  newRunId,
  publishCsvFile,
  type CsvCheckOptions,
  type CsvFileOptions,
  type CsvFileResult,
  type CsvPublishPlan,
} from './csv.js'
export { CsvRowParser, DEFAULT_MAX_ROW_CHARS, type CsvItem } from './csv-parser.js'
export { EscapingUtf8Decoder, firstInvalidByte, hasInvalidBytes, originalBytes } from './utf8-text.js'
export { checkCsvInboxEntries, CsvInbox, type CsvInboxOptions, type CsvInboxStats } from './csv-inbox.js'
export { validateAdapterConfig, type AdaptersConfig, type MqttAdapterOptions, type SyslogAdapterOptions } from './config.js'
export { SessionMerger } from './sessions.js'
export { MqttAdapter } from './mqtt/index.js'
export { SyslogAdapter, BUILTIN_MAPPINGS } from './syslog/index.js'
