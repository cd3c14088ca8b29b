import type { TestProject } from 'vitest/node';
import { startTestS3 } from './s3-server.js';

/**
 * Global setup of the s3 project: one S3-protocol server for all its files (s3rver in its own
 * process, or the bucket that CBX_TEST_S3_* names). Tests share it and stay apart by key prefix:
 * each app, worker or store works under `<its Redis prefix>/` (tests/helpers/engine.ts).
 */
export default async function setup(project: TestProject) {
  const s3 = await startTestS3();
  project.provide('s3Target', {
    kind: s3.kind,
    endpoint: s3.endpoint ?? null,
    region: s3.region,
    bucket: s3.bucket,
    credentials: s3.credentials ?? null,
    forcePathStyle: s3.forcePathStyle,
    directory: s3.server?.directory ?? null,
  });
  return async () => {
    await s3.destroy();
  };
}
