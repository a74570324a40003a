import Big from 'big.js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { add, ceilDiv, cmp, div, divInt, fmt, fmtFixed, fmtNano, mul, parseDec, round, sub, toNano } from './decimal.js'

const decString = fc
  .tuple(fc.boolean(), fc.bigInt({ min: 0n, max: 10n ** 30n }), fc.integer({ min: 0, max: 20 }))
  .map(([neg, i, e]) => {
    const s = i.toString().padStart(e + 1, '0')
    const body = e === 0 ? s : `${s.slice(0, s.length - e)}.${s.slice(s.length - e)}`
    return (neg ? '-' : '') + body
  })

/** big.js canonical form without exponent notation. */
const bigStr = (b: Big): string => {
  const s = b.toFixed()
  return s === '-0' ? '0' : s
}

describe('parseDec / fmt', () => {
  const cases: [string, string][] = [
    ['0', '0'],
    ['-0', '0'],
    ['-0.000', '0'],
    ['1.50', '1.5'],
    ['007.0100', '7.01'],
    ['0.000000001', '0.000000001'],
    ['-12.345', '-12.345'],
    ['1000000000000000000000000000000', '1000000000000000000000000000000'],
  ]
  for (const [input, out] of cases) it(`${input} → ${out}`, () => expect(fmt(parseDec(input))).toBe(out))

  for (const bad of ['', '1e3', '+1', ' 1', '1.', '.5', '1,5', 'NaN', '--1', '1.2.3', '9'.repeat(81)]) {
    it(`rejects ${JSON.stringify(bad.slice(0, 12))}`, () => expect(() => parseDec(bad, 'q')).toThrow(expect.objectContaining({ code: 'BAD_INPUT' })))
  }

  it('property: fmt(parseDec(s)) equals big.js canonical form', () => {
    fc.assert(
      fc.property(decString, (s) => {
        expect(fmt(parseDec(s))).toBe(bigStr(Big(s)))
      }),
    )
  })
})

describe('arithmetic is exact (big.js as the oracle)', () => {
  it('add, sub, mul, cmp', () => {
    fc.assert(
      fc.property(decString, decString, (a, b) => {
        const x = parseDec(a)
        const y = parseDec(b)
        expect(fmt(add(x, y))).toBe(bigStr(Big(a).plus(b)))
        expect(fmt(sub(x, y))).toBe(bigStr(Big(a).minus(b)))
        expect(fmt(mul(x, y))).toBe(bigStr(Big(a).times(b)))
        expect(cmp(x, y)).toBe(Big(a).cmp(b))
      }),
    )
  })
  it('round half_even / down / up match big.js (roundHalfEven, roundDown, roundUp)', () => {
    fc.assert(
      fc.property(decString, fc.integer({ min: 0, max: 12 }), (a, dp) => {
        const x = parseDec(a)
        expect(fmt(round(x, dp, 'half_even'))).toBe(bigStr(Big(a).round(dp, Big.roundHalfEven)))
        expect(fmt(round(x, dp, 'down'))).toBe(bigStr(Big(a).round(dp, Big.roundDown)))
        expect(fmt(round(x, dp, 'up'))).toBe(bigStr(Big(a).round(dp, Big.roundUp)))
      }),
    )
  })
  it('div rounds half-even like big.js', () => {
    fc.assert(
      fc.property(decString, decString.filter((s) => !Big(s).eq(0)), fc.integer({ min: 0, max: 18 }), (a, b, dp) => {
        Big.DP = 60
        const oracle = Big(a).div(b).round(dp, Big.roundHalfEven)
        expect(fmt(div(parseDec(a), parseDec(b), dp, 'half_even'))).toBe(bigStr(oracle))
      }),
    )
  })
})

describe('rounding edges', () => {
  const cases: [string, number, 'half_even' | 'up' | 'down' | 'ceil' | 'floor', string][] = [
    ['2.5', 0, 'half_even', '2'],
    ['3.5', 0, 'half_even', '4'],
    ['-2.5', 0, 'half_even', '-2'],
    ['-3.5', 0, 'half_even', '-4'],
    ['2.51', 0, 'half_even', '3'],
    ['-1.1', 0, 'up', '-2'],
    ['-1.9', 0, 'down', '-1'],
    ['-1.1', 0, 'ceil', '-1'],
    ['-1.1', 0, 'floor', '-2'],
    ['1.1', 0, 'ceil', '2'],
    ['0.0000000005', 9, 'half_even', '0'],
    ['0.0000000015', 9, 'half_even', '0.000000002'],
  ]
  for (const [v, dp, mode, out] of cases) it(`${v} ${mode} ${dp} → ${out}`, () => expect(fmt(round(parseDec(v), dp, mode))).toBe(out))

  it('divInt needs a positive divisor', () => expect(() => divInt(1n, 0n, 'down')).toThrow())
  it('ceilDiv counts started packages', () => {
    expect(ceilDiv(parseDec('201'), parseDec('100'))).toBe(3n)
    expect(ceilDiv(parseDec('200'), parseDec('100'))).toBe(2n)
    expect(ceilDiv(parseDec('1.01'), parseDec('0.5'))).toBe(3n)
  })
  it('toNano / fmtNano / fmtFixed', () => {
    expect(toNano(parseDec('1.0000000005'))).toBe(1_000_000_000n)
    expect(toNano(parseDec('1.0000000015'))).toBe(1_000_000_002n)
    expect(toNano(parseDec('-0.0000000025'))).toBe(-2n)
    expect(fmtNano(1_500_000_000n)).toBe('1.5')
    expect(fmtNano(-1n)).toBe('-0.000000001')
    expect(fmtFixed(parseDec('1.5'), 9)).toBe('1.500000000')
    expect(fmtFixed(parseDec('-0.125'), 2)).toBe('-0.12')
    expect(fmtFixed(parseDec('7'), 0)).toBe('7')
  })
})
