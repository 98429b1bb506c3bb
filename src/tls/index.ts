export type { CertInfo, CertificateResolver, IssuancePolicy } from './types.js';
