// What a program did wrong in a response the node could not forward, from undici's
// error and how far the response had got. The words go into the 502's reason, the
// edge's warning line and the proxy's "program response cut" line, so an operator
// reads the program's fault instead of "program closed the connection".

import http from 'node:http';
import { UpstreamError } from '../common/index.js';

/** The faults a program's HTTP/1.1 response can have, as the node tells them apart. */
export type ProgramFault =
  /** The parser refused the response head (its own reason is in the message). */
  | 'invalid_response'
  /** The response head was larger than Node's header size limit. */
  | 'head_too_large'
  /** The head failed to parse once it had a Content-Length: a second one, one with Transfer-Encoding, or a bad line after it. */
  | 'conflicting_length'
  /** The body's bytes and the Content-Length did not agree at the end of the message. */
  | 'length_mismatch'
  /** The connection closed before the Content-Length's bytes had come. */
  | 'short_body'
  /** The connection closed in the middle of a chunked body. */
  | 'chunked_cut'
  /** The connection closed (or reset) with nothing more specific to say. */
  | 'closed';

/** A program's response the node could not forward. A 502 like every UpstreamError. */
export class ProgramResponseError extends UpstreamError {
  constructor(readonly fault: ProgramFault, message: string) {
    super(message);
  }
}

/** How far the response had got when undici failed it. */
export interface ResponseProgress {
  /** The response head was parsed (and handed to the forwarder). */
  headReceived: boolean;
  /** Body bytes still announced by its Content-Length, or -1 when it has none (chunked, close-delimited). */
  bodyLeft: number;
  /** The response's body is chunked. */
  chunked: boolean;
}

/** The parser's reason from an HTTPParserError message, "(...)" at its end; never the program's bytes. */
function parserReason(message: string): string | undefined {
  return /\(([^()]{1,120})\)$/.exec(message)?.[1];
}

/** The fault undici's error shows, or undefined when it is not the program's response that was wrong. */
export function programFault(error: Error & { code?: string }, progress: ResponseProgress): ProgramResponseError | undefined {
  if (error.code === 'UND_ERR_HEADERS_OVERFLOW') {
    return new ProgramResponseError('head_too_large', `program sent a response head larger than ${http.maxHeaderSize} bytes`);
  }
  if (error.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    // undici reports every parser error that comes after a Content-Length value as a
    // length mismatch (it checks the length first), so before the head was whole
    // this is llhttp refusing the head: "Duplicate Content-Length", "Content-Length
    // can't be present with Transfer-Encoding", or a malformed line after it.
    if (!progress.headReceived) {
      return new ProgramResponseError('conflicting_length', 'program sent a response head with conflicting Content-Length (more than one, or with Transfer-Encoding) or a malformed header after it');
    }
    return new ProgramResponseError('length_mismatch', 'program sent a body that does not match its Content-Length');
  }
  if (error.name === 'HTTPParserError') {
    const reason = parserReason(error.message);
    return new ProgramResponseError('invalid_response', `program sent an invalid HTTP response${reason ? ` (${reason})` : ''}`);
  }
  if (progress.headReceived && (error.code === 'UND_ERR_SOCKET' || error.code === 'ECONNRESET')) {
    if (progress.bodyLeft > 0) {
      return new ProgramResponseError('short_body', `program closed the connection ${progress.bodyLeft} bytes before the end of its Content-Length`);
    }
    if (progress.chunked) return new ProgramResponseError('chunked_cut', 'program closed the connection in the middle of a chunked body');
  }
  return undefined;
}
