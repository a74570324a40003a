/** rating-core: pure rating functions, no I/O. What other folders may use. */
export type { CanonicalRecord, UsageBatch, WireRecord, WireReject } from './record.js'
export { validateRecord } from './validate.js'
export { chargeRef, rejectLine, stageBatch, totalsKey, type StagedBatch, type StagedCharge, type StagedRecord } from './stage.js'
export { chargeTable, RunningTotals, type ResolvedCharge } from './running-totals.js'
export { DedupeIndex } from './dedupe-index.js'
export { HorizonIndex } from './dedupe-horizon.js'
export { NO_DIMENSIONS } from './stage.js'
export { groupKey, meterAccepts } from './meters.js'
export {
  foldUsageEvent,
  meterStateOf,
  periodTotal,
  rateUsageEvent,
  runningTotalOf,
  type FoldedUsage,
  type MeterState,
  type RunningTotal,
  type PeriodTotal,
  type RatedUsage,
  type RatingContext,
  type UsageEventInput,
} from './usage-rater.js'
export { rateTimedEvent, splitSession } from './time-rated.js'
export { findCharge, minimumCommitment, priceCharge, rateEvent, type PriceInput, type QuotedPrice } from './pricing.js'
export type { PriceLine, PriceResult } from './models/common.js'
