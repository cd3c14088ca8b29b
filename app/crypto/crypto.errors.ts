/**
 * The failures of the crypto layer, as plain Errors that know nothing of HTTP. The error handler
 * (app/http/error-handler.ts) maps each `code` to a status and a client message; nothing here holds
 * a key, a passphrase or plaintext, so these errors are safe to log whole.
 */

/**
 * Why a decryption failed. For logs and tests only: the client always gets the same generic
 * INTEGRITY_CHECK_FAILED message, so a tamperer learns nothing about which check tripped.
 */
export type IntegrityFailure =
  | 'empty_input' // no bytes at all
  | 'bad_header' // shorter than the header, or wrong magic, version, algorithm or chunk size
  | 'truncated' // a header and no chunk; or a ranged read that ended before its last planned chunk
  | 'short_chunk' // the last chunk is shorter than a tag
  | 'empty_final_chunk' // an empty final chunk after data chunks (never written by the encryptor)
  | 'chunk_auth' // a tag did not verify: tampering, reordering, truncation at a boundary, trailing data, wrong key or blob id
  | 'trailing_data' // a ranged read received more bytes than its plan (the caller read past the planned range)
  | 'key_unwrap' // a wrapped data key (record or resume) did not verify under this KEK and context
  | 'metadata'; // the sealed metadata did not verify, or its padding or JSON is not what a writer produces

export const INTEGRITY_CHECK_FAILED = 'INTEGRITY_CHECK_FAILED';
const KDF_BUSY = 'KDF_BUSY';

/**
 * Stored data failed authentication. `bytesReleased` counts the plaintext already handed downstream
 * (only ever bytes whose chunk verified): the HTTP layer answers 500 while it is 0 and must abort the
 * connection once it is not, so a client never receives a complete-looking corrupted file.
 */
export class IntegrityCheckFailedError extends Error {
  readonly code = INTEGRITY_CHECK_FAILED;
  readonly reason: IntegrityFailure;
  readonly bytesReleased: number;

  constructor(options: { reason: IntegrityFailure; bytesReleased?: number; cause?: unknown }) {
    // The reason is a constant from the list above: safe in a log, never shown to a client.
    super(`integrity check failed: ${options.reason}`, { cause: options.cause });
    this.name = 'IntegrityCheckFailedError';
    this.reason = options.reason;
    this.bytesReleased = options.bytesReleased ?? 0;
  }

  /** True once any plaintext has gone downstream; from then on the only safe answer is an abort. */
  get afterFirstChunk(): boolean {
    return this.bytesReleased > 0;
  }
}

export const integrityCheckFailed = (reason: IntegrityFailure, bytesReleased = 0, cause?: unknown) =>
  new IntegrityCheckFailedError({ reason, bytesReleased, cause });

export function isIntegrityCheckFailed(error: unknown): error is IntegrityCheckFailedError {
  return error instanceof IntegrityCheckFailedError;
}

/**
 * The KDF queue is full: refused at once instead of piling up. An overload, not a fault, so it carries
 * no cause and its stack says nothing useful; `retryAfterSeconds` is the hint for the client.
 */
class KdfBusyError extends Error {
  readonly code = KDF_BUSY;
  readonly retryAfterSeconds: number;

  constructor(options: { retryAfterSeconds?: number } = {}) {
    super('the KDF queue is full');
    this.name = 'KdfBusyError';
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
  }
}

export const kdfBusy = () => new KdfBusyError();

export function isKdfBusy(error: unknown): error is KdfBusyError {
  return error instanceof KdfBusyError;
}
