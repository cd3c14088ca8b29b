/**
 * Ranged decryption (docs/FORMAT.md, "Ranges"): which ciphertext bytes hold plaintext bytes
 * start..end, and a Transform that opens just those chunks and emits exactly those bytes. The header
 * is read apart (bytes 0..41: it is every chunk's associated data and holds the salt); the chunks are
 * located by the plaintext size, so the stream knows which one is the file's final chunk.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { integrityCheckFailed, type IntegrityFailure } from './crypto.errors.js';
import {
  CHUNK_SIZE,
  HEADER_LENGTH,
  SALT_LENGTH,
  SEALED_CHUNK,
  TAG_LENGTH,
  derivePayloadKey,
  headerIsSupported,
  openChunk,
  type StreamKeyOptions,
} from './stream.js';

export interface RangePlan {
  /** The file's plaintext size the plan was made for (the record's size). */
  plaintextSize: number;
  /** First and last plaintext byte to send, inclusive; `end` is already clamped to the last byte. */
  start: number;
  end: number;
  /** end - start + 1: the Content-Length of the 206 answer. */
  length: number;
  /** The chunk holding `start`. */
  firstChunk: number;
  /** The chunk holding `end`. */
  lastChunk: number;
  /** The file's final chunk (the one sealed with the last flag); lastChunk ≤ finalChunk. */
  finalChunk: number;
  /** Plaintext bytes to drop from the front of the first chunk: start - firstChunk · 65536. */
  skip: number;
  /**
   * Blob offsets of chunks firstChunk..lastChunk, both inclusive (like an HTTP or S3 Range and
   * fs.createReadStream's `end`). Read the 42-byte header (offsets 0..41) besides.
   */
  ciphertextStart: number;
  ciphertextEnd: number;
}

/** Offset of chunk `index` in the blob. */
const chunkOffset = (index: number) => HEADER_LENGTH + index * SEALED_CHUNK;

/** Sealed length of chunk `index` in a file of `size` plaintext bytes whose final chunk is `finalChunk`. */
const sealedLength = (index: number, size: number, finalChunk: number) =>
  index < finalChunk ? SEALED_CHUNK : size - index * CHUNK_SIZE + TAG_LENGTH;

const isOffset = (value: number) => Number.isSafeInteger(value) && value >= 0;

/**
 * Plans bytes `start`..`end` (inclusive; `end` omitted for `bytes=N-`, clamped to the last byte as RFC
 * 9110 asks) of a file of `plaintextSize` bytes. Returns null when no byte can be served: an empty
 * file, a start at or past the end, or an end before the start; the caller answers 416 with an
 * unsatisfied Content-Range (RFC 9110 §14.4). Throws RangeError for inputs that are not non-negative
 * integers (a Range parser never produces them).
 */
export function planRange(options: { plaintextSize: number; start: number; end?: number }): RangePlan | null {
  const { plaintextSize: size, start } = options;
  if (!isOffset(size)) throw new RangeError('plaintextSize must be a non-negative integer');
  if (!isOffset(start) || (options.end !== undefined && !isOffset(options.end))) {
    throw new RangeError('start and end must be non-negative integers');
  }
  if (start >= size) return null;
  const end = Math.min(options.end ?? size - 1, size - 1);
  if (end < start) return null;
  const firstChunk = Math.floor(start / CHUNK_SIZE);
  const lastChunk = Math.floor(end / CHUNK_SIZE);
  const finalChunk = Math.ceil(size / CHUNK_SIZE) - 1;
  return {
    plaintextSize: size,
    start,
    end,
    length: end - start + 1,
    firstChunk,
    lastChunk,
    finalChunk,
    skip: start - firstChunk * CHUNK_SIZE,
    ciphertextStart: chunkOffset(firstChunk),
    ciphertextEnd: chunkOffset(lastChunk) + sealedLength(lastChunk, size, finalChunk) - 1,
  };
}

function samePlan(a: RangePlan, b: RangePlan | null): boolean {
  if (b === null) return false;
  return (Object.keys(b) as (keyof RangePlan)[]).every((field) => a[field] === b[field]);
}

/**
 * Decrypts a planned range. Input: exactly the blob bytes plan.ciphertextStart..plan.ciphertextEnd.
 * Output: exactly plan.length plaintext bytes, each from a chunk whose tag verified at its position
 * (counter and final flag). Fails with INTEGRITY_CHECK_FAILED (bytesReleased = bytes already emitted)
 * on a bad header (`bad_header`), a chunk that does not verify (`chunk_auth`), input that ends early
 * (`truncated`) or runs past the plan (`trailing_data`). Holds at most one sealed chunk of its own.
 */
export function createRangeDecryptStream(options: StreamKeyOptions & { header: Buffer; plan: RangePlan }): Transform {
  const { plan } = options;
  // Programming errors surface now, as a throw; a throw inside transform() would not.
  derivePayloadKey({ ...options, salt: Buffer.alloc(SALT_LENGTH) });
  if (!samePlan(plan, planRange(plan))) throw new RangeError('plan must come from planRange');

  const header = Buffer.from(options.header); // a copy: the caller's buffer may be reused
  const key = headerIsSupported(header) ? derivePayloadKey({ ...options, salt: header.subarray(10) }) : undefined;
  const pending = Buffer.allocUnsafe(SEALED_CHUNK);
  let filled = 0;
  let index = plan.firstChunk;
  let expected = sealedLength(index, plan.plaintextSize, plan.finalChunk);
  let released = 0;
  let failed = false;

  const fail = (reason: IntegrityFailure, cause?: unknown) => {
    failed = true;
    return integrityCheckFailed(reason, released, cause);
  };

  /** Opens the chunk at `index`; pushes only its bytes inside the range, and only once its tag verified. */
  const release = (stream: Transform, sealed: Buffer): Error | undefined => {
    let plaintext: Buffer;
    try {
      plaintext = openChunk({ key: key!, header, index, last: index === plan.finalChunk, sealed });
    } catch (error) {
      return fail('chunk_auth', error);
    }
    const from = index === plan.firstChunk ? plan.skip : 0;
    const to = index === plan.lastChunk ? plan.end - index * CHUNK_SIZE + 1 : plaintext.length;
    stream.push(plaintext.subarray(from, to)); // never empty: every planned chunk holds a byte of the range
    released += to - from;
    index += 1;
    expected = sealedLength(index, plan.plaintextSize, plan.finalChunk);
    return undefined;
  };

  return new Transform({
    highWaterMark: CHUNK_SIZE,
    transform(input: Buffer, _encoding, callback: TransformCallback) {
      if (failed) return callback();
      if (key === undefined) return callback(fail('bad_header'));
      let offset = 0;
      while (offset < input.length) {
        if (index > plan.lastChunk) return callback(fail('trailing_data'));
        const length = expected; // release() moves `expected` on to the next chunk
        if (filled === 0 && input.length - offset >= length) {
          // The whole chunk is in this input: open it in place, no copy.
          const error = release(this, input.subarray(offset, offset + length));
          if (error) return callback(error);
          offset += length;
          continue;
        }
        const copied = input.copy(pending, filled, offset, offset + length - filled);
        filled += copied;
        offset += copied;
        if (filled === length) {
          filled = 0;
          const error = release(this, pending.subarray(0, length));
          if (error) return callback(error);
        }
      }
      callback();
    },
    flush(callback: TransformCallback) {
      if (failed) return callback();
      if (key === undefined) return callback(fail('bad_header'));
      if (index <= plan.lastChunk) return callback(fail('truncated'));
      callback();
    },
  });
}
