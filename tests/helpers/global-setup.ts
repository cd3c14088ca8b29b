import type { TestProject } from 'vitest/node';
import type { EngineName, S3Target } from './engine.js';
import { startTestRedis } from './redis-server.js';

/**
 * The root of the run: one real Redis for both projects (every test isolates itself with its own key
 * prefix and queue). The engine of each project comes from its `provide` in vitest.config.ts.
 */
export default async function setup(project: TestProject) {
  const redis = await startTestRedis();
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.destroy();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    /** The storage engine every app, worker and storage helper of this project runs on. */
    engine: EngineName;
    /** The s3 project's store (the suite's own s3rver, or CBX_TEST_S3_*); null in the fs project. */
    s3Target: S3Target | null;
  }
}
