import { randomBytes } from 'node:crypto';

/**
 * A blob id names a blob in its store and nothing else: 24 random bytes, base64url (32 characters).
 * It carries no secret (the key material is in Redis, wrapped), so it may appear in job data.
 */
export const BLOB_ID_PATTERN = /^[A-Za-z0-9_-]{32}$/;

export function newBlobId(): string {
  return randomBytes(24).toString('base64url');
}

export function isBlobId(value: string): boolean {
  return BLOB_ID_PATTERN.test(value);
}
