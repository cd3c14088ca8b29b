import { randomBytes } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import type { S3StoreOptions } from '../../app/blobs/s3-options.js';
import { createS3Store, type S3BlobStore } from '../../app/blobs/s3-store.js';
import { createSilentLogger } from '../../app/shared/logger.js';
import { S3RVER_CREDENTIALS, startS3rver, type S3rver } from '../../scripts/bench/s3rver.js';

/**
 * The S3 target of the suite. By default a real s3rver in its own process on loopback, started here
 * and removed afterwards. Set CBX_TEST_S3_BUCKET (with CBX_TEST_S3_ENDPOINT for MinIO/R2/…, unset for
 * AWS; CBX_TEST_S3_REGION, CBX_TEST_S3_ACCESS_KEY_ID, CBX_TEST_S3_SECRET_ACCESS_KEY,
 * CBX_TEST_S3_FORCE_PATH_STYLE) to run the same tests against that bucket instead: every test works
 * under a prefix of its own and deletes it afterwards. Tests that need to stop the server or read its
 * raw files run only against the suite's own s3rver.
 */
export interface TestS3 {
  kind: 's3rver' | 'external';
  endpoint: string | undefined;
  region: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  forcePathStyle: boolean;
  /** The suite's own server (stop, start, raw files), or null for an external target. */
  server: S3rver | null;
  /** A prefix no other test uses (emptied by `destroy()`). */
  newPrefix(): string;
  /** A store on this target under `prefix`; closed and emptied by `destroy()`. */
  store(options: Partial<S3StoreOptions> & { prefix: string }): S3BlobStore;
  /** A raw SDK client on the target, for what the engine must not be trusted to report about itself. */
  client(): S3Client;
  /** Deletes everything the tests wrote, closes every client, stops the server. */
  destroy(): Promise<void>;
}

export async function startTestS3(): Promise<TestS3> {
  const env = process.env;
  const external = env.CBX_TEST_S3_BUCKET !== undefined && env.CBX_TEST_S3_BUCKET !== '';
  const server = external ? null : await startS3rver({ bucket: 'cbx-test' });
  const endpoint = external ? env.CBX_TEST_S3_ENDPOINT || undefined : server!.endpoint;
  const credentials = external
    ? env.CBX_TEST_S3_ACCESS_KEY_ID
      ? { accessKeyId: env.CBX_TEST_S3_ACCESS_KEY_ID, secretAccessKey: env.CBX_TEST_S3_SECRET_ACCESS_KEY ?? '' }
      : undefined
    : { ...S3RVER_CREDENTIALS };
  const target = {
    endpoint,
    region: env.CBX_TEST_S3_REGION || 'us-east-1',
    bucket: external ? env.CBX_TEST_S3_BUCKET! : server!.bucket,
    credentials,
    forcePathStyle: env.CBX_TEST_S3_FORCE_PATH_STYLE ? env.CBX_TEST_S3_FORCE_PATH_STYLE === 'true' : endpoint !== undefined,
  };
  const runId = randomBytes(4).toString('hex');
  let prefixes = 0;
  const stores: S3BlobStore[] = [];
  const usedPrefixes = new Set<string>();
  const clients: S3Client[] = [];

  return {
    kind: external ? 'external' : 's3rver',
    ...target,
    server,
    newPrefix() {
      const prefix = `cbx-test-${runId}-${++prefixes}/`;
      usedPrefixes.add(prefix);
      return prefix;
    },
    store(options) {
      usedPrefixes.add(options.prefix);
      const store = createS3Store({ ...target, log: createSilentLogger(), ...options });
      stores.push(store);
      return store;
    },
    client() {
      const client = new S3Client({ ...target, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
      clients.push(client);
      return client;
    },
    async destroy() {
      try {
        // The suite's own s3rver goes with its directory; an external bucket is emptied prefix by prefix.
        if (server === null) {
          for (const prefix of usedPrefixes) {
            const cleaner = createS3Store({ ...target, prefix, log: createSilentLogger() });
            for await (const entry of cleaner.list()) await cleaner.destroyEntry(entry, 'test cleanup');
            await cleaner.close();
          }
        }
      } finally {
        for (const store of stores) await store.close();
        for (const client of clients) client.destroy();
        await server?.destroy();
      }
    },
  };
}
