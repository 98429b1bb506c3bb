// The TLS profile of every context we serve: Mozilla's "intermediate" configuration
// (https://wiki.mozilla.org/Security/Server_Side_TLS), without the DHE suites:
// TLS 1.2 with ECDHE key exchange and AEAD ciphers only, and TLS 1.3.
import { constants } from 'node:crypto';
import { createSecureContext } from 'node:tls';

const TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
];
// TLS 1.3 without the CCM suites (OpenSSL's default set).
const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

/**
 * Key exchange groups in order of preference: the hybrid post-quantum group first
 * where the OpenSSL in use offers it (3.5+), then X25519 and P-256.
 */
function groups(): string {
  const candidates = ['X25519MLKEM768:X25519:P-256', 'X25519:P-256'];
  for (const candidate of candidates) {
    try {
      createSecureContext({ ecdhCurve: candidate });
      return candidate;
    } catch {
      // this OpenSSL does not know one of the groups: try without it
    }
  }
  return 'auto';
}

export interface TlsProfile {
  minVersion: 'TLSv1.2';
  ciphers: string;
  ecdhCurve: string;
  /** OpenSSL options: client-initiated TLS 1.2 renegotiation refused (a CPU cost a client sets; TLS 1.3 has none). */
  secureOptions: number;
}

export const TLS_PROFILE: TlsProfile = Object.freeze({
  minVersion: 'TLSv1.2',
  ciphers: [...TLS13_SUITES, ...TLS12_SUITES].join(':'),
  ecdhCurve: groups(),
  secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
});
