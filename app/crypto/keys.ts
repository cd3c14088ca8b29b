/**
 * The key hierarchy (docs/FORMAT.md): passphrase --scrypt(server secret)--> master --HKDF--> lookup id
 * and KEK; the KEK wraps each file's random data key; the data key encrypts the payload (stream.ts)
 * and the metadata. All functions are deterministic given their inputs; randomness is injectable.
 */
import { createHash, randomBytes } from 'node:crypto';
import { integrityCheckFailed } from './crypto.errors.js';
import { KEY_LENGTH, NONCE_LENGTH, hkdf, open, seal } from './envelope.js';
import { scrypt } from './scrypt.js';
import { DATA_KEY_LENGTH } from './stream.js';

// The metadata moved to its own module (version 2 padding); callers keep importing it from here.
export { decryptMetadata, encryptMetadata, type FileEntry, type FileMetadata } from './metadata.js';

/** log2 N. Measured in docs/FORMAT.md: 2^14 is ~29 ms here (node:crypto's ~39 ms), 2^15 twice that. */
export const DEFAULT_SCRYPT_COST_LOG2 = 14;
/** One scrypt per core on the 2-core host; the libuv pool (4 threads) keeps room for fs and dns. */
export const DEFAULT_KDF_CONCURRENCY = 2;
/** With 2 running at ~30 ms each, 256 waiting is ~4 s of work (a burst of 50 clients waits ~1 s); beyond that, 503 at once. */
export const DEFAULT_KDF_MAX_QUEUE = 256;
export const MIN_SCRYPT_COST_LOG2 = 10;
export const MAX_SCRYPT_COST_LOG2 = 20;

/** scrypt's block size (r); p is 1. */
export const SCRYPT_R = 8;
/** The envelope version of a wrapped data key (record or resume). */
const WRAP_VERSION = 1;
const SCRYPT_SALT_PREFIX = 'cinderbox scrypt v1';
const LOOKUP_INFO = 'cinderbox lookup id v1';
const KEK_INFO = 'cinderbox kek v1';

export interface DerivedKeys {
  /** 64 hex characters; names the Redis record. */
  lookupId: string;
  /** 32 bytes; wraps the data key. */
  kek: Buffer;
}

/** Hashing gives a fixed-length salt whatever the secret's encoding, and separates it from other uses. */
export function scryptSalt(secret: Buffer | string): Buffer {
  return createHash('sha256').update(SCRYPT_SALT_PREFIX, 'utf8').update(secret).digest();
}

function scryptAsync(passphrase: string, salt: Buffer, costLog2: number): Promise<Buffer> {
  if (!Number.isInteger(costLog2) || costLog2 < MIN_SCRYPT_COST_LOG2 || costLog2 > MAX_SCRYPT_COST_LOG2) {
    throw new RangeError(`scrypt cost must be log2 N in ${MIN_SCRYPT_COST_LOG2}..${MAX_SCRYPT_COST_LOG2}`);
  }
  return scrypt(passphrase, salt, { costLog2, r: SCRYPT_R, length: KEY_LENGTH });
}

/** The async scrypt runs on the libuv pool; call it through the KDF (app/kdf/kdf.ts) so the pool cannot be flooded. */
export async function deriveKeys(options: { passphrase: string; secret: Buffer | string; costLog2: number }): Promise<DerivedKeys> {
  return deriveWithSalt(options.passphrase, scryptSalt(options.secret), options.costLog2);
}

async function deriveWithSalt(passphrase: string, salt: Buffer, costLog2: number): Promise<DerivedKeys> {
  if (passphrase.length === 0) throw new RangeError('passphrase must not be empty');
  const master = await scryptAsync(passphrase, salt, costLog2);
  try {
    return { lookupId: hkdf(master, LOOKUP_INFO).toString('hex'), kek: hkdf(master, KEK_INFO) };
  } finally {
    master.fill(0);
  }
}

export function generateDataKey(): Buffer {
  return randomBytes(DATA_KEY_LENGTH);
}

function lookupIdBytes(lookupId: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(lookupId)) throw new RangeError('lookupId must be 64 lowercase hex characters');
  return Buffer.from(lookupId, 'hex');
}

/** The lookup id is associated data, so a wrapped key moved to another record does not open. 61 bytes. */
export function wrapDataKey(options: { dataKey: Buffer; kek: Buffer; lookupId: string; nonce?: Buffer }): Buffer {
  if (options.dataKey.length !== DATA_KEY_LENGTH) throw new RangeError(`dataKey must be ${DATA_KEY_LENGTH} bytes`);
  const nonce = options.nonce ?? randomBytes(NONCE_LENGTH);
  return seal({ version: WRAP_VERSION, key: options.kek, plaintext: options.dataKey, context: lookupIdBytes(options.lookupId), nonce });
}

/** Throws INTEGRITY_CHECK_FAILED (reason key_unwrap) for a wrong KEK, lookup id or a damaged record. */
export function unwrapDataKey(options: { wrapped: Buffer; kek: Buffer; lookupId: string }): Buffer {
  const dataKey = open({
    versions: [WRAP_VERSION],
    key: options.kek,
    sealed: options.wrapped,
    context: lookupIdBytes(options.lookupId),
    reason: 'key_unwrap',
  });
  if (dataKey.length !== DATA_KEY_LENGTH) throw integrityCheckFailed('key_unwrap');
  return dataKey;
}

export function generateDeleteToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Only this hash is stored; a token is 256 random bits, so a fast hash is enough. */
export function hashDeleteToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
