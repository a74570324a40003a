/**
 * Exact decimal arithmetic on scaled BigInts: a value is `i / 10^e`.
 *
 * Why not big.js on the hot path: rating a per_unit or graduated event is a parse, a
 * multiply, an add and a rounding; BigInt does that without allocating a digit array per
 * operation, which is what keeps incremental rating above a million events per second per
 * thread. Every operation here is exact except the explicit rounding functions, which say
 * their mode. Money never becomes a JS number.
 */
import { ErrorCode, RateflowError } from '../common/errors.js'

/** value = i × 10^-e, e ≥ 0. Not normalised: 1.50 may be {150n, 2} or {15n, 1}; compare with cmp, print with fmt. */
export interface Dec {
  readonly i: bigint
  readonly e: number
}

export type RoundingMode = 'half_even' | 'up' | 'down' | 'ceil' | 'floor'

/** Plain decimal: optional minus, digits, optional fraction. No exponent, no plus, no spaces. */
export const DECIMAL_RE = /^-?\d+(\.\d+)?$/

/** Integer digits of the store's Decimal(38, 9) (rated_usage.quantity and amount): 38 − 9. */
export const STORE_INTEGER_DIGITS = 29

/** Inputs longer than this are refused: a 400-digit quantity is an attack or a bug, not usage. */
const MAX_LENGTH = 80
/** More fractional digits than this are refused (catalogs allow 18; scaled event quantities may need more). */
const MAX_FRACTION = 36

const POW10: bigint[] = []
for (let k = 0, p = 1n; k <= 128; k++, p *= 10n) POW10.push(p)

export function pow10(n: number): bigint {
  const p = POW10[n]
  return p !== undefined ? p : 10n ** BigInt(n)
}

export const ZERO: Dec = { i: 0n, e: 0 }
export const ONE: Dec = { i: 1n, e: 0 }

/** Parses a plain decimal string; throws RateflowError(BAD_INPUT) naming `what` otherwise. */
export function parseDec(s: string, what = 'decimal'): Dec {
  if (typeof s !== 'string' || s.length > MAX_LENGTH) throw notDecimal(s, what)
  // One scan instead of DECIMAL_RE plus slicing: every event's quantity comes through here.
  // The digits are also summed into an integer, exact while there are at most 15 of them (< 2^53),
  // which BigInt takes without parsing text again; longer inputs go through BigInt(text).
  const n = s.length
  const neg = n > 0 && s.charCodeAt(0) === 45 /* - */
  let k = neg ? 1 : 0
  let dot = -1
  let small = 0
  for (; k < n; k++) {
    const c = s.charCodeAt(k)
    if (c >= 48 && c <= 57) small = small * 10 + (c - 48)
    else if (c === 46 /* . */ && dot < 0) dot = k
    else throw notDecimal(s, what)
  }
  const first = neg ? 1 : 0
  const digits = n - first - (dot < 0 ? 0 : 1)
  if (dot < 0 ? digits < 1 : dot === first || dot === n - 1) throw notDecimal(s, what)
  const e = dot < 0 ? 0 : n - dot - 1
  if (e > MAX_FRACTION) {
    throw new RateflowError(ErrorCode.BadInput, `${what}: more than ${MAX_FRACTION} fractional digits: ${s}`)
  }
  if (digits <= 15) return { i: BigInt(neg ? -small : small), e }
  return { i: BigInt(dot < 0 ? s : s.slice(0, dot) + s.slice(dot + 1)), e }
}

function notDecimal(s: unknown, what: string): RateflowError {
  return new RateflowError(ErrorCode.BadInput, `${what}: not a plain decimal string: ${JSON.stringify(s)}`)
}

/** True when `s` (a plain decimal string) is already in fmt's canonical form: no leading or trailing zeros, no "-0". */
export function isCanonical(s: string): boolean {
  const n = s.length
  const first = s.charCodeAt(0) === 45 /* - */ ? 1 : 0
  if (n - first > 1 && s.charCodeAt(first) === 48 /* 0 */ && s.charCodeAt(first + 1) !== 46 /* . */) return false
  const dot = s.indexOf('.')
  if (dot >= 0 && s.charCodeAt(n - 1) === 48) return false
  if (first === 1) {
    for (let k = 1; k < n; k++) {
      const c = s.charCodeAt(k)
      if (c !== 48 && c !== 46) return true
    }
    return false
  }
  return true
}

/** True when `s` is a plain decimal string parseDec accepts. */
export function isDec(s: unknown): s is string {
  return typeof s === 'string' && s.length <= MAX_LENGTH && DECIMAL_RE.test(s)
}

/** Canonical string: no trailing fractional zeros, no "-0". 1.50 → "1.5", 2.000 → "2". */
export function fmt(d: Dec): string {
  return fmtScaled(d.i, d.e)
}

/** `'0.'` followed by k zeros, for values below one (no repeat + concat per call). */
const BELOW_ONE: string[] = []
for (let k = 0; k <= 48; k++) BELOW_ONE.push('0.' + '0'.repeat(k))

/**
 * fmt of i × 10^-e. Every rated event prints three or four of these, so it allocates only the digits and
 * the pieces of the result: no padded copy, no Dec.
 */
function fmtScaled(i: bigint, e: number): string {
  if (e === 0) return i.toString()
  const neg = i < 0n
  const s = (neg ? -i : i).toString()
  const point = s.length - e // digits before the decimal point; ≤ 0 when the value is below one
  let end = s.length
  const keep = point > 0 ? point : 0
  while (end > keep && s.charCodeAt(end - 1) === 48 /* '0' */) end--
  let out: string
  if (point <= 0) {
    if (end === 0) return '0'
    const digits = end === s.length ? s : s.slice(0, end)
    out = -point < BELOW_ONE.length ? BELOW_ONE[-point]! + digits : '0.' + '0'.repeat(-point) + digits
  } else if (end === point) {
    out = point === s.length ? s : s.slice(0, point)
  } else {
    out = s.slice(0, point) + '.' + s.slice(point, end)
  }
  return neg ? '-' + out : out
}

/** Fixed number of fractional digits (pads, never rounds: round first). */
export function fmtFixed(d: Dec, dp: number): string {
  const r = d.e === dp ? d : d.e < dp ? rescaleUp(d, dp) : round(d, dp, 'half_even')
  const neg = r.i < 0n
  let s = (neg ? -r.i : r.i).toString()
  if (dp === 0) return (neg ? '-' : '') + s
  if (s.length <= dp) s = '0'.repeat(dp - s.length + 1) + s
  return (neg ? '-' : '') + s.slice(0, s.length - dp) + '.' + s.slice(s.length - dp)
}

function rescaleUp(d: Dec, e: number): Dec {
  return { i: d.i * pow10(e - d.e), e }
}

/** Scaled integer of `d` at exactly `e` fractional digits; `d` must not have more (exact, no rounding). */
export function scaledAt(d: Dec, e: number): bigint {
  if (d.e === e) return d.i
  if (d.e < e) return d.i * pow10(e - d.e)
  throw new RateflowError(ErrorCode.Internal, `scaledAt: ${fmt(d)} has more than ${e} fractional digits`)
}

export function add(a: Dec, b: Dec): Dec {
  if (a.e === b.e) return { i: a.i + b.i, e: a.e }
  return a.e > b.e ? { i: a.i + b.i * pow10(a.e - b.e), e: a.e } : { i: a.i * pow10(b.e - a.e) + b.i, e: b.e }
}

export function sub(a: Dec, b: Dec): Dec {
  if (a.e === b.e) return { i: a.i - b.i, e: a.e }
  return a.e > b.e ? { i: a.i - b.i * pow10(a.e - b.e), e: a.e } : { i: a.i * pow10(b.e - a.e) - b.i, e: b.e }
}

export function mul(a: Dec, b: Dec): Dec {
  return { i: a.i * b.i, e: a.e + b.e }
}

export function neg(a: Dec): Dec {
  return { i: -a.i, e: a.e }
}

/** -1, 0, 1. */
export function cmp(a: Dec, b: Dec): number {
  let x = a.i
  let y = b.i
  if (a.e > b.e) y *= pow10(a.e - b.e)
  else if (a.e < b.e) x *= pow10(b.e - a.e)
  return x < y ? -1 : x > y ? 1 : 0
}

export function sign(a: Dec): number {
  return a.i < 0n ? -1 : a.i > 0n ? 1 : 0
}

export function isZero(a: Dec): boolean {
  return a.i === 0n
}

export function max(a: Dec, b: Dec): Dec {
  return cmp(a, b) >= 0 ? a : b
}

export function min(a: Dec, b: Dec): Dec {
  return cmp(a, b) <= 0 ? a : b
}

/** Divides `n` by `d` (d > 0) to an integer with the given rounding. */
export function divInt(n: bigint, d: bigint, mode: RoundingMode): bigint {
  if (d <= 0n) throw new RateflowError(ErrorCode.Internal, 'divInt: divisor must be positive')
  const q = n / d // truncates toward zero
  const r = n - q * d
  if (r === 0n) return q
  const away = n < 0n ? q - 1n : q + 1n
  switch (mode) {
    case 'down':
      return q
    case 'up':
      return away
    case 'ceil':
      return n > 0n ? q + 1n : q
    case 'floor':
      return n < 0n ? q - 1n : q
    case 'half_even': {
      const twice = (r < 0n ? -r : r) * 2n
      if (twice > d) return away
      if (twice < d) return q
      return q % 2n === 0n ? q : away
    }
  }
}

/** Rounds to `dp` fractional digits. `up` is away from zero, `down` toward zero. Exact when `a` already fits. */
export function round(a: Dec, dp: number, mode: RoundingMode): Dec {
  if (a.e <= dp) return a
  return { i: divInt(a.i, pow10(a.e - dp), mode), e: dp }
}

/** `a / b` rounded to `dp` fractional digits; b ≠ 0. */
export function div(a: Dec, b: Dec, dp: number, mode: RoundingMode): Dec {
  if (b.i === 0n) throw new RateflowError(ErrorCode.Internal, 'division by zero')
  // a/b = (a.i / 10^a.e) / (b.i / 10^b.e); scaled by 10^dp: a.i · 10^(dp + b.e) / (b.i · 10^a.e)
  let n = a.i * pow10(dp + b.e)
  let d = b.i * pow10(a.e)
  if (d < 0n) {
    n = -n
    d = -d
  }
  return { i: divInt(n, d, mode), e: dp }
}

/** ceil(a / b) as an integer, for b > 0 (package counts, step increments). */
export function ceilDiv(a: Dec, b: Dec): bigint {
  const e = Math.max(a.e, b.e)
  return divInt(scaledAt(a, e), scaledAt(b, e), 'ceil')
}

// ---- 9-decimal amounts ------------------------------------------------------------------
// Rated amounts keep 9 decimal places (CONTRACT: "rated events keep 9 decimal places").
// They travel as bigint nano-units so the hot path adds integers, not objects.

export const AMOUNT_DP = 9

/** `a` rounded half-even to 9 decimals, as an integer count of 1e-9 units. */
export function toNano(a: Dec): bigint {
  if (a.e === AMOUNT_DP) return a.i
  if (a.e < AMOUNT_DP) return a.i * pow10(AMOUNT_DP - a.e)
  return divInt(a.i, pow10(a.e - AMOUNT_DP), 'half_even')
}

export function fromNano(n: bigint): Dec {
  return { i: n, e: AMOUNT_DP }
}

/** Canonical string of a nano amount: "1.5", "0.000000001", "-3". */
export function fmtNano(n: bigint): string {
  return fmtScaled(n, AMOUNT_DP)
}

/** Parses an optional decimal field (undefined stays undefined). */
export function parseOpt(s: string | undefined, what: string): Dec | null {
  return s === undefined ? null : parseDec(s, what)
}
