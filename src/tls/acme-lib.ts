// acme-client, loaded on first use: it takes ~200 ms to import (axios, node-forge),
// which every CLI command and every worker process would otherwise pay.

import type acmeClient from 'acme-client';

export type AcmeLib = typeof acmeClient;

let loading: Promise<AcmeLib> | undefined;

export function acmeLib(): Promise<AcmeLib> {
  loading ??= import('acme-client').then((mod) => ((mod as { default?: AcmeLib }).default ?? (mod as unknown as AcmeLib)));
  return loading;
}
