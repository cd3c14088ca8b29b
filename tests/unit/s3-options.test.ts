import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import { choosePartSize, MAX_PARTS, MIN_PART_SIZE, s3OptionsFromConfig } from '../../app/blobs/s3-options.js';
import { ciphertextSize } from '../../app/crypto/stream.js';
import { maxArchiveBytes } from '../../app/uploads/drop.models.js';
import { problemsOf } from '../helpers/config.js';

describe('s3 configuration', () => {
  it('keeps fs the default, so the run command needs nothing but Redis', () => {
    expect(loadConfig({}).storageBackend).toBe('fs');
    expect(problemsOf({ STORAGE_BACKEND: 'fs' })).toEqual([]);
  });

  it('requires S3_BUCKET only when STORAGE_BACKEND=s3, in one line naming it', () => {
    expect(problemsOf({ STORAGE_BACKEND: 's3' })).toEqual(['S3_BUCKET: required when STORAGE_BACKEND=s3']);
    expect(problemsOf({ STORAGE_BACKEND: 's3', S3_BUCKET: 'cinderbox' })).toEqual([]);
  });

  it('takes the access key and the secret together or not at all, and never quotes the secret', () => {
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    expect(problemsOf({ S3_SECRET_ACCESS_KEY: secret })).toEqual(['S3_ACCESS_KEY_ID: required when S3_SECRET_ACCESS_KEY is set']);
    expect(problemsOf({ S3_ACCESS_KEY_ID: 'AKIDEXAMPLE' })).toEqual(['S3_SECRET_ACCESS_KEY: required when S3_ACCESS_KEY_ID is set']);
    expect(problemsOf({ S3_ACCESS_KEY_ID: 'AKIDEXAMPLE', S3_SECRET_ACCESS_KEY: secret })).toEqual([]);
    expect(
      problemsOf({ S3_ACCESS_KEY_ID: 'AKIDEXAMPLE', S3_SECRET_ACCESS_KEY: secret, PORT: 'x', S3_BUCKET: 'A B' }).join('\n'),
    ).not.toContain(secret);
  });

  it('uses path-style URLs by default exactly when S3_ENDPOINT is set, unless told otherwise', () => {
    const options = (env: Record<string, string>) =>
      s3OptionsFromConfig(loadConfig({ STORAGE_BACKEND: 's3', S3_BUCKET: 'cinderbox', ...env }));
    expect(options({}).forcePathStyle).toBe(false);
    expect(options({}).endpoint).toBeUndefined();
    expect(options({ S3_ENDPOINT: 'http://minio:9000' }).forcePathStyle).toBe(true);
    expect(options({ S3_ENDPOINT: 'https://acct.r2.cloudflarestorage.com', S3_FORCE_PATH_STYLE: 'false' }).forcePathStyle).toBe(false);
    expect(options({ S3_FORCE_PATH_STYLE: 'true' }).forcePathStyle).toBe(true);
  });

  it('builds the store options from the config: prefix, region, credentials or the default chain', () => {
    const config = loadConfig({
      STORAGE_BACKEND: 's3',
      S3_BUCKET: 'cinderbox',
      S3_REGION: 'auto',
      S3_PREFIX: 'cbx/blobs/',
      S3_ACCESS_KEY_ID: 'id',
      S3_SECRET_ACCESS_KEY: 'secret',
    });
    expect(s3OptionsFromConfig(config)).toMatchObject({
      bucket: 'cinderbox',
      region: 'auto',
      prefix: 'cbx/blobs/',
      credentials: { accessKeyId: 'id', secretAccessKey: 'secret' },
    });
    expect(s3OptionsFromConfig(loadConfig({ STORAGE_BACKEND: 's3', S3_BUCKET: 'cinderbox' })).credentials).toBeUndefined();
  });

  it('refuses prefixes that could reach outside Cinderbox’s own space', () => {
    for (const prefix of ['', '/blobs/', 'a//b/', '../blobs/', 'blobs/../x/', 'has space/'])
      expect(problemsOf({ S3_PREFIX: prefix }), prefix).toHaveLength(1);
    // Not a folder: S3 lists by string prefix, so `cinderbox` also lists `cinderbox-backups/…`, which the sweep would delete.
    for (const prefix of ['cinderbox', 'cinderbox-', 'a/b/c']) expect(problemsOf({ S3_PREFIX: prefix }), prefix).toHaveLength(1);
    for (const prefix of ['blobs/', 'cinderbox-blobs/', 'a/b/c/']) expect(problemsOf({ S3_PREFIX: prefix }), prefix).toEqual([]);
  });

  it('raises the part size so the largest upload fits in 10,000 parts', () => {
    expect(choosePartSize(MIN_PART_SIZE, ciphertextSize(10 * 1024 * 1024))).toBe(MIN_PART_SIZE);
    const large = ciphertextSize(100 * 1024 ** 3);
    const part = choosePartSize(MIN_PART_SIZE, large);
    expect(part * MAX_PARTS).toBeGreaterThanOrEqual(large);
    expect(part % (1024 * 1024)).toBe(0);
    const config = loadConfig({ STORAGE_BACKEND: 's3', S3_BUCKET: 'b-1', MAX_FILE_SIZE: String(100 * 1024 ** 3) });
    expect(s3OptionsFromConfig(config).maxObjectBytes).toBe(ciphertextSize(maxArchiveBytes(config)));
    expect(() => choosePartSize(MIN_PART_SIZE - 1, undefined)).toThrow(RangeError);
  });

  // A drop of MAX_FILE_SIZE holds its zip records too: a part size that MAX_FILE_SIZE alone just fits
  // into 10,000 parts failed such a drop at its 10,001st part, after its whole body had arrived.
  it('sizes parts for the largest drop, its zip records included', () => {
    let fits = 0;
    for (let step = 2 ** 40; step >= 1; step /= 2) if (ciphertextSize(fits + step) <= MAX_PARTS * MIN_PART_SIZE) fits += step;
    const config = loadConfig({ STORAGE_BACKEND: 's3', S3_BUCKET: 'cinderbox', MAX_FILE_SIZE: String(fits) });
    const partSize = choosePartSize(MIN_PART_SIZE, s3OptionsFromConfig(config).maxObjectBytes);
    expect(partSize * MAX_PARTS).toBeGreaterThanOrEqual(ciphertextSize(maxArchiveBytes(config)));
  });
});
