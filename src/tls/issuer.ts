// The seam between the certificate manager and whatever signs certificates: the
// internal CA or ACME (acme-issuer.ts). An issuer only mints; storing, caching, locking,
// policy and backoff are the manager's job.

import type { PemPair } from './pair.js';

export interface Issuer {
  /** Also the storage folder name: <storage>/<name>/<host>/. */
  readonly name: string;
  /** A fresh certificate (leaf first, then any intermediates) and its private key for one host. */
  issue(host: string): Promise<PemPair>;
}
