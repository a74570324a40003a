/** common: errors, logging, time, strings, sorted search and ports: small helpers every other folder uses. */
export { ErrorCode, HeldByAnotherError, isUserError, RateflowError, ValidationError, type Problem } from './errors.js'
export { createLogger, type Logger } from './logger.js'
export { freePort } from './net.js'
export { redactUrl } from './redact.js'
export { lowerBound } from './sorted.js'
export { detached } from './strings.js'
export { daysInMonth, isoUtc, isValidTimeZone, parseIsoTime, zonedParts, zonedToUtc, zoneOffsetMs, type ZonedParts } from './time.js'
