import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)

/** PEM file paths of a throw-away PKI made by makeTestPki. */
export interface TestPki {
  /** The CA that signed `server` and `client`. */
  readonly ca: string
  /** A server certificate for 127.0.0.1 and localhost (subjectAltName), and its key. */
  readonly server: { readonly cert: string; readonly key: string }
  /** A client certificate (extendedKeyUsage clientAuth), and its key. */
  readonly client: { readonly cert: string; readonly key: string }
  /** A CA that signed nothing here: trusting it instead of `ca` must fail verification. */
  readonly otherCa: string
}

async function openssl(args: string[]): Promise<void> {
  try {
    await execFileP('openssl', args)
  } catch (err) {
    const e = err as Error & { code?: string; stderr?: string }
    if (e.code === 'ENOENT') throw new Error('openssl is not installed (apt-get install openssl)', { cause: err })
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`, { cause: err })
  }
}

/**
 * Generates, with the real `openssl`, a CA, a server and a client certificate signed by it, and an unrelated CA,
 * all into `dir` (P-256 keys, valid for two days). Made at test time so no key is ever committed.
 */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const p = (name: string) => join(dir, name)
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const makeCa = (name: string, cn: string) =>
    openssl(['req', '-x509', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.pem`), '-days', '2', '-subj', `/CN=${cn}`])
  await Promise.all([makeCa('ca', 'Rateflow test CA'), makeCa('other-ca', 'Rateflow unrelated CA')])
  const leaf = async (name: string, cn: string, ext: string) => {
    writeFileSync(p(`${name}.ext`), ext)
    await openssl(['req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`])
    await openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-out', p(`${name}.pem`), '-days', '2', '-extfile', p(`${name}.ext`)])
  }
  await leaf('server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  await leaf('client', 'rateflow-test-client', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n')
  return {
    ca: p('ca.pem'),
    server: { cert: p('server.pem'), key: p('server.key') },
    client: { cert: p('client.pem'), key: p('client.key') },
    otherCa: p('other-ca.pem'),
  }
}
