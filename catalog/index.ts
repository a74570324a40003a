/** catalog: the versioned product catalog, accounts and subscriptions (guiding data). */
export type {
  Account,
  AccountsDocument,
  Catalog,
  Charge,
  Customer,
  Decimal,
  DeviceBinding,
  Meter,
  MeterAggregation,
  OneTimeCharge,
  Plan,
  RecurringCharge,
  RevRec,
  Schedule,
  Subscription,
  Tier,
  TimeRatedCharge,
  UsageCharge,
  UsageModel,
} from './types.js'
export { validateCatalog, validateCatalogVersionOrder } from './validate-catalog.js'
export { mergeAccounts, validateAccounts } from './accounts.js'
export { GuidingIndex, type GuideResult, type Owner, type OwnerIds } from './guiding.js'
export { billingPeriod, type Period } from './periods.js'
export { CatalogRepository } from './repository.js'
