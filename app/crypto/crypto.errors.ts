import { AppError } from '../http/errors.js';

/**
 * Why a decryption failed. For logs and tests only: the client always gets the same generic
 * INTEGRITY_CHECK_FAILED message, so a tamperer learns nothing about which check tripped.
 */
export type IntegrityFailure =
  | 'empty_input' // no bytes at all
  | 'bad_header' // shorter than the header, or wrong magic, version, algorithm or chunk size
  | 'truncated' // a header and no chunk
  | 'short_chunk' // the last chunk is shorter than a tag
  | 'empty_final_chunk' // an empty final chunk after data chunks (never written by the encryptor)
  | 'chunk_auth' // a tag did not verify: tampering, reordering, truncation at a boundary, trailing data, wrong key or blob id
  | 'key_unwrap' // the wrapped data key did not verify under this KEK and lookup id
  | 'metadata'; // the encrypted metadata did not verify or is not the expected JSON

/**
 * Stored data failed authentication. `bytesReleased` counts the plaintext already handed downstream
 * (always whole verified chunks): the HTTP layer answers 500 while it is 0 and must abort the
 * connection once it is not, so a client never receives a complete-looking corrupted file.
 */
export class IntegrityCheckFailedError extends AppError {
  readonly reason: IntegrityFailure;
  readonly bytesReleased: number;

  constructor(options: { reason: IntegrityFailure; bytesReleased?: number; cause?: unknown }) {
    super({
      code: 'INTEGRITY_CHECK_FAILED',
      status: 500,
      message: 'The stored file failed its integrity check.',
      cause: options.cause,
    });
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
 * The KDF queue is full. Same public code as any other overload (SPEC §3 has one 503 code); the
 * cause tells the logs it was the KDF limiter and not Redis or storage.
 */
export const kdfBusy = () =>
  new AppError({
    code: 'SERVICE_UNAVAILABLE',
    status: 503,
    message: 'The service is temporarily unavailable. Try again shortly.',
    headers: { 'Retry-After': '1' },
    cause: new Error('kdf_queue_full'),
  });
