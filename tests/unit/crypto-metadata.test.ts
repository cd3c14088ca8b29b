import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  METADATA_MAX_BUCKET,
  METADATA_MIN_BUCKET,
  decryptMetadata,
  encryptMetadata,
  metadataBucket,
  sealedMetadataSize,
  type FileEntry,
  type FileMetadata,
} from '../../app/crypto/metadata.js';
import { supportedMimeTypes } from 'file-type';
import { sanitiseFilename } from '../../app/uploads/content-type.models.js';
import { expectIntegrityFailure } from '../helpers/integrity.js';

/** How sealed metadata that does not open fails: nothing of it released. */
const SEALED_METADATA = { reason: 'metadata', bytesReleased: 0 } as const;

interface MetadataVectors {
  dataKeyHex: string;
  blobId: string;
  nonceHex: string;
  cases: {
    name: string;
    metadata: FileMetadata;
    entryCount?: number;
    jsonLength: number;
    bucket: number;
    sealedLength: number;
    sealedSha256: string;
    sealedHex?: string;
    sealedFirst64Hex?: string;
  }[];
  badPadding: { name: string; sealedHex: string }[];
}
interface KeyVectors {
  metadata: { dataKeyHex: string; blobId: string; metadata: FileMetadata; sealedHex: string };
}

const read = <T>(name: string) => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8')) as T;
const vectors = read<MetadataVectors>('metadata.json');
const v1 = read<KeyVectors>('keys.json').metadata;
const hex = (value: string) => Buffer.from(value, 'hex');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const vectorKey = hex(vectors.dataKeyHex);

/** The rule the vectors state for long entry lists. */
const entries = (count: number): FileEntry[] =>
  Array.from({ length: count }, (_, i) => ({ name: `photos/2026/IMG_${String(i).padStart(5, '0')}.jpg`, size: i * 1000 + 7 }));

describe('the metadata version 2 vectors', () => {
  for (const vector of vectors.cases) {
    it(`seals "${vector.name}" to the committed ${vector.sealedLength} bytes and opens it again`, () => {
      const metadata = vector.entryCount === undefined ? vector.metadata : { ...vector.metadata, files: entries(vector.entryCount) };
      const sealed = encryptMetadata({ dataKey: vectorKey, blobId: vectors.blobId, metadata, nonce: hex(vectors.nonceHex) });
      expect(sealed).toHaveLength(vector.sealedLength);
      expect(sealed).toHaveLength(29 + vector.bucket);
      expect(sealedMetadataSize(metadata)).toBe(vector.sealedLength);
      expect(sha256(sealed)).toBe(vector.sealedSha256);
      if (vector.sealedHex !== undefined) expect(sealed.toString('hex')).toBe(vector.sealedHex);
      if (vector.sealedFirst64Hex !== undefined) expect(sealed.subarray(0, 64).toString('hex')).toBe(vector.sealedFirst64Hex);
      expect(decryptMetadata({ dataKey: vectorKey, blobId: vectors.blobId, sealed })).toEqual(metadata);
    });
  }

  for (const vector of vectors.badPadding) {
    it(`refuses an authentic envelope with ${vector.name}`, () => {
      expectIntegrityFailure(
        () => decryptMetadata({ dataKey: vectorKey, blobId: vectors.blobId, sealed: hex(vector.sealedHex) }),
        SEALED_METADATA,
      );
    });
  }

  it('still opens the version 1 vector, and neither version opens when its version byte is swapped', () => {
    expect(decryptMetadata({ dataKey: hex(v1.dataKeyHex), blobId: v1.blobId, sealed: hex(v1.sealedHex) })).toEqual(v1.metadata);
    const v1As2 = hex(v1.sealedHex);
    v1As2[0] = 2;
    expectIntegrityFailure(() => decryptMetadata({ dataKey: hex(v1.dataKeyHex), blobId: v1.blobId, sealed: v1As2 }), SEALED_METADATA);
    const v2As1 = hex(vectors.cases[0]!.sealedHex!);
    v2As1[0] = 1;
    expectIntegrityFailure(() => decryptMetadata({ dataKey: vectorKey, blobId: vectors.blobId, sealed: v2As1 }), SEALED_METADATA);
    const v2As3 = hex(vectors.cases[0]!.sealedHex!);
    v2As3[0] = 3;
    expectIntegrityFailure(() => decryptMetadata({ dataKey: vectorKey, blobId: vectors.blobId, sealed: v2As3 }), SEALED_METADATA);
  });
});

describe('padded metadata', () => {
  const dataKey = randomBytes(32);
  const base = { mimeType: 'application/pdf', sha256: 'ab'.repeat(32) };

  it('seals names of 1 and 60 characters, and every name the app accepts, to the same size', () => {
    const sizes = new Set<number>();
    for (const filename of ['a', `${'n'.repeat(56)}.pdf`, 'é'.repeat(255), '語'.repeat(255), '😀'.repeat(127), '"\\'.repeat(127)]) {
      const sealed = encryptMetadata({ dataKey, blobId: 'blob-1', metadata: { ...base, filename } });
      sizes.add(sealed.length);
      expect(decryptMetadata({ dataKey, blobId: 'blob-1', sealed }).filename).toBe(filename);
    }
    expect([...sizes]).toEqual([29 + METADATA_MIN_BUCKET]);
  });

  it('seals the longest name sanitiseFilename keeps, in any script, with the longest sniffed type, as a 1-character name', () => {
    // A name capped at 255 characters rather than 255 UTF-16 units (255 emoji: 1020 bytes) sealed into
    // the 2 KiB bucket, so a Redis dump told long names apart (SPEC §10.4).
    const longestType = [...supportedMimeTypes].reduce((a, b) => (b.length > a.length ? b : a));
    expect(Buffer.byteLength(longestType)).toBeLessThanOrEqual(73); // docs/FORMAT.md sizes the bucket for 73
    const sealedSize = (filename: string, mimeType: string) =>
      encryptMetadata({ dataKey, blobId: 'blob-1', metadata: { filename, mimeType, sha256: 'ab'.repeat(32) } }).length;
    const reference = sealedSize('a', 'text/plain');
    for (const raw of [
      '😀'.repeat(300),
      `${'😀'.repeat(300)}.pptx`,
      '語'.repeat(300),
      `a${'語'.repeat(300)}`,
      '"'.repeat(300),
      'é'.repeat(300),
    ]) {
      const filename = sanitiseFilename(raw);
      expect(filename.length).toBeLessThanOrEqual(255);
      expect(sealedSize(filename, longestType)).toBe(reference);
    }
    expect(reference).toBe(29 + METADATA_MIN_BUCKET);
  });

  it('grows by doubling for long entry lists, up to 100 000 entries', () => {
    expect(metadataBucket(0)).toBe(1024);
    expect(metadataBucket(1020)).toBe(1024);
    expect(metadataBucket(1021)).toBe(2048);
    expect(metadataBucket(METADATA_MAX_BUCKET - 4)).toBe(METADATA_MAX_BUCKET);
    expect(metadataBucket(METADATA_MAX_BUCKET - 3)).toBeUndefined();

    const files = entries(100_000);
    const metadata = { ...base, filename: 'photos.zip', files };
    const sealed = encryptMetadata({ dataKey, blobId: 'blob-1', metadata });
    const json = Buffer.byteLength(JSON.stringify(metadata));
    expect(sealed.length - 29).toBeGreaterThanOrEqual(json + 4);
    expect(sealed.length - 29).toBeLessThan(2 * (json + 4));
    expect(Math.log2((sealed.length - 29) / METADATA_MIN_BUCKET) % 1).toBe(0);
    expect(decryptMetadata({ dataKey, blobId: 'blob-1', sealed })).toEqual(metadata);
  });

  it('keeps entries and leaves `files` out for a single file', () => {
    const drop = {
      ...base,
      filename: 'a.pdf-and-1-more.zip',
      files: [
        { name: 'a.pdf', size: 0 },
        { name: 'dir/b ✓.txt', size: 2 ** 40 },
      ],
    };
    const sealedDrop = encryptMetadata({ dataKey, blobId: 'b', metadata: drop });
    expect(decryptMetadata({ dataKey, blobId: 'b', sealed: sealedDrop })).toEqual(drop);
    const single = decryptMetadata({
      dataKey,
      blobId: 'b',
      sealed: encryptMetadata({ dataKey, blobId: 'b', metadata: { ...base, filename: 'a' } }),
    });
    expect('files' in single).toBe(false);
    const empty = decryptMetadata({
      dataKey,
      blobId: 'b',
      sealed: encryptMetadata({ dataKey, blobId: 'b', metadata: { ...base, filename: 'a', files: [] } }),
    });
    expect(empty.files).toEqual([]);
  });

  it('refuses to seal malformed entries or metadata too large for the last bucket', () => {
    const seal = (metadata: FileMetadata) => () => encryptMetadata({ dataKey, blobId: 'b', metadata });
    expect(seal({ ...base, filename: 'a', files: [{ name: 'x', size: -1 }] })).toThrow(RangeError);
    expect(seal({ ...base, filename: 'a', files: [{ name: 'x', size: 0.5 }] })).toThrow(RangeError);
    expect(seal({ ...base, filename: 'a', files: [{ name: 3 as unknown as string, size: 1 }] })).toThrow(RangeError);
    expect(seal({ ...base, filename: 'x'.repeat(METADATA_MAX_BUCKET) })).toThrow(RangeError);
  });

  it('does not open under another blob id or data key, nor after any byte is flipped', () => {
    const sealed = encryptMetadata({ dataKey, blobId: 'blob-1', metadata: { ...base, filename: 'a' } });
    expectIntegrityFailure(() => decryptMetadata({ dataKey, blobId: 'blob-2', sealed }), SEALED_METADATA);
    expectIntegrityFailure(() => decryptMetadata({ dataKey: randomBytes(32), blobId: 'blob-1', sealed }), SEALED_METADATA);
    for (const at of [0, 1, 12, 13, 500, sealed.length - 17, sealed.length - 1]) {
      const flipped = Buffer.from(sealed);
      flipped[at] = flipped[at]! ^ 0x01;
      expectIntegrityFailure(() => decryptMetadata({ dataKey, blobId: 'blob-1', sealed: flipped }), SEALED_METADATA);
    }
    expectIntegrityFailure(() => decryptMetadata({ dataKey, blobId: 'blob-1', sealed: sealed.subarray(0, 28) }), SEALED_METADATA);
    expectIntegrityFailure(
      () => decryptMetadata({ dataKey, blobId: 'blob-1', sealed: sealed.subarray(0, sealed.length - 1) }),
      SEALED_METADATA,
    );
  });
});
