/**
 * `url` as it may be shown in a message or a log line: the password of its `user:password@` part, or the whole of a
 * part without a colon (a NATS token, `nats://token@host`), is `***`; the user name is kept. So NATS_URL
 * `nats://rfuser:S3cret@127.0.0.1:4222` shows as `nats://rfuser:***@127.0.0.1:4222`, and a token URL as
 * `nats://***@127.0.0.1:4222`.
 *
 * Works on text that is no valid URL too, since that is what the messages about a bad value quote: the credentials are
 * everything between `//` (or the start, for a `user:pass@host:port` with no scheme) and the last `@`, so a password
 * holding `/`, `#`, `@` or `?` that was not percent-encoded is masked whole (the URL parser would end the host before
 * it, and quote the password's start as the port). An `@` in a path masks the host before it too: more is hidden, never
 * less. Comma-separated lists (NATS_URL) are masked server by server: a list is cut at the commas before a `scheme://`,
 * so a comma inside a password stays with its server; a list of servers without a scheme is cut at every comma.
 */
export function redactUrl(url: string): string {
  return url
    .split(/(?<=,)(?=\s*[a-z][a-z0-9+.-]*:\/\/)/i)
    .map((part) => (part.includes('//') ? maskFrom(part, part.indexOf('//') + 2) : part.split(',').map((server) => maskFrom(server, 0)).join(',')))
    .join('')
}

/** `text` with the credentials between `start` and its last `@` masked (unchanged when no `@` follows `start`). */
function maskFrom(text: string, start: number): string {
  const at = text.lastIndexOf('@')
  if (at < start) return text
  const userinfo = text.slice(start, at)
  const colon = userinfo.indexOf(':')
  return `${text.slice(0, start)}${colon >= 0 ? `${userinfo.slice(0, colon)}:***` : '***'}${text.slice(at)}`
}
