import { createCipheriv, createHash, randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runThrough } from '../helpers/stream-run.js';
import { isIntegrityCheckFailed, type IntegrityFailure } from '../../app/crypto/crypto.errors.js';
import {
  CHUNK_SIZE,
  HEADER_LENGTH,
  SEALED_CHUNK,
  TAG_LENGTH,
  ciphertextSize,
  createDecryptStream,
  createEncryptStream,
  derivePayloadKey,
  encodeHeader,
  plaintextSize,
} from '../../app/crypto/stream.js';

interface StreamVectors {
  dataKeyHex: string;
  blobId: string;
  saltHex: string;
  cases: {
    name: string;
    plaintextLength: number;
    plaintextHex?: string;
    headerHex: string;
    payloadKeyHex: string;
    ciphertextLength: number;
    ciphertextSha256: string;
    ciphertextHex?: string;
    ciphertextFirst128Hex?: string;
    ciphertextLast64Hex?: string;
  }[];
}

const vectors = JSON.parse(readFileSync(new URL('../vectors/stream.json', import.meta.url), 'utf8')) as StreamVectors;

const SEALED = CHUNK_SIZE + TAG_LENGTH;
const dataKey = randomBytes(32);
const blobId = 'blob-under-test';
const salt = randomBytes(32);
const pattern = (length: number) => Buffer.from(Array.from({ length }, (_, i) => i % 251));

/** Streams `input` through `transform` in `pieceSize` writes; keeps what came out even when it fails. */
const run = runThrough;

async function encrypt(plaintext: Buffer, pieceSize?: number, key = dataKey, id = blobId) {
  const { output, error } = await run(createEncryptStream({ dataKey: key, blobId: id, salt }), plaintext, pieceSize);
  if (error) throw error;
  return output;
}

/** Seals one chunk by hand, to build streams the encryptor never writes. */
function sealChunk(header: Buffer, index: number, last: boolean, plaintext: Buffer): Buffer {
  const key = derivePayloadKey({ dataKey, blobId, salt: header.subarray(10) });
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(index, 5, 6);
  nonce[11] = last ? 1 : 0;
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(header);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** Ciphertext chunk i (0-based) of an encrypted stream. */
const chunkAt = (ciphertext: Buffer, i: number) => ciphertext.subarray(HEADER_LENGTH + i * SEALED, HEADER_LENGTH + (i + 1) * SEALED);

/**
 * Decrypts in several piece sizes and checks every one fails with INTEGRITY_CHECK_FAILED for `reason`,
 * having released exactly `releasedChunks` whole verified chunks of `plaintext`.
 */
async function expectFailure(
  ciphertext: Buffer,
  expected: { reason: IntegrityFailure; releasedChunks: number; plaintext?: Buffer },
  options: { key?: Buffer; id?: string } = {},
) {
  for (const pieceSize of [Math.max(1, ciphertext.length), 7, 100000]) {
    const decryptor = createDecryptStream({ dataKey: options.key ?? dataKey, blobId: options.id ?? blobId });
    const { output, error } = await run(decryptor, ciphertext, pieceSize);
    expect(isIntegrityCheckFailed(error), `piece size ${pieceSize}`).toBe(true);
    if (!isIntegrityCheckFailed(error)) return;
    expect(error.code).toBe('INTEGRITY_CHECK_FAILED');
    expect(error.reason).toBe(expected.reason);
    expect(error.message).not.toMatch(/[0-9a-f]{32}/);
    expect(output.length).toBe(expected.releasedChunks * CHUNK_SIZE);
    expect(error.bytesReleased).toBe(output.length);
    expect(error.afterFirstChunk).toBe(output.length > 0);
    if (expected.plaintext) expect(output.equals(expected.plaintext.subarray(0, output.length))).toBe(true);
  }
}

describe('the stream format vectors', () => {
  const key = Buffer.from(vectors.dataKeyHex, 'hex');
  const vectorSalt = Buffer.from(vectors.saltHex, 'hex');

  for (const vector of vectors.cases) {
    it(`encrypts the "${vector.name}" vector to the committed bytes`, async () => {
      const plaintext = vector.plaintextHex === undefined ? pattern(vector.plaintextLength) : Buffer.from(vector.plaintextHex, 'hex');
      const encryptor = createEncryptStream({ dataKey: key, blobId: vectors.blobId, salt: vectorSalt });
      const { output, error } = await run(encryptor, plaintext, 4096);
      expect(error).toBeUndefined();

      expect(encodeHeader(vectorSalt).toString('hex')).toBe(vector.headerHex);
      expect(derivePayloadKey({ dataKey: key, blobId: vectors.blobId, salt: vectorSalt }).toString('hex')).toBe(vector.payloadKeyHex);
      expect(output.length).toBe(vector.ciphertextLength);
      expect(createHash('sha256').update(output).digest('hex')).toBe(vector.ciphertextSha256);
      if (vector.ciphertextHex !== undefined) expect(output.toString('hex')).toBe(vector.ciphertextHex);
      if (vector.ciphertextFirst128Hex !== undefined) expect(output.subarray(0, 128).toString('hex')).toBe(vector.ciphertextFirst128Hex);
      if (vector.ciphertextLast64Hex !== undefined) expect(output.subarray(-64).toString('hex')).toBe(vector.ciphertextLast64Hex);

      const decrypted = await run(createDecryptStream({ dataKey: key, blobId: vectors.blobId }), output, 1000);
      expect(decrypted.error).toBeUndefined();
      expect(decrypted.output.equals(plaintext)).toBe(true);
    });
  }
});

describe('encrypting and decrypting a stream', () => {
  const randomSizes = Array.from({ length: 4 }, () => randomInt(1, 4 * CHUNK_SIZE));
  const sizes = [0, 1, 65535, 65536, 65537, 3 * 65536, ...randomSizes];

  for (const size of sizes) {
    it(`round-trips ${size} bytes fed in 1, 7, 100000 and whole-chunk pieces`, async () => {
      const plaintext = randomBytes(size);
      const reference = await encrypt(plaintext);
      expect(reference.length).toBe(ciphertextSize(size));
      expect(plaintextSize(reference.length)).toBe(size);

      // 1-byte pieces only where the run stays quick; they exercise every gather boundary. Pieces of
      // exactly one chunk (plaintext, or sealed) take the path that hands views on without a copy.
      const pieceSizes = [...(size <= 65537 ? [1] : []), 7, 100000, CHUNK_SIZE, SEALED_CHUNK];
      for (const pieceSize of pieceSizes) {
        expect((await encrypt(plaintext, pieceSize)).equals(reference)).toBe(true);
        const { output, error } = await run(createDecryptStream({ dataKey, blobId }), reference, pieceSize);
        expect(error).toBeUndefined();
        expect(output.equals(plaintext)).toBe(true);
      }
    });
  }

  it('refuses a data key of the wrong length when the stream is built', () => {
    expect(() => createDecryptStream({ dataKey: Buffer.alloc(16), blobId })).toThrow(RangeError);
    expect(() => createEncryptStream({ dataKey: Buffer.alloc(16), blobId })).toThrow(RangeError);
    expect(() => createDecryptStream({ dataKey, blobId: '' })).toThrow(RangeError);
  });

  it('uses a fresh random salt for every stream when none is injected', async () => {
    const plaintext = Buffer.from('same input');
    const [a, b] = await Promise.all([0, 1].map(() => run(createEncryptStream({ dataKey, blobId }), plaintext).then((r) => r.output)));
    expect(a!.subarray(10, HEADER_LENGTH).equals(b!.subarray(10, HEADER_LENGTH))).toBe(false);
    expect(a!.subarray(HEADER_LENGTH).equals(b!.subarray(HEADER_LENGTH))).toBe(false);
  });

  it('holds a full chunk back until it knows whether more data follows', async () => {
    const ciphertext = await encrypt(randomBytes(2 * CHUNK_SIZE));
    const decryptor = createDecryptStream({ dataKey, blobId });
    const out: Buffer[] = [];
    decryptor.on('data', (chunk: Buffer) => out.push(chunk));
    await new Promise<void>((resolve) => decryptor.write(ciphertext.subarray(0, HEADER_LENGTH + SEALED), () => resolve()));
    expect(out).toHaveLength(0);
    await new Promise<void>((resolve) =>
      decryptor.write(ciphertext.subarray(HEADER_LENGTH + SEALED, HEADER_LENGTH + SEALED + 1), () => resolve()),
    );
    expect(Buffer.concat(out).length).toBe(CHUNK_SIZE);
    decryptor.destroy();
  });

  it('stops taking input while nobody reads its output, in both directions', () => {
    for (const transform of [createEncryptStream({ dataKey, blobId, salt }), createDecryptStream({ dataKey, blobId })]) {
      let writes = 0;
      let accepted = true;
      // A valid header first, so the decryptor gathers chunks instead of failing.
      let input = Buffer.concat([encodeHeader(salt), randomBytes(CHUNK_SIZE)]);
      while (accepted && writes < 100) {
        accepted = transform.write(input);
        writes += 1;
        input = randomBytes(CHUNK_SIZE);
      }
      expect(writes).toBeLessThanOrEqual(4);
      expect(transform.readableLength).toBeLessThanOrEqual(2 * SEALED + HEADER_LENGTH);
      transform.destroy();
    }
  });
});

describe('sizes', () => {
  it('maps plaintext sizes to ciphertext sizes and back', () => {
    for (const size of [0, 1, 5, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 2 ** 40 + 3]) {
      expect(plaintextSize(ciphertextSize(size))).toBe(size);
    }
    expect(ciphertextSize(0)).toBe(HEADER_LENGTH + TAG_LENGTH);
    expect(ciphertextSize(CHUNK_SIZE)).toBe(HEADER_LENGTH + SEALED);
    expect(ciphertextSize(CHUNK_SIZE + 1)).toBe(HEADER_LENGTH + SEALED + 1 + TAG_LENGTH);
  });

  it('answers null for sizes no valid stream has', () => {
    expect(plaintextSize(0)).toBeNull();
    expect(plaintextSize(HEADER_LENGTH)).toBeNull();
    expect(plaintextSize(HEADER_LENGTH + TAG_LENGTH - 1)).toBeNull();
    expect(plaintextSize(HEADER_LENGTH + SEALED + 5)).toBeNull(); // a final chunk shorter than a tag
    expect(plaintextSize(HEADER_LENGTH + SEALED + TAG_LENGTH)).toBeNull(); // an empty final chunk after data
    expect(plaintextSize(-1)).toBeNull();
    expect(plaintextSize(1.5)).toBeNull();
  });

  it('refuses a negative or fractional plaintext size', () => {
    expect(() => ciphertextSize(-1)).toThrow(RangeError);
    expect(() => ciphertextSize(0.5)).toThrow(RangeError);
  });
});

describe('the decryptor refuses damaged or foreign streams', () => {
  const threeChunks = pattern(3 * CHUNK_SIZE + 5); // chunks 0..2 full, chunk 3 final with 5 bytes
  const cases = async () => ({ plaintext: threeChunks, ciphertext: await encrypt(threeChunks) });

  it('fails on empty input', async () => {
    await expectFailure(Buffer.alloc(0), { reason: 'empty_input', releasedChunks: 0 });
  });

  it('fails on a header cut short', async () => {
    const { ciphertext } = await cases();
    await expectFailure(ciphertext.subarray(0, HEADER_LENGTH - 1), { reason: 'bad_header', releasedChunks: 0 });
    await expectFailure(ciphertext.subarray(0, 3), { reason: 'bad_header', releasedChunks: 0 });
  });

  it('fails on a wrong magic, version, algorithm or chunk size', async () => {
    const { ciphertext } = await cases();
    for (const offset of [0, 3, 4, 5, 6, 8]) {
      const garbled = Buffer.from(ciphertext);
      garbled[offset] = garbled[offset]! ^ 0x01;
      await expectFailure(garbled, { reason: 'bad_header', releasedChunks: 0 });
    }
  });

  it('fails on a header with no chunk', async () => {
    const { ciphertext } = await cases();
    await expectFailure(ciphertext.subarray(0, HEADER_LENGTH), { reason: 'truncated', releasedChunks: 0 });
  });

  it('fails on a stream cut inside a chunk', async () => {
    const { plaintext, ciphertext } = await cases();
    await expectFailure(ciphertext.subarray(0, HEADER_LENGTH + SEALED + 1000), { reason: 'chunk_auth', releasedChunks: 1, plaintext });
    await expectFailure(ciphertext.subarray(0, -1), { reason: 'chunk_auth', releasedChunks: 3, plaintext });
  });

  it('fails on a stream cut exactly at a chunk boundary', async () => {
    const { plaintext, ciphertext } = await cases();
    // Chunk 1 arrives last and is not marked final, so it fails as the final chunk.
    await expectFailure(ciphertext.subarray(0, HEADER_LENGTH + 2 * SEALED), { reason: 'chunk_auth', releasedChunks: 1, plaintext });
    await expectFailure(ciphertext.subarray(0, HEADER_LENGTH + 3 * SEALED), { reason: 'chunk_auth', releasedChunks: 2, plaintext });
  });

  it('fails on an authentic empty final chunk after data', async () => {
    const plaintext = pattern(CHUNK_SIZE);
    const header = encodeHeader(salt);
    const forged = Buffer.concat([header, sealChunk(header, 0, false, plaintext), sealChunk(header, 1, true, Buffer.alloc(0))]);
    await expectFailure(forged, { reason: 'empty_final_chunk', releasedChunks: 1, plaintext });
  });

  it('fails on two final chunks', async () => {
    const header = encodeHeader(salt);
    const twoFinals = Buffer.concat([header, sealChunk(header, 0, true, pattern(10)), sealChunk(header, 1, true, pattern(10))]);
    await expectFailure(twoFinals, { reason: 'chunk_auth', releasedChunks: 0 });

    const plaintext = pattern(2 * CHUNK_SIZE);
    const fullFinals = Buffer.concat([
      header,
      sealChunk(header, 0, false, plaintext.subarray(0, CHUNK_SIZE)),
      sealChunk(header, 1, true, plaintext.subarray(CHUNK_SIZE)),
      sealChunk(header, 2, true, pattern(3)),
    ]);
    await expectFailure(fullFinals, { reason: 'chunk_auth', releasedChunks: 1, plaintext });
  });

  it('fails on trailing bytes after the final chunk', async () => {
    const { plaintext, ciphertext } = await cases();
    await expectFailure(Buffer.concat([ciphertext, Buffer.from([0])]), { reason: 'chunk_auth', releasedChunks: 3, plaintext });
    const oneFullChunk = pattern(CHUNK_SIZE);
    const full = await encrypt(oneFullChunk);
    await expectFailure(Buffer.concat([full, randomBytes(100)]), { reason: 'chunk_auth', releasedChunks: 0 });
  });

  it('fails on a final chunk shorter than a tag', async () => {
    const { plaintext, ciphertext } = await cases();
    await expectFailure(ciphertext.subarray(0, HEADER_LENGTH + 3 * SEALED + TAG_LENGTH - 1), {
      reason: 'short_chunk',
      releasedChunks: 3,
      plaintext,
    });
    await expectFailure(ciphertext.subarray(0, HEADER_LENGTH + 1), { reason: 'short_chunk', releasedChunks: 0 });
  });

  it('fails when the final tag is missing', async () => {
    const { plaintext, ciphertext } = await cases();
    // 5 bytes of final chunk left: shorter than a tag.
    await expectFailure(ciphertext.subarray(0, -TAG_LENGTH), { reason: 'short_chunk', releasedChunks: 3, plaintext });
    const hundred = pattern(100);
    await expectFailure((await encrypt(hundred)).subarray(0, -TAG_LENGTH), { reason: 'chunk_auth', releasedChunks: 0 });
  });

  it('fails on reordered chunks', async () => {
    const { plaintext, ciphertext } = await cases();
    const header = ciphertext.subarray(0, HEADER_LENGTH);
    const [c0, c1, c2] = [0, 1, 2].map((i) => chunkAt(ciphertext, i));
    const rest = ciphertext.subarray(HEADER_LENGTH + 3 * SEALED);
    await expectFailure(Buffer.concat([header, c1!, c0!, c2!, rest]), { reason: 'chunk_auth', releasedChunks: 0 });
    await expectFailure(Buffer.concat([header, c0!, c2!, c1!, rest]), { reason: 'chunk_auth', releasedChunks: 1, plaintext });
    await expectFailure(Buffer.concat([header, c0!, c1!, c2!, c2!, rest]), { reason: 'chunk_auth', releasedChunks: 3, plaintext });
  });

  it('fails on a changed salt in the header', async () => {
    const { ciphertext } = await cases();
    const changed = Buffer.from(ciphertext);
    changed[HEADER_LENGTH - 1] = changed[HEADER_LENGTH - 1]! ^ 0x80;
    await expectFailure(changed, { reason: 'chunk_auth', releasedChunks: 0 });
  });

  it('fails on a flipped bit in a later chunk after releasing the chunks before it', async () => {
    const { plaintext, ciphertext } = await cases();
    const flipped = Buffer.from(ciphertext);
    const at = HEADER_LENGTH + 2 * SEALED + 12345;
    flipped[at] = flipped[at]! ^ 0x01;
    await expectFailure(flipped, { reason: 'chunk_auth', releasedChunks: 2, plaintext });
  });

  it('fails under the wrong blob id', async () => {
    const { ciphertext } = await cases();
    await expectFailure(ciphertext, { reason: 'chunk_auth', releasedChunks: 0 }, { id: `${blobId}x` });
  });

  it('fails under the wrong data key', async () => {
    const { ciphertext } = await cases();
    await expectFailure(ciphertext, { reason: 'chunk_auth', releasedChunks: 0 }, { key: randomBytes(32) });
  });
});
