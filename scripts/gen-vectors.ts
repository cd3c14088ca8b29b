/**
 * Writes tests/vectors/*.json. A second, one-shot implementation written from docs/FORMAT.md and
 * importing nothing from app/, so the committed bytes check the streaming code against the written
 * format rather than against itself. Run: npx tsx scripts/gen-vectors.ts
 */
import { createCipheriv, createHash, hkdfSync, scryptSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';

const CHUNK = 65536;
const bytes = (length: number, start: number) => Buffer.from(Array.from({ length }, (_, i) => (start + i) & 0xff));
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const hkdf = (ikm: Buffer, salt: Buffer, info: Buffer) => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

function gcm(key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function encryptStream(dataKey: Buffer, blobId: string, salt: Buffer, plaintext: Buffer) {
  const header = Buffer.concat([Buffer.from('CBOX'), Buffer.from([1, 1, 0, 1, 0, 0]), salt]);
  const payloadKey = hkdf(dataKey, salt, Buffer.from(`cinderbox payload v1${blobId}`, 'utf8'));
  const count = Math.max(1, Math.ceil(plaintext.length / CHUNK));
  const parts: Buffer[] = [header];
  for (let i = 0; i < count; i += 1) {
    const nonce = Buffer.alloc(12);
    nonce.writeUIntBE(i, 5, 6);
    nonce[11] = i === count - 1 ? 1 : 0;
    parts.push(gcm(payloadKey, nonce, header, plaintext.subarray(i * CHUNK, (i + 1) * CHUNK)));
  }
  return { header, payloadKey, ciphertext: Buffer.concat(parts) };
}

const dataKey = bytes(32, 0x00);
const salt = bytes(32, 0x80);
const blobId = 'vector-blob-0001';
const pattern = (length: number) => Buffer.from(Array.from({ length }, (_, i) => i % 251));

const streamCases = [
  { name: 'empty', plaintext: Buffer.alloc(0) },
  { name: 'five bytes', plaintext: Buffer.from('hello', 'utf8') },
  { name: 'one chunk and three bytes', plaintext: pattern(CHUNK + 3) },
].map(({ name, plaintext }) => {
  const { header, payloadKey, ciphertext } = encryptStream(dataKey, blobId, salt, plaintext);
  const short = ciphertext.length <= 256;
  return {
    name,
    plaintextLength: plaintext.length,
    plaintextHex: short ? plaintext.toString('hex') : undefined,
    headerHex: header.toString('hex'),
    payloadKeyHex: payloadKey.toString('hex'),
    ciphertextLength: ciphertext.length,
    ciphertextSha256: sha256(ciphertext),
    ciphertextHex: short ? ciphertext.toString('hex') : undefined,
    ciphertextFirst128Hex: short ? undefined : ciphertext.subarray(0, 128).toString('hex'),
    ciphertextLast64Hex: short ? undefined : ciphertext.subarray(-64).toString('hex'),
  };
});

const kdf = {
  passphrase: 'correct-horse-battery-staple',
  secret: 'cinderbox-test-vector-secret-0123456789abcdef',
  costLog2: 10,
};
const scryptSalt = createHash('sha256').update('cinderbox scrypt v1').update(kdf.secret).digest();
const master = scryptSync(kdf.passphrase, scryptSalt, 32, { N: 2 ** kdf.costLog2, r: 8, p: 1 });
const lookupId = hkdf(master, Buffer.alloc(0), Buffer.from('cinderbox lookup id v1')).toString('hex');
const kek = hkdf(master, Buffer.alloc(0), Buffer.from('cinderbox kek v1'));

const envelope = (key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer) =>
  Buffer.concat([Buffer.from([1]), nonce, gcm(key, nonce, Buffer.concat([Buffer.from([1]), aad]), plaintext)]);

const wrapNonce = bytes(12, 0x40);
const wrapped = envelope(kek, wrapNonce, Buffer.from(lookupId, 'hex'), dataKey);

const metadata = { filename: 'Report – 2026.pdf', mimeType: 'application/pdf', sha256: sha256('report') };
const metadataNonce = bytes(12, 0x50);
const metadataKey = hkdf(dataKey, Buffer.alloc(0), Buffer.from('cinderbox metadata v1'));
const sealedMetadata = envelope(metadataKey, metadataNonce, Buffer.from(blobId, 'utf8'), Buffer.from(JSON.stringify(metadata)));

// Metadata version 2: uint32(len) || JSON || zeros, padded to the smallest of 1 KiB · 2^k that holds it.
function bucketFor(jsonLength: number): number {
  let bucket = 1024;
  while (bucket < 4 + jsonLength) bucket *= 2;
  if (bucket > 2 ** 27) throw new Error('metadata too large');
  return bucket;
}
function padJson(json: Buffer): Buffer {
  const plaintext = Buffer.alloc(bucketFor(json.length));
  plaintext.writeUInt32BE(json.length, 0);
  json.copy(plaintext, 4);
  return plaintext;
}
const envelopeV2 = (nonce: Buffer, plaintext: Buffer) =>
  Buffer.concat([
    Buffer.from([2]),
    nonce,
    gcm(metadataKey, nonce, Buffer.concat([Buffer.from([2]), Buffer.from(blobId, 'utf8')]), plaintext),
  ]);

interface MetadataV2Input {
  filename: string;
  mimeType: string;
  sha256: string;
  files?: { name: string; size: number }[];
}
const v2Json = (m: MetadataV2Input) =>
  Buffer.from(
    JSON.stringify(
      m.files
        ? { filename: m.filename, mimeType: m.mimeType, sha256: m.sha256, files: m.files }
        : { filename: m.filename, mimeType: m.mimeType, sha256: m.sha256 },
    ),
    'utf8',
  );
const entries = (count: number) =>
  Array.from({ length: count }, (_, i) => ({ name: `photos/2026/IMG_${String(i).padStart(5, '0')}.jpg`, size: i * 1000 + 7 }));
const v2Nonce = bytes(12, 0x60);
const metadataV2Cases = [
  { name: 'one-character name', metadata: { filename: 'a', mimeType: 'text/plain', sha256: sha256('a') } },
  { name: 'sixty-character name', metadata: { filename: `${'x'.repeat(56)}.txt`, mimeType: 'text/plain', sha256: sha256('a') } },
  {
    name: 'longest name the app accepts, in a three-byte script, with a long type',
    metadata: {
      filename: '語'.repeat(255),
      mimeType: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
      sha256: sha256('b'),
    },
  },
  {
    name: 'drop of three entries',
    metadata: { filename: 'a.pdf-and-2-more.zip', mimeType: 'application/zip', sha256: sha256('c'), files: entries(3) },
  },
  {
    name: 'drop of forty entries (4 KiB bucket)',
    metadata: { filename: 'photos.zip', mimeType: 'application/zip', sha256: sha256('d'), files: entries(40) },
  },
  {
    name: 'drop of 3000 entries (256 KiB bucket)',
    metadata: { filename: 'photos.zip', mimeType: 'application/zip', sha256: sha256('e'), files: entries(3000) },
  },
].map(({ name, metadata }) => {
  const json = v2Json(metadata);
  const sealed = envelopeV2(v2Nonce, padJson(json));
  const short = sealed.length <= 1100;
  // Long entry lists are given by their count (the rule is in the comment), to keep the file small.
  const { files, ...fields } = metadata as MetadataV2Input;
  return {
    name,
    metadata: files && files.length > 3 ? fields : metadata,
    entryCount: files && files.length > 3 ? files.length : undefined,
    jsonLength: json.length,
    bucket: bucketFor(json.length),
    sealedLength: sealed.length,
    sealedSha256: sha256(sealed),
    sealedHex: short ? sealed.toString('hex') : undefined,
    sealedFirst64Hex: short ? undefined : sealed.subarray(0, 64).toString('hex'),
  };
});

// Authentic envelopes (the tag verifies) around plaintexts no writer produces: a reader must refuse each.
const goodJson = v2Json({ filename: 'a', mimeType: 'text/plain', sha256: sha256('a') });
const withByte = (buffer: Buffer, at: number, value: number) => {
  const copy = Buffer.from(buffer);
  copy[at] = value;
  return copy;
};
const lengthPrefixed = (json: Buffer, size: number) => {
  const plaintext = Buffer.alloc(size);
  plaintext.writeUInt32BE(json.length, 0);
  json.copy(plaintext, 4);
  return plaintext;
};
const badPaddingCases = [
  { name: 'a non-zero byte in the padding', plaintext: withByte(padJson(goodJson), 1023, 0x01) },
  { name: 'a length past the end of the bucket', plaintext: withByte(padJson(goodJson), 2, 0x04) },
  { name: 'a length of zero (the JSON is then padding)', plaintext: withByte(padJson(goodJson), 3, 0x00) },
  { name: 'a plaintext that is not a bucket size', plaintext: lengthPrefixed(goodJson, 1000) },
  { name: 'a larger bucket than the JSON needs', plaintext: lengthPrefixed(goodJson, 2048) },
  { name: 'an empty plaintext', plaintext: Buffer.alloc(0) },
  {
    name: 'invalid UTF-8 in the JSON',
    plaintext: padJson(
      Buffer.concat([Buffer.from('{"filename":"'), Buffer.from([0xc3, 0x28]), Buffer.from('","mimeType":"text/plain","sha256":""}')]),
    ),
  },
  { name: 'JSON that is not an object', plaintext: padJson(Buffer.from('["a","text/plain",""]')) },
  { name: 'a missing field', plaintext: padJson(Buffer.from('{"filename":"a","mimeType":"text/plain"}')) },
  {
    name: 'an entry with a negative size',
    plaintext: padJson(Buffer.from('{"filename":"a","mimeType":"t","sha256":"","files":[{"name":"x","size":-1}]}')),
  },
  {
    name: 'an entry with a fractional size',
    plaintext: padJson(Buffer.from('{"filename":"a","mimeType":"t","sha256":"","files":[{"name":"x","size":1.5}]}')),
  },
  {
    name: 'files that is not a list',
    plaintext: padJson(Buffer.from('{"filename":"a","mimeType":"t","sha256":"","files":{"name":"x","size":1}}')),
  },
].map(({ name, plaintext }) => ({ name, sealedHex: envelopeV2(v2Nonce, plaintext).toString('hex') }));

// Ranges: plaintext bytes start..end (inclusive) of a file of `size` bytes.
function planRange(size: number, start: number, end?: number) {
  const last = Math.min(end ?? size - 1, size - 1);
  if (start >= size || last < start) return null;
  const sealed = CHUNK + 16;
  const finalChunk = Math.ceil(size / CHUNK) - 1;
  const firstChunk = Math.floor(start / CHUNK);
  const lastChunk = Math.floor(last / CHUNK);
  const lastSealed = lastChunk < finalChunk ? sealed : size - lastChunk * CHUNK + 16;
  return {
    length: last - start + 1,
    end: last,
    firstChunk,
    lastChunk,
    finalChunk,
    skip: start % CHUNK,
    ciphertextStart: 42 + firstChunk * sealed,
    ciphertextEnd: 42 + lastChunk * sealed + lastSealed - 1,
  };
}
const rangeInputs: [number, number, number | undefined][] = [
  [1, 0, 0],
  [1, 0, undefined],
  [1, 0, 5],
  [5, 2, 3],
  [CHUNK - 1, 0, CHUNK - 2],
  [CHUNK, CHUNK - 1, undefined],
  [CHUNK, 100, 200],
  [CHUNK + 1, CHUNK, undefined],
  [CHUNK + 1, CHUNK - 1, CHUNK],
  [CHUNK + 1, 0, CHUNK - 1],
  [3 * CHUNK + 5, CHUNK, 2 * CHUNK - 1],
  [3 * CHUNK + 5, CHUNK + 7, 2 * CHUNK + 9],
  [3 * CHUNK + 5, 3 * CHUNK + 4, undefined],
  [3 * CHUNK + 5, 3 * CHUNK, 3 * CHUNK + 2],
  [3 * CHUNK, 3 * CHUNK - 1, 10 * CHUNK],
  [2 ** 40 + 3, 2 ** 39 + 12345, 2 ** 40],
  [0, 0, undefined],
  [0, 0, 0],
  [5, 5, undefined],
  [5, 7, 9],
  [5, 3, 2],
];
const rangeCases = rangeInputs.map(([size, start, end]) => ({ size, start, end: end ?? null, plan: planRange(size, start, end) }));

// Resume capability: ETag "r1.<base64url(token)>"; HKDF(token, SHA-256("cinderbox resume v1" || secret), info).
const resumeToken = bytes(32, 0xa0);
const resumeSaltBytes = createHash('sha256').update('cinderbox resume v1').update(kdf.secret).digest();
const resumeId = hkdf(resumeToken, resumeSaltBytes, Buffer.from('cinderbox resume id v1')).toString('hex');
const resumeKek = hkdf(resumeToken, resumeSaltBytes, Buffer.from('cinderbox resume kek v1'));
const resumeNonce = bytes(12, 0x70);
const resumeContext = Buffer.concat([Buffer.from(resumeId, 'hex'), Buffer.from(blobId, 'utf8')]);
const resumeWrapped = envelope(resumeKek, resumeNonce, resumeContext, dataKey);

const stream = {
  comment: 'Generated by scripts/gen-vectors.ts from docs/FORMAT.md. Long plaintexts: byte i = i mod 251.',
  dataKeyHex: dataKey.toString('hex'),
  blobId,
  saltHex: salt.toString('hex'),
  cases: streamCases,
};
const keys = {
  comment: 'Generated by scripts/gen-vectors.ts from docs/FORMAT.md.',
  kdf: {
    ...kdf,
    scryptSaltHex: scryptSalt.toString('hex'),
    masterHex: master.toString('hex'),
    lookupId,
    kekHex: kek.toString('hex'),
  },
  wrap: {
    dataKeyHex: dataKey.toString('hex'),
    kekHex: kek.toString('hex'),
    lookupId,
    nonceHex: wrapNonce.toString('hex'),
    wrappedHex: wrapped.toString('hex'),
  },
  metadata: {
    dataKeyHex: dataKey.toString('hex'),
    blobId,
    metadata,
    nonceHex: metadataNonce.toString('hex'),
    metadataKeyHex: metadataKey.toString('hex'),
    sealedHex: sealedMetadata.toString('hex'),
  },
  deleteToken: { token: 'vector-delete-token', hashHex: sha256('vector-delete-token') },
};

const dir = new URL('../tests/vectors/', import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(new URL('stream.json', dir), `${JSON.stringify(stream, null, 2)}\n`);
writeFileSync(new URL('keys.json', dir), `${JSON.stringify(keys, null, 2)}\n`);
const metadataVectors = {
  comment:
    'Generated by scripts/gen-vectors.ts from docs/FORMAT.md: metadata version 2 (padded). Version 1 is in keys.json. ' +
    'entryCount n: files = entries i = 0..n-1 with name "photos/2026/IMG_" + i as 5 decimal digits + ".jpg" and size i*1000+7.',
  dataKeyHex: dataKey.toString('hex'),
  blobId,
  metadataKeyHex: metadataKey.toString('hex'),
  nonceHex: v2Nonce.toString('hex'),
  cases: metadataV2Cases,
  badPadding: badPaddingCases,
};
const rangeVectors = {
  comment: 'Generated by scripts/gen-vectors.ts from docs/FORMAT.md. end null = "bytes=start-"; plan null = unsatisfiable (416).',
  cases: rangeCases,
};
const resumeVectors = {
  comment: 'Generated by scripts/gen-vectors.ts from docs/FORMAT.md.',
  secret: kdf.secret,
  tokenHex: resumeToken.toString('hex'),
  etag: `"r1.${resumeToken.toString('base64url')}"`,
  saltHex: resumeSaltBytes.toString('hex'),
  resumeId,
  kekHex: resumeKek.toString('hex'),
  wrap: { dataKeyHex: dataKey.toString('hex'), blobId, nonceHex: resumeNonce.toString('hex'), wrappedHex: resumeWrapped.toString('hex') },
};
writeFileSync(new URL('metadata.json', dir), `${JSON.stringify(metadataVectors, null, 2)}\n`);
writeFileSync(new URL('ranges.json', dir), `${JSON.stringify(rangeVectors, null, 2)}\n`);
writeFileSync(new URL('resume.json', dir), `${JSON.stringify(resumeVectors, null, 2)}\n`);
