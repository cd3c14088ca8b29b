import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { wrapDataKey } from '../../app/crypto/keys.js';
import {
  RESUME_TOKEN_LENGTH,
  newResumeCapability,
  parseResumeCapability,
  resumeKeys,
  resumeSalt,
  unwrapResumeKey,
  wrapResumeKey,
} from '../../app/crypto/resume.js';
import { expectIntegrityFailure } from '../helpers/integrity.js';

/** How a resume key that does not open fails. */
const KEY_UNWRAP = { reason: 'key_unwrap' } as const;

interface ResumeVectors {
  secret: string;
  tokenHex: string;
  etag: string;
  saltHex: string;
  resumeId: string;
  kekHex: string;
  wrap: { dataKeyHex: string; blobId: string; nonceHex: string; wrappedHex: string };
}
const vectors = JSON.parse(readFileSync(new URL('../vectors/resume.json', import.meta.url), 'utf8')) as ResumeVectors;
const hex = (value: string) => Buffer.from(value, 'hex');
const secret = 'server-secret-for-tests-0123456789abcdef';

/** RFC 9110 entity-tag: DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text. */
const STRONG_ETAG = /^"[\x21\x23-\x7e]*"$/;

describe('the resume vectors', () => {
  it('turns the vector token into the committed ETag, resume id and KEK', () => {
    const capability = newResumeCapability({ token: hex(vectors.tokenHex) });
    expect(capability.etag).toBe(vectors.etag);
    expect(parseResumeCapability(vectors.etag)?.token.toString('hex')).toBe(vectors.tokenHex);
    expect(resumeSalt(vectors.secret).toString('hex')).toBe(vectors.saltHex);
    const keys = resumeKeys({ capability, secret: vectors.secret });
    expect(keys.resumeId).toBe(vectors.resumeId);
    expect(keys.kek.toString('hex')).toBe(vectors.kekHex);
    expect(resumeKeys({ capability, secret: Buffer.from(vectors.secret, 'utf8') })).toEqual(keys);
  });

  it('wraps the vector data key to the committed bytes and unwraps it again', () => {
    const { dataKeyHex, blobId, nonceHex, wrappedHex } = vectors.wrap;
    const kek = hex(vectors.kekHex);
    const wrapped = wrapResumeKey({ dataKey: hex(dataKeyHex), kek, resumeId: vectors.resumeId, blobId, nonce: hex(nonceHex) });
    expect(wrapped.toString('hex')).toBe(wrappedHex);
    expect(wrapped).toHaveLength(61);
    expect(unwrapResumeKey({ wrapped, kek, resumeId: vectors.resumeId, blobId }).toString('hex')).toBe(dataKeyHex);
  });
});

describe('resume capabilities', () => {
  it('are 256 random bits in a strong ETag made only of entity-tag characters', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i += 1) {
      const capability = newResumeCapability();
      expect(capability.etag).toMatch(STRONG_ETAG);
      expect(capability.etag).toMatch(/^"r1\.[A-Za-z0-9_-]{43}"$/);
      expect(capability.token).toHaveLength(RESUME_TOKEN_LENGTH);
      seen.add(capability.etag);
    }
    expect(seen.size).toBe(50);
    expect(() => newResumeCapability({ token: Buffer.alloc(16) })).toThrow(RangeError);
  });

  it('parse back from an If-Range value, blanks around it ignored', () => {
    const capability = newResumeCapability();
    expect(parseResumeCapability(capability.etag)).toEqual(capability);
    expect(parseResumeCapability(` ${capability.etag}\t`)).toEqual(capability);
  });

  it('do not parse from anything else: weak tags, dates, other tags, bad lengths, non-canonical encodings', () => {
    const { etag } = newResumeCapability();
    const body = etag.slice(4, -1);
    const lastBits = hex(vectors.tokenHex).toString('base64url').slice(0, 42);
    for (const value of [
      undefined,
      '',
      `W/${etag}`,
      etag.slice(1, -1),
      `${etag}x`,
      `"${body}"`,
      `"r2.${body}"`,
      `"r1.${body.slice(1)}"`,
      `"r1.${body}A"`,
      `"r1.${body.slice(0, 42)}+"`,
      `"r1.${body.slice(0, 42)}="`,
      `${etag}, ${etag}`,
      'Wed, 21 Oct 2026 07:28:00 GMT',
      '*',
      // The vector token with its last character "8" (111100) spelled "9" (111101): the two spare bits set.
      `"r1.${lastBits}9"`,
      `"r1.${lastBits}_"`,
    ]) {
      expect(parseResumeCapability(value), String(value)).toBeNull();
    }
    // Those spellings decode to the vector's bytes, so only the canonical check refuses them: one token, one ETag.
    expect(vectors.etag.at(-2)).toBe('8');
    expect(Buffer.from(`${lastBits}9`, 'base64url').toString('hex')).toBe(vectors.tokenHex);
    expect(Buffer.from(`${lastBits}_`, 'base64url').toString('hex')).toBe(vectors.tokenHex);
  });

  it('give another resume id and KEK for another token or another server secret', () => {
    const capability = newResumeCapability();
    const keys = resumeKeys({ capability, secret });
    expect(keys.resumeId).toMatch(/^[0-9a-f]{64}$/);
    expect(keys.kek).toHaveLength(32);
    expect(keys.kek.toString('hex')).not.toBe(keys.resumeId);
    const otherToken = resumeKeys({ capability: newResumeCapability(), secret });
    const otherSecret = resumeKeys({ capability, secret: `${secret}!` });
    for (const other of [otherToken, otherSecret]) {
      expect(other.resumeId).not.toBe(keys.resumeId);
      expect(other.kek.equals(keys.kek)).toBe(false);
    }
    expect(resumeKeys({ capability: parseResumeCapability(capability.etag)!, secret })).toEqual(keys);
  });
});

describe('resume-wrapped data keys', () => {
  const dataKey = randomBytes(32);
  const blobId = 'blob-1';
  const capability = newResumeCapability();
  const keys = resumeKeys({ capability, secret });
  const wrapped = wrapResumeKey({ dataKey, kek: keys.kek, resumeId: keys.resumeId, blobId });

  it('open with the capability’s keys, for that resume id and blob id only', () => {
    expect(unwrapResumeKey({ wrapped, kek: keys.kek, resumeId: keys.resumeId, blobId }).equals(dataKey)).toBe(true);
    const other = resumeKeys({ capability: newResumeCapability(), secret });
    expectIntegrityFailure(() => unwrapResumeKey({ wrapped, kek: other.kek, resumeId: keys.resumeId, blobId }), KEY_UNWRAP);
    expectIntegrityFailure(() => unwrapResumeKey({ wrapped, kek: other.kek, resumeId: other.resumeId, blobId }), KEY_UNWRAP);
    expectIntegrityFailure(() => unwrapResumeKey({ wrapped, kek: keys.kek, resumeId: other.resumeId, blobId }), KEY_UNWRAP);
    expectIntegrityFailure(() => unwrapResumeKey({ wrapped, kek: keys.kek, resumeId: keys.resumeId, blobId: 'blob-2' }), KEY_UNWRAP);
  });

  it('are not interchangeable with the record’s wrapped key, nor open when damaged', () => {
    // Same KEK and the same 32 bytes of context, but the record's wrap has no blob id after them.
    const recordWrap = wrapDataKey({ dataKey, kek: keys.kek, lookupId: keys.resumeId });
    expectIntegrityFailure(() => unwrapResumeKey({ wrapped: recordWrap, kek: keys.kek, resumeId: keys.resumeId, blobId }), KEY_UNWRAP);
    for (const at of [0, 1, 13, 40, 60]) {
      const damaged = Buffer.from(wrapped);
      damaged[at] = damaged[at]! ^ 0x01;
      expectIntegrityFailure(() => unwrapResumeKey({ wrapped: damaged, kek: keys.kek, resumeId: keys.resumeId, blobId }), KEY_UNWRAP);
    }
    expectIntegrityFailure(
      () => unwrapResumeKey({ wrapped: wrapped.subarray(0, 28), kek: keys.kek, resumeId: keys.resumeId, blobId }),
      KEY_UNWRAP,
    );
  });

  it('refuse malformed inputs when wrapping', () => {
    expect(() => wrapResumeKey({ dataKey: Buffer.alloc(16), kek: keys.kek, resumeId: keys.resumeId, blobId })).toThrow(RangeError);
    expect(() => wrapResumeKey({ dataKey, kek: keys.kek, resumeId: 'nothex', blobId })).toThrow(RangeError);
    expect(() => wrapResumeKey({ dataKey, kek: keys.kek, resumeId: keys.resumeId, blobId: '' })).toThrow(RangeError);
  });
});
