import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../app/shared/logger.js';
import { createWorkerRedis } from '../../app/shared/redis.js';
import { watchRedisPersistence } from '../../workers/redis-persistence.js';
import { startRedisNode, until, type RedisNode } from '../helpers/sentinel.js';

// The worker's check against real servers configured the ways an operator might (REDIS_URL mode;
// the Sentinel mode, with replicas, runs in sentinel.test.ts).
interface Line {
  level: string;
  event: string;
  fields: Record<string, unknown>;
}

function recordingLogger(lines: Line[]): Logger {
  const at =
    (level: string) =>
    (event: string, fields: Record<string, unknown> = {}) =>
      void lines.push({ level, event, fields });
  const log: Logger = {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: () => log,
    close: async () => undefined,
  };
  return log;
}

let dir: string;
const nodes: RedisNode[] = [];
const clients: Redis[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-persist-'));
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.disconnect();
  await Promise.all(nodes.splice(0).map((n) => n.kill()));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function check(args: string[]): Promise<{ lines: Line[]; node: RedisNode }> {
  const node = await startRedisNode({ dir, args });
  nodes.push(node);
  const lines: Line[] = [];
  const redis = createWorkerRedis(node.url);
  redis.on('error', () => undefined);
  clients.push(redis);
  watchRedisPersistence({ redis, target: { redisUrl: node.url }, log: recordingLogger(lines) });
  await until('a persistence pass', async () => lines.some((l) => l.event === 'redis_persistence_checked'), 5_000);
  return { lines, node };
}

describe("the worker's persistence check", () => {
  it('is quiet about a node run as documented', async () => {
    const { lines } = await check([]);
    expect(lines.filter((l) => l.level === 'warn')).toEqual([]);
    expect(lines.find((l) => l.event === 'redis_persistence_checked')?.fields).toEqual({ nodes: 1, warnings: 0 });
  });

  it('warns about snapshots, an append-only file and disk-based sync, naming each setting', async () => {
    const { lines, node } = await check(['--save', '900 1', '--appendonly', 'yes', '--repl-diskless-sync', 'no']);
    expect(lines.filter((l) => l.event === 'redis_persistence_on')).toEqual([
      {
        level: 'warn',
        event: 'redis_persistence_on',
        fields: { node: `127.0.0.1:${node.port}`, role: 'primary', settings: ['save "900 1"', 'appendonly yes', 'repl-diskless-sync no'] },
      },
    ]);
  });

  it('says it could not check when CONFIG is refused (managed services), and does not warn', async () => {
    const { lines } = await check(['--rename-command', 'CONFIG', '']);
    expect(lines.filter((l) => l.level === 'warn')).toEqual([]);
    expect(lines.find((l) => l.event === 'redis_persistence_unchecked')?.fields).toMatchObject({
      role: 'primary',
      reason: expect.stringMatching(/unknown command/i),
    });
  });
});
