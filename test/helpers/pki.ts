// A private CA and certificates made with `openssl` in a temp dir, for the TLS tests.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Pki { dir: string, ca: string, caKey: string }

function openssl (dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

export function makeCa (): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'fhg-pki-'))
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=fhg test CA'])
  return { dir, ca: join(dir, 'ca.pem'), caKey: join(dir, 'ca.key') }
}

/** A certificate signed by the CA: `name.pem` / `name.key`; `server` certificates hold 127.0.0.1 and localhost. */
export function issue (pki: Pki, name: string, cn: string, server: boolean): { cert: string, key: string } {
  const ext = join(pki.dir, `${name}.ext`)
  writeFileSync(ext, server ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n')
  openssl(pki.dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`])
  openssl(pki.dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext])
  return { cert: join(pki.dir, `${name}.pem`), key: join(pki.dir, `${name}.key`) }
}
