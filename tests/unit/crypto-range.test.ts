import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Transform } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runThrough } from '../helpers/stream-run.js';
import { isIntegrityCheckFailed, type IntegrityFailure } from '../../app/crypto/crypto.errors.js';
import { createRangeDecryptStream, planRange, type RangePlan } from '../../app/crypto/range.js';
import { CHUNK_SIZE, HEADER_LENGTH, TAG_LENGTH, ciphertextSize, createEncryptStream } from '../../app/crypto/stream.js';

interface RangeVectors {
  cases: { size: number; start: number; end: number | null; plan: Omit<RangePlan, 'plaintextSize' | 'start'> | null }[];
}
const vectors = JSON.parse(readFileSync(new URL('../vectors/ranges.json', import.meta.url), 'utf8')) as RangeVectors;

const SEALED = CHUNK_SIZE + TAG_LENGTH;
const dataKey = randomBytes(32);
const blobId = 'blob-under-test';

/** A small seeded PRNG, so a failing sample can be replayed from the seed in the test name. */
function prng(seed: number) {
  let state = seed >>> 0;
  return (below: number) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * below);
  };
}

/** Feeds `input` in one write; the exhaustive test runs thousands of these, so it skips pipeline(). */
function runWhole(transform: Transform, input: Buffer): Promise<{ output: Buffer; error: unknown }> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    transform.on('data', (chunk: Buffer) => out.push(chunk));
    transform.once('error', (error) => resolve({ output: Buffer.concat(out), error }));
    transform.once('end', () => resolve({ output: Buffer.concat(out), error: undefined }));
    transform.end(input);
  });
}

async function run(transform: Transform, input: Buffer, pieceSize = Math.max(1, input.length)) {
  if (pieceSize >= input.length) return runWhole(transform, input);
  return runThrough(transform, input, pieceSize);
}

async function encrypt(plaintext: Buffer) {
  const { output, error } = await run(createEncryptStream({ dataKey, blobId }), plaintext, 65536);
  if (error) throw error;
  return output;
}

/** What a download does: read the header and the planned ciphertext, pipe them through the range stream. */
async function decryptRange(ciphertext: Buffer, plan: RangePlan, pieceSize?: number, options: { key?: Buffer; id?: string } = {}) {
  const header = ciphertext.subarray(0, HEADER_LENGTH);
  const body = ciphertext.subarray(plan.ciphertextStart, plan.ciphertextEnd + 1);
  const stream = createRangeDecryptStream({ dataKey: options.key ?? dataKey, blobId: options.id ?? blobId, header, plan });
  return run(stream, body, pieceSize);
}

function plan(plaintextSize: number, start: number, end?: number): RangePlan {
  const result = planRange({ plaintextSize, start, end });
  if (result === null) throw new Error(`no plan for ${start}-${end ?? ''} of ${plaintextSize}`);
  return result;
}

async function expectRange(plaintext: Buffer, ciphertext: Buffer, start: number, end: number | undefined, pieceSize?: number) {
  const p = plan(plaintext.length, start, end);
  const { output, error } = await decryptRange(ciphertext, p, pieceSize);
  const label = `bytes ${start}-${end ?? ''} of ${plaintext.length}`;
  expect(error, label).toBeUndefined();
  const last = Math.min(end ?? plaintext.length - 1, plaintext.length - 1);
  expect(output.length, label).toBe(last - start + 1);
  expect(output.length, label).toBe(p.length);
  expect(output.equals(plaintext.subarray(start, last + 1)), label).toBe(true);
}

/** Runs a range stream on `body` and checks it fails for `reason` after releasing exactly `released` bytes of `expected`. */
async function expectRangeFailure(
  options: { header: Buffer; plan: RangePlan; body: Buffer; key?: Buffer; id?: string },
  expected: { reason: IntegrityFailure; released: number; plaintext?: Buffer },
) {
  for (const pieceSize of [Math.max(1, options.body.length), 1000, 100000]) {
    const stream = createRangeDecryptStream({
      dataKey: options.key ?? dataKey,
      blobId: options.id ?? blobId,
      header: options.header,
      plan: options.plan,
    });
    const { output, error } = await run(stream, options.body, pieceSize);
    expect(isIntegrityCheckFailed(error), `piece size ${pieceSize}`).toBe(true);
    if (!isIntegrityCheckFailed(error)) return;
    expect(error.reason).toBe(expected.reason);
    expect(output.length).toBe(expected.released);
    expect(error.bytesReleased).toBe(expected.released);
    expect(error.afterFirstChunk).toBe(expected.released > 0);
    if (expected.plaintext) expect(output.equals(expected.plaintext.subarray(0, output.length))).toBe(true);
  }
}

describe('the range planner', () => {
  for (const vector of vectors.cases) {
    const range = `${vector.start}-${vector.end ?? ''}`;
    it(`plans bytes ${range} of ${vector.size} as the second implementation does`, () => {
      const result = planRange({ plaintextSize: vector.size, start: vector.start, end: vector.end ?? undefined });
      if (vector.plan === null) {
        expect(result).toBeNull();
        return;
      }
      expect(result).toEqual({ ...vector.plan, plaintextSize: vector.size, start: vector.start });
    });
  }

  it('covers whole chunks ending exactly where the blob or the chunk ends', () => {
    for (const size of [1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 3]) {
      const whole = plan(size, 0);
      expect(whole.ciphertextStart).toBe(HEADER_LENGTH);
      expect(whole.ciphertextEnd).toBe(ciphertextSize(size) - 1);
      const lastByte = plan(size, size - 1);
      expect(lastByte.length).toBe(1);
      expect(lastByte.lastChunk).toBe(lastByte.finalChunk);
      expect(lastByte.ciphertextEnd).toBe(ciphertextSize(size) - 1);
    }
    const middle = plan(5 * CHUNK_SIZE + 3, 2 * CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 1);
    expect(middle).toMatchObject({ firstChunk: 2, lastChunk: 2, finalChunk: 5, skip: 1, length: 1 });
    expect(middle.ciphertextEnd - middle.ciphertextStart + 1).toBe(SEALED);
  });

  it('answers null for ranges no byte can satisfy (the caller answers 416)', () => {
    expect(planRange({ plaintextSize: 0, start: 0 })).toBeNull();
    expect(planRange({ plaintextSize: 0, start: 0, end: 0 })).toBeNull();
    expect(planRange({ plaintextSize: 10, start: 10 })).toBeNull();
    expect(planRange({ plaintextSize: 10, start: 11, end: 20 })).toBeNull();
    expect(planRange({ plaintextSize: 10, start: 5, end: 4 })).toBeNull();
    expect(planRange({ plaintextSize: 10, start: 9, end: 9 })).not.toBeNull();
  });

  it('throws for inputs that are not non-negative integers', () => {
    for (const bad of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(() => planRange({ plaintextSize: bad, start: 0 })).toThrow(RangeError);
      expect(() => planRange({ plaintextSize: 100, start: bad })).toThrow(RangeError);
      expect(() => planRange({ plaintextSize: 100, start: 0, end: bad })).toThrow(RangeError);
    }
  });
});

describe('ranged decryption returns exactly the requested bytes', () => {
  it('for every range of every file of 1 to 32 bytes, and every open-ended range', async () => {
    for (let size = 1; size <= 32; size += 1) {
      const plaintext = randomBytes(size);
      const ciphertext = await encrypt(plaintext);
      for (let start = 0; start < size; start += 1) {
        await expectRange(plaintext, ciphertext, start, undefined);
        for (let end = start; end <= size + 1; end += 1) await expectRange(plaintext, ciphertext, start, end);
      }
    }
  });

  it('fed one byte at a time', async () => {
    const plaintext = randomBytes(2 * CHUNK_SIZE + 9);
    const ciphertext = await encrypt(plaintext);
    for (const [start, end] of [
      [0, 0],
      [CHUNK_SIZE - 3, CHUNK_SIZE + 2],
      [2 * CHUNK_SIZE, undefined],
      [5, 2 * CHUNK_SIZE + 8],
    ] as const) {
      await expectRange(plaintext, ciphertext, start, end, 1);
    }
  });

  const seed = Date.now() % 1_000_000;
  const sizes = [CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 5, 5 * CHUNK_SIZE - 1];
  for (const size of sizes) {
    it(`for ${size} bytes: every pair of chunk-boundary offsets, and 60 random ranges (seed ${seed})`, async () => {
      const random = prng(seed + size);
      const plaintext = randomBytes(size);
      const ciphertext = await encrypt(plaintext);
      const boundaries = new Set<number>([0, 1, size - 2, size - 1]);
      for (let edge = CHUNK_SIZE; edge < size + CHUNK_SIZE; edge += CHUNK_SIZE) {
        for (const near of [edge - 2, edge - 1, edge, edge + 1]) if (near >= 0 && near < size) boundaries.add(near);
      }
      const offsets = [...boundaries].sort((a, b) => a - b);
      for (const start of offsets) {
        await expectRange(plaintext, ciphertext, start, undefined);
        for (const end of offsets) if (end >= start) await expectRange(plaintext, ciphertext, start, end);
      }
      for (let sample = 0; sample < 60; sample += 1) {
        const start = random(size);
        const end = start + random(size - start);
        await expectRange(plaintext, ciphertext, start, end, 1 + random(3 * SEALED));
      }
    });
  }
});

describe('ranged decryption fails like a whole download', () => {
  const plaintext = Buffer.from(Array.from({ length: 3 * CHUNK_SIZE + 5 }, (_, i) => i % 251));
  const setup = async (start: number, end?: number) => {
    const ciphertext = await encrypt(plaintext);
    const p = plan(plaintext.length, start, end);
    return {
      ciphertext,
      plan: p,
      header: ciphertext.subarray(0, HEADER_LENGTH),
      body: ciphertext.subarray(p.ciphertextStart, p.ciphertextEnd + 1),
      expected: plaintext.subarray(p.start, p.end + 1),
    };
  };

  it('releases nothing of a chunk until its tag has verified', async () => {
    const { header, plan: p, body, expected } = await setup(10, CHUNK_SIZE + 10);
    const stream = createRangeDecryptStream({ dataKey, blobId, header, plan: p });
    const out: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => out.push(chunk));
    const write = (piece: Buffer) => new Promise<void>((resolve) => stream.write(piece, () => resolve()));
    await write(body.subarray(0, SEALED - 1));
    expect(out).toHaveLength(0);
    await write(body.subarray(SEALED - 1, SEALED));
    expect(Buffer.concat(out).equals(expected.subarray(0, CHUNK_SIZE - 10))).toBe(true);
    stream.destroy();
  });

  it('fails on a flipped bit in a chunk of the range, after releasing only the chunks before it', async () => {
    const { header, plan: p, body, expected } = await setup(CHUNK_SIZE + 7, 3 * CHUNK_SIZE + 2);
    const flipped = Buffer.from(body);
    flipped[SEALED + 100] = flipped[SEALED + 100]! ^ 0x01; // inside chunk 2, the range's second chunk
    await expectRangeFailure({ header, plan: p, body: flipped }, { reason: 'chunk_auth', released: CHUNK_SIZE - 7, plaintext: expected });
    const lastTag = Buffer.from(body);
    lastTag[lastTag.length - 1] = lastTag[lastTag.length - 1]! ^ 0x80;
    await expectRangeFailure(
      { header, plan: p, body: lastTag },
      { reason: 'chunk_auth', released: 2 * CHUNK_SIZE - 7, plaintext: expected },
    );
  });

  it('fails on a range cut short: inside a chunk, at a chunk boundary, or with no bytes at all', async () => {
    const { header, plan: p, body, expected } = await setup(CHUNK_SIZE + 7);
    await expectRangeFailure(
      { header, plan: p, body: body.subarray(0, -1) },
      { reason: 'truncated', released: 2 * CHUNK_SIZE - 7, plaintext: expected },
    );
    await expectRangeFailure(
      { header, plan: p, body: body.subarray(0, SEALED) },
      { reason: 'truncated', released: CHUNK_SIZE - 7, plaintext: expected },
    );
    await expectRangeFailure({ header, plan: p, body: body.subarray(0, 100) }, { reason: 'truncated', released: 0 });
    await expectRangeFailure({ header, plan: p, body: Buffer.alloc(0) }, { reason: 'truncated', released: 0 });
  });

  it('fails on bytes past the planned range', async () => {
    const { header, plan: p, body } = await setup(5, 10);
    await expectRangeFailure({ header, plan: p, body: Buffer.concat([body, Buffer.from([0])]) }, { reason: 'trailing_data', released: 6 });
  });

  it('fails when the chunks are read from the wrong offset or in the wrong order', async () => {
    const { ciphertext, header, plan: p, body } = await setup(CHUNK_SIZE, 2 * CHUNK_SIZE - 1);
    const shifted = ciphertext.subarray(p.ciphertextStart + 1, p.ciphertextEnd + 2);
    await expectRangeFailure({ header, plan: p, body: shifted }, { reason: 'chunk_auth', released: 0 });
    const chunkTwo = ciphertext.subarray(HEADER_LENGTH + 2 * SEALED, HEADER_LENGTH + 3 * SEALED);
    expect(chunkTwo).toHaveLength(body.length);
    await expectRangeFailure({ header, plan: p, body: chunkTwo }, { reason: 'chunk_auth', released: 0 });
  });

  it('fails when the size it was planned with is not the file’s (the final flag or length differs)', async () => {
    const { ciphertext, header } = await setup(0);
    for (const liedSize of [plaintext.length - 1, plaintext.length + 1, plaintext.length + CHUNK_SIZE]) {
      const p = plan(liedSize, 3 * CHUNK_SIZE);
      await expectRangeFailure(
        { header, plan: p, body: ciphertext.subarray(p.ciphertextStart, p.ciphertextEnd + 1) },
        { reason: liedSize > plaintext.length ? 'truncated' : 'chunk_auth', released: 0 },
      );
    }
    // A size that hides the final chunk: chunk 2 is then taken as final, and its tag says otherwise.
    const p = plan(3 * CHUNK_SIZE, 2 * CHUNK_SIZE);
    await expectRangeFailure(
      { header, plan: p, body: ciphertext.subarray(p.ciphertextStart, p.ciphertextEnd + 1) },
      { reason: 'chunk_auth', released: 0 },
    );
  });

  it('fails on a bad, short or foreign header, and under another blob id or data key', async () => {
    const { header, plan: p, body } = await setup(CHUNK_SIZE + 1, CHUNK_SIZE + 1);
    const badMagic = Buffer.from(header);
    badMagic[0] = badMagic[0]! ^ 0x01;
    await expectRangeFailure({ header: badMagic, plan: p, body }, { reason: 'bad_header', released: 0 });
    await expectRangeFailure({ header: header.subarray(0, HEADER_LENGTH - 1), plan: p, body }, { reason: 'bad_header', released: 0 });
    await expectRangeFailure({ header: Buffer.alloc(0), plan: p, body: Buffer.alloc(0) }, { reason: 'bad_header', released: 0 });
    const otherSalt = Buffer.from(header);
    otherSalt[HEADER_LENGTH - 1] = otherSalt[HEADER_LENGTH - 1]! ^ 0x01;
    await expectRangeFailure({ header: otherSalt, plan: p, body }, { reason: 'chunk_auth', released: 0 });
    const otherBlob = (await encrypt(plaintext)).subarray(0, HEADER_LENGTH);
    await expectRangeFailure({ header: otherBlob, plan: p, body }, { reason: 'chunk_auth', released: 0 });
    await expectRangeFailure({ header, plan: p, body, id: `${blobId}x` }, { reason: 'chunk_auth', released: 0 });
    await expectRangeFailure({ header, plan: p, body, key: randomBytes(32) }, { reason: 'chunk_auth', released: 0 });
  });

  it('refuses a hand-made plan or a key of the wrong length when the stream is built', async () => {
    const { header, plan: p } = await setup(10, 20);
    expect(() => createRangeDecryptStream({ dataKey, blobId, header, plan: { ...p, skip: 0 } })).toThrow(RangeError);
    expect(() => createRangeDecryptStream({ dataKey, blobId, header, plan: { ...p, finalChunk: 0 } })).toThrow(RangeError);
    expect(() => createRangeDecryptStream({ dataKey: Buffer.alloc(16), blobId, header, plan: p })).toThrow(RangeError);
    expect(() => createRangeDecryptStream({ dataKey, blobId: '', header, plan: p })).toThrow(RangeError);
  });

  it('stops taking input while nobody reads its output', async () => {
    const big = randomBytes(40 * CHUNK_SIZE);
    const ciphertext = await encrypt(big);
    const p = plan(big.length, 0);
    const stream = createRangeDecryptStream({ dataKey, blobId, header: ciphertext.subarray(0, HEADER_LENGTH), plan: p });
    let writes = 0;
    let offset = p.ciphertextStart;
    while (writes < 40 && stream.write(ciphertext.subarray(offset, offset + SEALED))) {
      writes += 1;
      offset += SEALED;
    }
    expect(writes).toBeLessThanOrEqual(3);
    expect(stream.readableLength).toBeLessThanOrEqual(2 * CHUNK_SIZE);
    stream.destroy();
  });
});
