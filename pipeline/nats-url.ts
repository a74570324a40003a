import { ErrorCode, RateflowError } from '../common/errors.js'
import { redactUrl } from '../common/redact.js'

/** How the client logs in: NATS's user and password, or a token; none when the servers carry no credentials. */
export type NatsAuth = { readonly user: string; readonly pass: string } | { readonly token: string }

/** A NATS_URL as the client is to connect with it. */
export interface NatsTarget {
  /** The servers without their credentials (the client would read a password's digits as the port: `u:1234@h:4222`). */
  readonly servers: readonly string[]
  readonly auth: NatsAuth | undefined
}

const EXAMPLE = '(e.g. nats://127.0.0.1:4222; several are separated by commas)'

/**
 * Reads a NATS_URL: one or more servers, comma-separated, each as the NATS client reads it (`nats://host:port`,
 * `tls://host:port` or `host:port`), optionally with credentials: `user:password@` or `token@` before the host,
 * percent-encoded (`%40` for an `@` in a password, `%2C` for a comma). The client takes no credentials from a server's
 * URL (it sent none, and a server with authorization refused it), so they are handed to it as options: one login for
 * every server, hence every server of the list must carry the same credentials, or none does.
 *
 * Throws bad usage (exit 2) naming NATS_URL, with every server quoted without its password or token.
 */
export function parseNatsUrl(value: string): NatsTarget {
  const entries = value.split(',').map((e) => e.trim())
  const parsed = entries.map((entry) => parseServer(entry))
  const bad = entries.filter((_, i) => parsed[i] === undefined)
  if (bad.length > 0) {
    throw new RateflowError(
      ErrorCode.BadUsage,
      `NATS_URL: ${entries
        .map((_, i) => i)
        .filter((i) => parsed[i] === undefined)
        .map((i) => JSON.stringify(quoted(entries, i)))
        .join(', ')} ${bad.length === 1 ? 'is not a NATS server URL' : 'are not NATS server URLs'} ${EXAMPLE}`,
    )
  }
  const servers = parsed.map((p) => p!)
  const undecodable = servers.findIndex((s) => s.auth === 'undecodable')
  if (undecodable >= 0) {
    throw new RateflowError(
      ErrorCode.BadUsage,
      `NATS_URL: ${JSON.stringify(quoted(entries, undecodable))}: the user name, password or token before "@" is not valid percent-encoding (write a "%" in it as %25)`,
    )
  }
  const key = (a: NatsAuth | undefined | 'undecodable') => JSON.stringify(a ?? null)
  const differs = servers.findIndex((s) => key(s.auth) !== key(servers[0]!.auth))
  if (differs >= 0) {
    throw new RateflowError(
      ErrorCode.BadUsage,
      `NATS_URL: ${JSON.stringify(quoted(entries, 0))} and ${JSON.stringify(quoted(entries, differs))} carry different credentials: ` +
        'the client logs in to every server of the list with one user and password, or one token, so give each server the same `user:password@` or `token@`, or none',
    )
  }
  return { servers: servers.map((s) => s.server), auth: servers[0]!.auth as NatsAuth | undefined }
}

/**
 * One server, its credentials taken off: undefined when the client cannot read it as a server. The credentials are
 * everything before the last `@` (a password's own `@` must be %40, but one left as is still belongs to it).
 */
function parseServer(entry: string): { server: string; auth: NatsAuth | undefined | 'undecodable' } | undefined {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(entry)
  if (scheme !== null && !['nats', 'tls'].includes(scheme[1]!.toLowerCase())) return undefined
  const rest = scheme === null ? entry : entry.slice(scheme[0].length)
  const at = rest.lastIndexOf('@')
  const hostPort = rest.slice(at + 1)
  if (hostPort === '') return undefined
  try {
    if (new URL(`nats://${hostPort}`).hostname === '') return undefined
  } catch {
    return undefined
  }
  const server = `${scheme === null ? '' : scheme[0]}${hostPort}`
  if (at < 0) return { server, auth: undefined }
  const userinfo = rest.slice(0, at)
  const colon = userinfo.indexOf(':')
  // `@host` and `:password@host`: no user name or token to log in with.
  if (userinfo === '' || colon === 0) return undefined
  try {
    const auth: NatsAuth =
      colon < 0 ? { token: decodeURIComponent(userinfo) } : { user: decodeURIComponent(userinfo.slice(0, colon)), pass: decodeURIComponent(userinfo.slice(colon + 1)) }
    return { server, auth }
  } catch {
    return { server, auth: 'undecodable' }
  }
}

/**
 * Server `i` of the list as a message about a NATS_URL it cannot take may quote it. When the value has an `@` anywhere,
 * everything after the server's scheme is masked: a password holding an unencoded `,` or `@` cuts the list anywhere
 * (`nats://u:a,b@h` is read as `nats://u:a` and `b@h`, `nats://u:se@cret,more@h` as `nats://u:se@cret` and
 * `more@h`), and no piece can be told to be a host rather than part of a password. A value of one server is masked up
 * to its last `@` (redactUrl); without an `@`, no server carries credentials, and the server is quoted whole.
 */
function quoted(entries: readonly string[], i: number): string {
  const entry = entries[i]!
  // One server: its credentials end at its last `@`, whatever they hold.
  if (entries.length === 1) return redactUrl(entry)
  if (entries.some((e) => e.includes('@'))) return `${/^[a-z][a-z0-9+.-]*:\/\//i.exec(entry)?.[0] ?? ''}***`
  return entry
}
