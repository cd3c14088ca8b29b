import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  confirmingReplicas,
  confirmReplicated,
  isRedisUnavailable,
  REPLICA_COUNT_TTL_MS,
  REPLICATION_WAIT_MS,
  ReplicationUnconfirmedError,
} from '../../app/shared/redis.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { postFile, type ErrorBody, type UploadAnswer } from '../helpers/files.js';
import { startRedisNode, until, waitForReplicaSync, type RedisNode } from '../helpers/sentinel.js';

// WAIT against real servers: a primary alone, with a replica in sync, with a replica that hangs.
const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;
let dir: string;
let primary: RedisNode;
const opened: Redis[] = [];
const cleanups: (() => Promise<void>)[] = [];

function connect(node: RedisNode): Redis {
  const client = new Redis(node.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  opened.push(client);
  return client;
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await run();
  return { value, ms: performance.now() - started };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-repl-'));
  primary = await startRedisNode({ dir, password: PASSWORD });
});

afterEach(async () => {
  for (const client of opened.splice(0)) client.disconnect();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await primary?.kill();
  await rm(dir, { recursive: true, force: true });
});

async function attachReplica(): Promise<RedisNode> {
  const replica = await startRedisNode({ dir, password: PASSWORD, replicaOf: primary.port });
  cleanups.push(async () => {
    await replica.kill();
    // The primary notices the closed link at once: no replica attached for the next test.
    await until('replica detached', async () => confirmingReplicas(await connect(primary).info('replication')) === 0, 5_000);
  });
  await waitForReplicaSync(primary, replica, PASSWORD);
  return replica;
}

describe('confirmReplicated (WAIT for one replica)', () => {
  it('returns at once when the primary has no replica, instead of sleeping through the WAIT timeout', async () => {
    const redis = connect(primary);
    await redis.set('k', 'v');
    const { value, ms } = await timed(() => confirmReplicated(redis, { timeoutMs: 2_000 }));
    expect(value).toEqual({ confirmedBy: 0 });
    expect(ms).toBeLessThan(200);
  });

  it('returns once a replica holds the write', async () => {
    const replica = await attachReplica();
    const redis = connect(primary);
    const value = randomBytes(8).toString('hex');
    await redis.set('confirmed', value);
    expect(await confirmReplicated(redis, { timeoutMs: 2_000 })).toEqual({ confirmedBy: 1 });
    expect(await connect(replica).get('confirmed')).toBe(value);
  });

  it('fails with a 503-class error after the timeout when the attached replica hangs, and confirms again once it is back', async () => {
    const replica = await attachReplica();
    const redis = connect(primary);
    replica.pause();
    cleanups.push(async () => replica.resume());
    await redis.set('unconfirmed', '1');
    const started = performance.now();
    const error = await confirmReplicated(redis, { timeoutMs: 300 }).catch((e: unknown) => e);
    const ms = performance.now() - started;
    expect(error).toBeInstanceOf(ReplicationUnconfirmedError);
    expect(isRedisUnavailable(error)).toBe(true);
    expect((error as Error).message).toBe('no replica confirmed the write within 300 ms (1 attached)');
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(1_000);

    replica.resume();
    await redis.set('after', '1');
    expect(await confirmReplicated(redis, { timeoutMs: 2_000 })).toEqual({ confirmedBy: 1 });
  });

  it('fails while a hung replica is attached, and accepts again once the primary drops it (repl-timeout)', async () => {
    const replica = await attachReplica();
    const redis = connect(primary);
    await redis.config('SET', 'repl-timeout', '2');
    cleanups.push(async () => void (await connect(primary).config('SET', 'repl-timeout', '60')));
    replica.pause();
    cleanups.push(async () => replica.resume());
    await redis.set('k', 'v');
    await expect(confirmReplicated(redis, { timeoutMs: 200 })).rejects.toBeInstanceOf(ReplicationUnconfirmedError);
    const started = performance.now();
    await until(
      'the primary drops the hung replica',
      async () => (await confirmReplicated(redis, { timeoutMs: 200 }).catch(() => null))?.confirmedBy === 0,
      10_000,
    );
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('believes "no replica" for a few seconds, then asks again and starts waiting', async () => {
    const redis = connect(primary);
    let now = 1_000_000;
    expect(await confirmReplicated(redis, { timeoutMs: 2_000, now: () => now })).toEqual({ confirmedBy: 0 });
    await attachReplica();
    await redis.set('k', 'v');
    now += REPLICA_COUNT_TTL_MS - 1;
    expect(await confirmReplicated(redis, { timeoutMs: 2_000, now: () => now })).toEqual({ confirmedBy: 0 });
    now += 2;
    expect(await confirmReplicated(redis, { timeoutMs: 2_000, now: () => now })).toEqual({ confirmedBy: 1 });
  });

  it('accepts the write when the only replica went away since the count was taken', async () => {
    const replica = await attachReplica();
    const redis = connect(primary);
    expect(await confirmReplicated(redis, { timeoutMs: 2_000 })).toEqual({ confirmedBy: 1 });
    await replica.kill();
    await until('replica detached', async () => confirmingReplicas(await redis.info('replication')) === 0, 5_000);
    await redis.set('k', 'v');
    const { value, ms } = await timed(() => confirmReplicated(redis, { timeoutMs: 300 }));
    expect(value).toEqual({ confirmedBy: 0 });
    // One WAIT timeout to learn it, then the cached "no replica" answers at once.
    expect(ms).toBeGreaterThanOrEqual(290);
    expect((await timed(() => confirmReplicated(redis, { timeoutMs: 300 }))).ms).toBeLessThan(100);
  });
});

describe('an upload is acknowledged only once a replica has its record', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ redisUrl: primary.url });
  });
  afterAll(async () => {
    await app?.close();
  });

  const put = (body: string) => fetch(`${app.url}/upload/note.txt`, { method: 'PUT', body, headers: { Accept: 'application/json' } });
  const blobs = async () => (await app.storage.names()).length + (await app.storage.partials()).length;

  it('answers 201 with the record already on the replica', async () => {
    const replica = await attachReplica();
    const res = await put('replicated');
    expect(res.status, await res.clone().text()).toBe(201);
    const answer = (await res.json()) as UploadAnswer;
    // The record is on the replica the moment the 201 is sent, so a failover now loses nothing.
    const onReplica = await connect(replica).keys(`${app.config.redisPrefix}:file:*`);
    expect(onReplica).toHaveLength(1);
    expect(answer.size).toBe('replicated'.length);
  });

  it('answers 503 within about a second and keeps no blob when the attached replica hangs', async () => {
    const replica = await attachReplica();
    const before = await blobs();
    const recordsBefore = (await connect(primary).keys(`${app.config.redisPrefix}:file:*`)).length;
    replica.pause();
    cleanups.push(async () => replica.resume());
    const started = performance.now();
    const res = await put('not acknowledged');
    const ms = performance.now() - started;
    expect(res.status).toBe(503);
    expect(((await res.json()) as ErrorBody).error.code).toBe('SERVICE_UNAVAILABLE');
    expect(ms).toBeGreaterThanOrEqual(REPLICATION_WAIT_MS - 10);
    expect(ms).toBeLessThan(1_500);
    expect(await blobs()).toBe(before);
    // Nor a record naming the discarded blob (its tombstone says "deleted"; nobody ever had its key).
    expect(await connect(primary).keys(`${app.config.redisPrefix}:file:*`)).toHaveLength(recordsBefore);
    expect(app.logs).toContainEqual(
      expect.objectContaining({ event: 'redis_unavailable', error: expect.objectContaining({ name: 'ReplicationUnconfirmedError' }) }),
    );
  });

  it('answers 201 with no replica attached (the docs say what that risks)', async () => {
    const started = performance.now();
    const res = await postFile(app, 'alone', 'alone.txt');
    expect(res.status).toBe(201);
    expect(performance.now() - started).toBeLessThan(REPLICATION_WAIT_MS + 1_000);
  });
});
