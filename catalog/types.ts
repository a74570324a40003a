/**
 * Catalog (CONTRACT §3) and accounts (CONTRACT §4) documents, as validated.
 * Every decimal is a string; every time an ISO-8601 string with offset.
 */

export type Decimal = string

export type MeterAggregation =
  | 'sum'
  | 'count'
  | 'max'
  | 'min'
  | 'unique_count'
  | 'latest'
  | 'time_weighted_avg'

export interface Meter {
  id: string
  /** Canonical record `metric` this meter reads. */
  metric: string
  aggregation: MeterAggregation
  /** For `unique_count`: the dimension whose distinct values are counted. */
  dimension?: string
  /** Multiplies each quantity before aggregation (e.g. bytes → GB). Default "1". */
  scale?: Decimal
  /** Only records whose dimensions equal every entry count. */
  filter?: Record<string, string>
  /** A usage charge on this meter prices each distinct combination of these dimensions separately. */
  group_by?: string[]
}

export interface Schedule {
  id: string
  /** ISO weekdays, 1 = Monday … 7 = Sunday. */
  weekdays: number[]
  /** "HH:MM" local time, inclusive. */
  from: string
  /** "HH:MM" local time, exclusive; "24:00" is the end of the day. */
  to: string
}

export interface Tier {
  /** Inclusive upper bound; null = unbounded. The lower bound is the previous tier's up_to, exclusive. */
  up_to: Decimal | null
  unit_price?: Decimal
  flat_fee?: Decimal
}

export interface PercentageTier {
  up_to: Decimal | null
  /** Percent, e.g. "2.5" = 2.5 %. */
  rate?: Decimal
  flat_fee?: Decimal
}

export interface RevRec {
  pattern: 'point_in_time' | 'ratable' | 'as_consumed'
  trigger?: 'delivery' | 'activation'
}

interface ChargeBase {
  id: string
  description?: string
  revrec?: RevRec
  /** Standalone selling price, for ASC 606 allocation. */
  ssp?: Decimal
}

export interface RecurringCharge extends ChargeBase {
  kind: 'recurring'
  amount: Decimal
  billing: 'in_advance' | 'in_arrears'
  proration: 'daily' | 'none'
}

export interface OneTimeCharge extends ChargeBase {
  kind: 'one_time'
  amount: Decimal
}

interface UsageChargeBase extends ChargeBase {
  kind: 'usage'
  meter: string
  /** Clamp of the charge's period total (inclusive). */
  minimum?: Decimal
  maximum?: Decimal
}

export interface PerUnitCharge extends UsageChargeBase {
  model: 'per_unit'
  unit_price: Decimal
  free_units?: Decimal
}
export interface GraduatedCharge extends UsageChargeBase {
  model: 'graduated'
  tiers: Tier[]
  free_units?: Decimal
}
export interface VolumeCharge extends UsageChargeBase {
  model: 'volume'
  tiers: Tier[]
  free_units?: Decimal
}
export interface PackageCharge extends UsageChargeBase {
  model: 'package'
  package_size: Decimal
  package_price: Decimal
  free_units?: Decimal
}
export interface PercentageCharge extends UsageChargeBase {
  model: 'percentage'
  rate: Decimal
  fixed_fee_per_event?: Decimal
  per_event_min?: Decimal
  per_event_max?: Decimal
  /** The first free_units of value (not events) are free. */
  free_units?: Decimal
}
export interface GraduatedPercentageCharge extends UsageChargeBase {
  model: 'graduated_percentage'
  tiers: PercentageTier[]
  free_units?: Decimal
}

export interface TimeRatedStep {
  /** Seconds into the session where this step starts (inclusive). */
  from: Decimal
  unit_price: Decimal
  /** unit_price is per `per` seconds. */
  per: Decimal
  /** Billed in whole increments of this many seconds. */
  increment: Decimal
}
export interface TimeRatedRate {
  schedule: string
  connect_fee?: Decimal
  steps: TimeRatedStep[]
}
export interface TimeRatedCharge extends UsageChargeBase {
  model: 'time_rated'
  rates: TimeRatedRate[]
  max_cost_per_event?: Decimal
  max_cost_strategy?: 'free'
  rounding?: { decimals: number; mode: 'up' | 'down' | 'half_even' }
  /**
   * The period's first free_units seconds of sessions, in the order they are rated, are free: a session entirely
   * inside the allowance costs nothing (no connect fee); one that straddles its end is billed from there on.
   */
  free_units?: Decimal
}

export type UsageCharge =
  | PerUnitCharge
  | GraduatedCharge
  | VolumeCharge
  | PackageCharge
  | PercentageCharge
  | GraduatedPercentageCharge
  | TimeRatedCharge

export type UsageModel = UsageCharge['model']

export type Charge = RecurringCharge | OneTimeCharge | UsageCharge

export interface Plan {
  id: string
  billing_period: 'month' | 'quarter' | 'year'
  minimum_commitment?: Decimal
  charges: Charge[]
}

export interface Catalog {
  version: string
  /** This version applies to events with event_time >= effective_from until the next version's effective_from. */
  effective_from: string
  currency: string
  meters: Meter[]
  schedules?: Schedule[]
  plans: Plan[]
}

// ---- accounts (CONTRACT §4) ----

export interface DeviceBinding {
  device_id: string
  /** Inclusive. */
  from: string
  /** Exclusive; null = open. */
  to: string | null
}

export interface Subscription {
  id: string
  plan: string
  /** Inclusive start of the subscription. */
  start: string
  /** Exclusive end; absent/null = open. */
  end?: string | null
  status: 'active' | 'dormant'
  quantity?: Decimal
  devices?: DeviceBinding[]
}

export interface Account {
  id: string
  currency: string
  /** IANA zone, e.g. Europe/Berlin: time_rated schedules and bill cycles use it. */
  timezone: string
  bill_cycle_day: number
  tax?: { jurisdiction: string; rate: Decimal }
  parent_account?: string | null
  subscriptions: Subscription[]
}

export interface Customer {
  id: string
  name: string
  accounts: Account[]
}

export interface AccountsDocument {
  customers: Customer[]
}
