/**
 * The small-secret envelope of docs/FORMAT.md: version(1) || nonce(12) || AES-256-GCM ciphertext ||
 * tag(16), with the version byte prefixed to the associated data. Used for wrapped keys (record and
 * resume) and for the sealed metadata; the version byte says how to read the plaintext.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { integrityCheckFailed, type IntegrityFailure } from './crypto.errors.js';

export const KEY_LENGTH = 32;
export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
/** version + nonce + tag: the size of an envelope around an empty plaintext. */
export const ENVELOPE_OVERHEAD = 1 + NONCE_LENGTH + TAG_LENGTH;

/** HKDF-SHA256 with 32 bytes of output; an empty salt is RFC 5869's default. */
export function hkdf(ikm: Buffer, info: string | Buffer, salt: Buffer = Buffer.alloc(0)): Buffer {
  const infoBytes = typeof info === 'string' ? Buffer.from(info, 'utf8') : info;
  return Buffer.from(hkdfSync('sha256', ikm, salt, infoBytes, KEY_LENGTH));
}

export function seal(options: { version: number; key: Buffer; plaintext: Buffer; context: Buffer; nonce: Buffer }): Buffer {
  if (options.nonce.length !== NONCE_LENGTH) throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes`);
  const version = Buffer.from([options.version]);
  const cipher = createCipheriv('aes-256-gcm', options.key, options.nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(Buffer.concat([version, options.context]));
  return Buffer.concat([version, options.nonce, cipher.update(options.plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The version byte of an envelope, or undefined when it is too short to be one. */
function envelopeVersion(sealed: Buffer): number | undefined {
  return sealed.length >= ENVELOPE_OVERHEAD ? sealed[0] : undefined;
}

/** Opens an envelope of one of `versions`; any other version, a short input or a bad tag fails as `reason`. */
export function open(options: {
  versions: readonly number[];
  key: Buffer;
  sealed: Buffer;
  context: Buffer;
  reason: IntegrityFailure;
}): Buffer {
  const { sealed, reason } = options;
  const version = envelopeVersion(sealed);
  if (version === undefined || !options.versions.includes(version)) throw integrityCheckFailed(reason);
  try {
    const decipher = createDecipheriv('aes-256-gcm', options.key, sealed.subarray(1, 1 + NONCE_LENGTH), {
      authTagLength: TAG_LENGTH,
    });
    decipher.setAAD(Buffer.concat([sealed.subarray(0, 1), options.context]));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
    const plaintext = decipher.update(sealed.subarray(1 + NONCE_LENGTH, sealed.length - TAG_LENGTH));
    return Buffer.concat([plaintext, decipher.final()]);
  } catch (error) {
    throw integrityCheckFailed(reason, 0, error);
  }
}
