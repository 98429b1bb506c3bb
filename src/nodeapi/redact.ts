// /about/config: the effective configuration without what would let someone act
// as the node (ACME EAB key) or read a program's secrets (its environment).

const REDACTED = '[redacted]';
/** Keys whose values are secrets wherever they appear. */
const SECRET_KEY = /(secret|token|password|hmac|credential|api_?key)/i;

export function redactConfig(value: unknown, key = ''): unknown {
  if (key === 'env' && value && typeof value === 'object' && !Array.isArray(value)) {
    return Object.fromEntries(Object.keys(value).map((name) => [name, REDACTED]));
  }
  if (SECRET_KEY.test(key) && value !== '' && value !== null && typeof value !== 'object') return REDACTED;
  // A URL may carry credentials (https://user:password@host/): keep the user, hide the password.
  if (typeof value === 'string' && value.includes('@')) return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*):[^/@]*@/i, `$1:${REDACTED}@`);
  if (Array.isArray(value)) return value.map((item) => redactConfig(item));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactConfig(v, k)]));
  }
  return value;
}
