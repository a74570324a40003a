/**
 * The first index in `a[0, end)` whose value is not below `v` (`end` when there is none), for values sorted
 * ascending by `<`: numbers or strings. Binary search, O(log end).
 */
export function lowerBound<T extends number | string>(a: ArrayLike<T>, end: number, v: T): number {
  let lo = 0
  let hi = end
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (a[mid]! < v) lo = mid + 1
    else hi = mid
  }
  return lo
}
