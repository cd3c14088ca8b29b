import type { TestProject } from 'vitest/node';
import { startTestRedis } from './redis-server.js';

/** One real Redis for the suite; every test isolates itself with its own key prefix and queue. */
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
  }
}
