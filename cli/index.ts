/**
 * cli: the `rateflow` command (CONTRACT §1). `main(argv)` runs one command and resolves to its exit code (0 ok,
 * 1 runtime failure, 2 bad input or usage); the rest is what other programs embedding Rateflow may call directly.
 * bin/rateflow.js imports main.js itself, not this file: a command then loads only the modules it uses (this
 * file loads them all, ~130 ms more per command here).
 */
export { main } from './main.js'
export { DEFAULT_DATA_DIR, processIo, type GlobalOptions, type Io } from './context.js'
export { ingestCsv, type IngestCounts, type IngestOptions } from './ingest.js'
export { QUERY_FORMATS, queryFormat, readOnlyQuery } from './query.js'
export { runCommand, validateRunConfig, type RunConfig } from './run.js'
