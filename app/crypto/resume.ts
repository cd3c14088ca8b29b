/**
 * Resume capabilities (docs/FORMAT.md, "Resume records"). A 200 download carries an ETag holding 256
 * random bits; only the client keeps it. HKDF over it and the server secret gives a resume id (names
 * the resume record in Redis) and a KEK that wraps the data key for that record alone, bound to the
 * resume id and the blob id. The record's own wrapped key is still destroyed at burn: finishing one
 * download needs the capability, and nothing else opens the resume record.
 */
import { createHash, randomBytes } from 'node:crypto';
import { integrityCheckFailed } from './crypto.errors.js';
import { NONCE_LENGTH, hkdf, open, seal } from './envelope.js';
import { DATA_KEY_LENGTH } from './stream.js';

export const RESUME_TOKEN_LENGTH = 32;
/** Names the derivation; a later one gets another prefix, so old ETags are refused, not misread. */
const ETAG_PREFIX = 'r1.';
/** base64url of 32 bytes: 43 characters, no padding; all of them are valid in an entity-tag. */
const ETAG_PATTERN = /^"r1\.([A-Za-z0-9_-]{43})"$/;
const SALT_PREFIX = 'cinderbox resume v1';
const RESUME_ID_INFO = 'cinderbox resume id v1';
const RESUME_KEK_INFO = 'cinderbox resume kek v1';
const WRAP_VERSION = 1;

export interface ResumeCapability {
  /** The strong ETag, quotes included: `"r1.<43 base64url characters>"`. Never log it. */
  etag: string;
  /** The 32 random bytes it carries. */
  token: Buffer;
}

interface ResumeKeys {
  /** 64 hex characters; names the resume record (like the lookup id names the file record). */
  resumeId: string;
  /** 32 bytes; wraps the data key inside the resume record. */
  kek: Buffer;
}

function capabilityFromToken(token: Buffer): ResumeCapability {
  return { etag: `"${ETAG_PREFIX}${token.toString('base64url')}"`, token: Buffer.from(token) };
}

/** A fresh capability for one 200 answer; `token` is injectable for tests and vectors. */
export function newResumeCapability(options: { token?: Buffer } = {}): ResumeCapability {
  const token = options.token ?? randomBytes(RESUME_TOKEN_LENGTH);
  if (token.length !== RESUME_TOKEN_LENGTH) throw new RangeError(`token must be ${RESUME_TOKEN_LENGTH} bytes`);
  return capabilityFromToken(token);
}

/**
 * The capability in an If-Range value, or null: a weak tag (`W/"…"`, which If-Range must not match),
 * a date, another format, or a non-canonical encoding. No KDF and no I/O, so it may run before any
 * limiter; surrounding blanks are ignored.
 */
export function parseResumeCapability(headerValue: string | undefined): ResumeCapability | null {
  if (typeof headerValue !== 'string') return null;
  const match = ETAG_PATTERN.exec(headerValue.trim());
  if (!match) return null;
  const encoded = match[1]!;
  const token = Buffer.from(encoded, 'base64url');
  // The 43rd character carries 2 spare bits; only the encoding we write is accepted, so one token has one ETag.
  if (token.length !== RESUME_TOKEN_LENGTH || token.toString('base64url') !== encoded) return null;
  return capabilityFromToken(token);
}

/** The HKDF salt: the secret hashed with a label of its own, apart from its other uses (scrypt salt, IP hashes). */
export function resumeSalt(secret: Buffer | string): Buffer {
  return createHash('sha256').update(SALT_PREFIX, 'utf8').update(secret).digest();
}

/** Cheap (two HKDFs): the token has 256 bits of entropy, so no slow KDF is needed. */
export function resumeKeys(options: { capability: ResumeCapability; secret: Buffer | string }): ResumeKeys {
  const { token } = options.capability;
  if (token.length !== RESUME_TOKEN_LENGTH) throw new RangeError(`token must be ${RESUME_TOKEN_LENGTH} bytes`);
  const salt = resumeSalt(options.secret);
  return { resumeId: hkdf(token, RESUME_ID_INFO, salt).toString('hex'), kek: hkdf(token, RESUME_KEK_INFO, salt) };
}

/** resume id (32 raw bytes, fixed length first so the concatenation is unambiguous) || blob id. */
function resumeContext(resumeId: string, blobId: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(resumeId)) throw new RangeError('resumeId must be 64 lowercase hex characters');
  if (blobId.length === 0) throw new RangeError('blobId must not be empty');
  return Buffer.concat([Buffer.from(resumeId, 'hex'), Buffer.from(blobId, 'utf8')]);
}

/** Wraps the data key for one resume record; 61 bytes. It opens only under this resume id and blob id. */
export function wrapResumeKey(options: { dataKey: Buffer; kek: Buffer; resumeId: string; blobId: string; nonce?: Buffer }): Buffer {
  if (options.dataKey.length !== DATA_KEY_LENGTH) throw new RangeError(`dataKey must be ${DATA_KEY_LENGTH} bytes`);
  return seal({
    version: WRAP_VERSION,
    key: options.kek,
    plaintext: options.dataKey,
    context: resumeContext(options.resumeId, options.blobId),
    nonce: options.nonce ?? randomBytes(NONCE_LENGTH),
  });
}

/** Throws INTEGRITY_CHECK_FAILED (reason key_unwrap) for another capability, resume id or blob id, or a damaged record. */
export function unwrapResumeKey(options: { wrapped: Buffer; kek: Buffer; resumeId: string; blobId: string }): Buffer {
  const dataKey = open({
    versions: [WRAP_VERSION],
    key: options.kek,
    sealed: options.wrapped,
    context: resumeContext(options.resumeId, options.blobId),
    reason: 'key_unwrap',
  });
  if (dataKey.length !== DATA_KEY_LENGTH) throw integrityCheckFailed('key_unwrap');
  return dataKey;
}
