import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createKdf } from '../../app/kdf/kdf.js';
import {
  decryptMetadata,
  deriveKeys,
  encryptMetadata,
  generateDataKey,
  generateDeleteToken,
  hashDeleteToken,
  scryptSalt,
  unwrapDataKey,
  wrapDataKey,
} from '../../app/crypto/keys.js';
import { derivePayloadKey } from '../../app/crypto/stream.js';
import { expectIntegrityFailure } from '../helpers/integrity.js';

interface KeyVectors {
  kdf: { passphrase: string; secret: string; costLog2: number; scryptSaltHex: string; lookupId: string; kekHex: string };
  wrap: { dataKeyHex: string; kekHex: string; lookupId: string; nonceHex: string; wrappedHex: string };
  metadata: {
    dataKeyHex: string;
    blobId: string;
    metadata: { filename: string; mimeType: string; sha256: string };
    nonceHex: string;
    metadataKeyHex: string;
    sealedHex: string;
  };
  deleteToken: { token: string; hashHex: string };
}

const vectors = JSON.parse(readFileSync(new URL('../vectors/keys.json', import.meta.url), 'utf8')) as KeyVectors;
const hex = (value: string) => Buffer.from(value, 'hex');
const COST = 10; // the lowest accepted cost keeps the suite fast; the format is the same at any N

describe('the key vectors', () => {
  it('derives the committed lookup id and KEK from the vector passphrase and secret', async () => {
    const { passphrase, secret, costLog2 } = vectors.kdf;
    expect(scryptSalt(secret).toString('hex')).toBe(vectors.kdf.scryptSaltHex);
    const keys = await deriveKeys({ passphrase, secret, costLog2 });
    expect(keys.lookupId).toBe(vectors.kdf.lookupId);
    expect(keys.kek.toString('hex')).toBe(vectors.kdf.kekHex);
    const viaKdf = await createKdf({ secret: Buffer.from(secret, 'utf8'), costLog2 }).derive(passphrase, {
      client: '192.0.2.1',
      aggregate: '192.0.2.0/24',
    });
    expect(viaKdf).toEqual(keys);
  });

  it('wraps the vector data key to the committed bytes and unwraps it again', () => {
    const { dataKeyHex, kekHex, lookupId, nonceHex, wrappedHex } = vectors.wrap;
    const wrapped = wrapDataKey({ dataKey: hex(dataKeyHex), kek: hex(kekHex), lookupId, nonce: hex(nonceHex) });
    expect(wrapped.toString('hex')).toBe(wrappedHex);
    expect(wrapped).toHaveLength(61);
    expect(unwrapDataKey({ wrapped, kek: hex(kekHex), lookupId }).toString('hex')).toBe(dataKeyHex);
  });

  it('opens the committed version 1 (unpadded) metadata, which the sealer no longer writes', () => {
    const { dataKeyHex, blobId, metadata, nonceHex, sealedHex } = vectors.metadata;
    const sealed = hex(sealedHex);
    expect(sealed[0]).toBe(1);
    expect(decryptMetadata({ dataKey: hex(dataKeyHex), blobId, sealed })).toEqual(metadata);
    // Today's sealer writes version 2, padded, for the same input.
    const resealed = encryptMetadata({ dataKey: hex(dataKeyHex), blobId, metadata, nonce: hex(nonceHex) });
    expect(resealed[0]).toBe(2);
    expect(resealed).toHaveLength(1053);
    expect(decryptMetadata({ dataKey: hex(dataKeyHex), blobId, sealed: resealed })).toEqual(metadata);
  });

  it('hashes the vector delete token to the committed hex', () => {
    expect(hashDeleteToken(vectors.deleteToken.token)).toBe(vectors.deleteToken.hashHex);
  });
});

describe('passphrase-derived keys', () => {
  const secret = 'server-secret-for-tests-0123456789abcdef';

  it('cannot unwrap a data key with a wrong passphrase', async () => {
    const right = await deriveKeys({ passphrase: 'apple-banana-cherry', secret, costLog2: COST });
    const wrong = await deriveKeys({ passphrase: 'apple-banana-cherri', secret, costLog2: COST });
    const dataKey = generateDataKey();
    const wrapped = wrapDataKey({ dataKey, kek: right.kek, lookupId: right.lookupId });

    expect(wrong.lookupId).not.toBe(right.lookupId);
    expectIntegrityFailure(() => unwrapDataKey({ wrapped, kek: wrong.kek, lookupId: right.lookupId }));
    expectIntegrityFailure(() => unwrapDataKey({ wrapped, kek: wrong.kek, lookupId: wrong.lookupId }));
    expect(unwrapDataKey({ wrapped, kek: right.kek, lookupId: right.lookupId }).equals(dataKey)).toBe(true);
  });

  it('gives the same passphrase a different lookup id and KEK under another server secret', async () => {
    const passphrase = 'apple-banana-cherry';
    const here = await deriveKeys({ passphrase, secret, costLog2: COST });
    const elsewhere = await deriveKeys({ passphrase, secret: `${secret}!`, costLog2: COST });
    const wrapped = wrapDataKey({ dataKey: generateDataKey(), kek: here.kek, lookupId: here.lookupId });

    expect(elsewhere.lookupId).not.toBe(here.lookupId);
    expectIntegrityFailure(() => unwrapDataKey({ wrapped, kek: elsewhere.kek, lookupId: here.lookupId }));
  });

  it('keeps the lookup id and the KEK independent of each other', async () => {
    const keys = await deriveKeys({ passphrase: 'apple-banana-cherry', secret, costLog2: COST });
    expect(keys.lookupId).toMatch(/^[0-9a-f]{64}$/);
    expect(keys.kek).toHaveLength(32);
    expect(keys.kek.toString('hex')).not.toBe(keys.lookupId);
  });

  it('does not open a wrapped key moved to another record', () => {
    const kek = generateDataKey();
    const wrapped = wrapDataKey({ dataKey: generateDataKey(), kek, lookupId: 'a'.repeat(64) });
    expectIntegrityFailure(() => unwrapDataKey({ wrapped, kek, lookupId: 'b'.repeat(64) }));
  });

  it('refuses a damaged or truncated wrapped key', () => {
    const kek = generateDataKey();
    const lookupId = 'c'.repeat(64);
    const wrapped = wrapDataKey({ dataKey: generateDataKey(), kek, lookupId });
    for (const at of [0, 5, 20, 60]) {
      const damaged = Buffer.from(wrapped);
      damaged[at] = damaged[at]! ^ 0x01;
      expectIntegrityFailure(() => unwrapDataKey({ wrapped: damaged, kek, lookupId }));
    }
    expectIntegrityFailure(() => unwrapDataKey({ wrapped: wrapped.subarray(0, 20), kek, lookupId }));
  });

  it('accepts scrypt costs above the default memory cap', async () => {
    // 2^15 needs 32 MiB, which Node's default maxmem refuses.
    const keys = await deriveKeys({ passphrase: 'apple-banana-cherry', secret, costLog2: 15 });
    expect(keys.lookupId).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a cost outside 2^10..2^20 and an empty passphrase', async () => {
    await expect(deriveKeys({ passphrase: 'apple', secret, costLog2: 9 })).rejects.toThrow(RangeError);
    await expect(deriveKeys({ passphrase: 'apple', secret, costLog2: 21 })).rejects.toThrow(RangeError);
    await expect(deriveKeys({ passphrase: '', secret, costLog2: COST })).rejects.toThrow(RangeError);
  });
});

describe('file metadata', () => {
  const dataKey = generateDataKey();
  const metadata = { filename: 'notes ✓.txt', mimeType: 'text/plain', sha256: 'ab'.repeat(32) };

  it('round-trips with a fresh nonce each time', () => {
    const a = encryptMetadata({ dataKey, blobId: 'blob-1', metadata });
    const b = encryptMetadata({ dataKey, blobId: 'blob-1', metadata });
    expect(a.equals(b)).toBe(false);
    expect(decryptMetadata({ dataKey, blobId: 'blob-1', sealed: a })).toEqual(metadata);
    expect(a.includes(Buffer.from('notes'))).toBe(false);
  });

  it('does not open under another blob id, another data key or after tampering', () => {
    const sealed = encryptMetadata({ dataKey, blobId: 'blob-1', metadata });
    const tampered = Buffer.from(sealed);
    tampered[20] = tampered[20]! ^ 0x01;
    for (const action of [
      () => decryptMetadata({ dataKey, blobId: 'blob-2', sealed }),
      () => decryptMetadata({ dataKey: generateDataKey(), blobId: 'blob-1', sealed }),
      () => decryptMetadata({ dataKey, blobId: 'blob-1', sealed: tampered }),
    ]) {
      expectIntegrityFailure(action, { reason: 'metadata' });
    }
  });

  it('uses a key of its own, not the payload key', () => {
    const metadataKey = hex(vectors.metadata.metadataKeyHex);
    const payloadKey = derivePayloadKey({
      dataKey: hex(vectors.metadata.dataKeyHex),
      blobId: vectors.metadata.blobId,
      salt: Buffer.alloc(0),
    });
    expect(metadataKey.equals(payloadKey)).toBe(false);
  });
});

describe('delete tokens and random keys', () => {
  it('generates 256-bit base64url delete tokens and distinct data keys', () => {
    const token = generateDeleteToken();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(generateDeleteToken()).not.toBe(token);
    expect(generateDataKey()).toHaveLength(32);
    expect(generateDataKey().equals(generateDataKey())).toBe(false);
  });
});
