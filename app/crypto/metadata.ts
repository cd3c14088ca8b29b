/**
 * The sealed metadata of a record (docs/FORMAT.md, "Metadata"): filename, MIME type, SHA-256 and, for
 * a drop, its entries, encrypted under a key derived from the data key. Version 2 pads the JSON to a
 * size bucket (1 KiB, then powers of two) so the sealed size does not reveal the filename's length;
 * version 1 (unpadded) records still open.
 */
import { randomBytes } from 'node:crypto';
import { integrityCheckFailed } from './crypto.errors.js';
import { ENVELOPE_OVERHEAD, NONCE_LENGTH, hkdf, open, seal } from './envelope.js';
import { DATA_KEY_LENGTH } from './stream.js';

/** One entry of a multi-file drop, as shown by status and preview. */
export interface FileEntry {
  name: string;
  size: number;
}

export interface FileMetadata {
  filename: string;
  mimeType: string;
  sha256: string;
  /** The entries of a multi-file drop; absent for a single file. */
  files?: FileEntry[];
}

const METADATA_V1 = 1;
const METADATA_V2 = 2;
/**
 * Every name the app accepts (at most 255 UTF-16 units, so at most 765 UTF-8 bytes) with the longest
 * detected MIME type and the hash fits in this first bucket, so every single-file record seals to the
 * same size. Drops grow by doubling: the size then tells only the order of magnitude of the list.
 */
export const METADATA_MIN_BUCKET = 1024;
/** 2^27 = 128 MiB: 100 000 entries with ~1 KiB paths still fit; Redis refuses strings over 512 MB. */
export const METADATA_MAX_BUCKET = 2 ** 27;
const LENGTH_PREFIX = 4;
const METADATA_INFO = 'cinderbox metadata v1';

/** A key of its own (distinct HKDF info), so the metadata never shares a key or nonce space with the payload. */
function metadataKey(dataKey: Buffer): Buffer {
  if (dataKey.length !== DATA_KEY_LENGTH) throw new RangeError(`dataKey must be ${DATA_KEY_LENGTH} bytes`);
  return hkdf(dataKey, METADATA_INFO);
}

/** The padded plaintext size for `jsonLength` bytes of JSON; undefined above the largest bucket. */
export function metadataBucket(jsonLength: number): number | undefined {
  const needed = LENGTH_PREFIX + jsonLength;
  for (let bucket = METADATA_MIN_BUCKET; bucket <= METADATA_MAX_BUCKET; bucket *= 2) {
    if (needed <= bucket) return bucket;
  }
  return undefined;
}

function isFileEntry(value: unknown): value is FileEntry {
  if (typeof value !== 'object' || value === null) return false;
  const { name, size } = value as Record<string, unknown>;
  return typeof name === 'string' && typeof size === 'number' && Number.isSafeInteger(size) && size >= 0;
}

/** The JSON a version 2 writer produces: the three strings, then `files` only for a drop. */
function metadataJson(metadata: FileMetadata): Buffer {
  const { filename, mimeType, sha256, files } = metadata;
  if (typeof filename !== 'string' || typeof mimeType !== 'string' || typeof sha256 !== 'string') {
    throw new RangeError('filename, mimeType and sha256 must be strings');
  }
  if (files !== undefined && !(Array.isArray(files) && files.every(isFileEntry))) {
    throw new RangeError('files must be a list of {name: string, size: non-negative integer}');
  }
  const value =
    files === undefined
      ? { filename, mimeType, sha256 }
      : { filename, mimeType, sha256, files: files.map(({ name, size }) => ({ name, size })) };
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** uint32(length of json) || json || zero bytes up to the bucket. */
function pad(json: Buffer): Buffer {
  const bucket = metadataBucket(json.length);
  if (bucket === undefined) throw new RangeError(`metadata must fit in ${METADATA_MAX_BUCKET} bytes once padded`);
  const padded = Buffer.alloc(bucket); // zero-filled: the padding
  padded.writeUInt32BE(json.length, 0);
  json.copy(padded, LENGTH_PREFIX);
  return padded;
}

const ZEROS = Buffer.alloc(65536);

/**
 * The JSON inside a version 2 plaintext, or undefined unless it is exactly what pad() writes: the
 * smallest bucket that holds the JSON, and nothing but zero bytes after it.
 */
function unpad(padded: Buffer): Buffer | undefined {
  if (padded.length < LENGTH_PREFIX) return undefined;
  const length = padded.readUInt32BE(0);
  if (metadataBucket(length) !== padded.length) return undefined;
  for (let at = LENGTH_PREFIX + length; at < padded.length; at += ZEROS.length) {
    const piece = padded.subarray(at, Math.min(padded.length, at + ZEROS.length));
    if (!piece.equals(ZEROS.subarray(0, piece.length))) return undefined;
  }
  return padded.subarray(LENGTH_PREFIX, LENGTH_PREFIX + length);
}

/** The envelope's size for this metadata under version 2 (what the Redis field holds, before base64). */
export function sealedMetadataSize(metadata: FileMetadata): number {
  const bucket = metadataBucket(metadataJson(metadata).length);
  if (bucket === undefined) throw new RangeError(`metadata must fit in ${METADATA_MAX_BUCKET} bytes once padded`);
  return ENVELOPE_OVERHEAD + bucket;
}

/**
 * Seals metadata as version 2 (padded). Returns the binary envelope; the repository decides how to
 * store it (e.g. base64 in a hash field). Throws RangeError for metadata too large for the last bucket.
 */
export function encryptMetadata(options: { dataKey: Buffer; blobId: string; metadata: FileMetadata; nonce?: Buffer }): Buffer {
  return seal({
    version: METADATA_V2,
    key: metadataKey(options.dataKey),
    plaintext: pad(metadataJson(options.metadata)),
    context: Buffer.from(options.blobId, 'utf8'),
    nonce: options.nonce ?? randomBytes(NONCE_LENGTH),
  });
}

/**
 * Opens version 1 and version 2 envelopes. Every failure (tag, padding, UTF-8, JSON shape) is
 * INTEGRITY_CHECK_FAILED with reason `metadata`; padding is checked only after the tag verified.
 */
export function decryptMetadata(options: { dataKey: Buffer; blobId: string; sealed: Buffer }): FileMetadata {
  const plaintext = open({
    versions: [METADATA_V1, METADATA_V2],
    key: metadataKey(options.dataKey),
    sealed: options.sealed,
    context: Buffer.from(options.blobId, 'utf8'),
    reason: 'metadata',
  });
  const version = options.sealed[0];
  const json = version === METADATA_V1 ? plaintext : unpad(plaintext);
  if (json === undefined) throw integrityCheckFailed('metadata');
  let value: unknown;
  try {
    // Version 1 was read leniently; version 2 refuses invalid UTF-8 instead of replacing it.
    const text = version === METADATA_V1 ? json.toString('utf8') : new TextDecoder('utf-8', { fatal: true }).decode(json);
    value = JSON.parse(text);
  } catch (error) {
    throw integrityCheckFailed('metadata', 0, error);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw integrityCheckFailed('metadata');
  const { filename, mimeType, sha256, files } = value as Record<string, unknown>;
  if (typeof filename !== 'string' || typeof mimeType !== 'string' || typeof sha256 !== 'string') {
    throw integrityCheckFailed('metadata');
  }
  // Version 1 never had entries; its reader ignored unknown keys, and still does.
  if (version === METADATA_V1 || files === undefined) return { filename, mimeType, sha256 };
  if (!Array.isArray(files) || !files.every(isFileEntry)) throw integrityCheckFailed('metadata');
  return { filename, mimeType, sha256, files: files.map(({ name, size }) => ({ name, size })) };
}
