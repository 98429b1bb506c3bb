// Startup errors of the TLS component (bad CA files, unreadable or mismatched
// operator pairs). They stop the node with a message that names the file; they are
// never sent to clients, unlike common/errors.ts.

export class TlsSetupError extends Error {
  override readonly name = 'TlsSetupError';
}
