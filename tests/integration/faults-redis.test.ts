import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LEASE_TTL_MS } from '../../app/blobs/lease.js';
import { appOnPrivateRedis, testEnv, type TestApp } from '../helpers/app.js';
import { expectError, postFile, uploadOk, waitFor } from '../helpers/files.js';
import { nonJsonLines, runTs, type RunningProcess } from '../helpers/processes.js';
import { expectNoPartial, expectNoPlaintext, expectNoRecordWithoutBlob, markedPlaintext, timed } from './faults-helpers.js';

// Fault suite, Redis side (SPEC §3 503/507, §5; issue 8): each case runs against a private
// redis-server that the test stops, restarts or fills, and checks "nothing lost, nothing leaked".

const places = (app: TestApp) => ({ storage: app.storage, redis: app.deps.redis, prefix: app.deps.keys.prefix });

function ready(app: TestApp): Promise<void> {
  return new Promise<void>((resolve) => app.deps.redis.once('ready', () => resolve()));
}

describe('faults: Redis stopped while serving', () => {
  const world = appOnPrivateRedis();

  it('answers 503 on every route within about a second, leaves no partial, and recovers without a restart', async () => {
    const { body, marker } = markedPlaintext(300 * 1024);
    const before = await uploadOk(world.app, body, 'before.bin', { uses: '3' });

    await world.redis.stop();
    const requests: [string, () => Promise<Response>][] = [
      ['upload', () => postFile(world.app, body, 'during.bin')],
      [
        'put upload',
        () =>
          fetch(`${world.app.url}/upload/during.bin`, {
            method: 'PUT',
            body: new Uint8Array(body),
            headers: { Accept: 'application/json' },
          }),
      ],
      ['download', () => fetch(`${world.app.url}/download/${before.key}`)],
      ['status', () => fetch(`${world.app.url}/status/${before.key}`)],
      ['preview', () => fetch(`${world.app.url}/preview/${before.key}`)],
      [
        'delete',
        () => fetch(`${world.app.url}/files/${before.key}`, { method: 'DELETE', headers: { 'X-Delete-Token': before.delete_token } }),
      ],
    ];
    for (const [name, run] of requests) {
      const { res, ms } = await timed(run);
      expect(ms, `${name} took ${ms} ms`).toBeLessThan(1_500);
      await expectError(res, 503, 'SERVICE_UNAVAILABLE');
      expect(res.headers.get('retry-after'), name).toBe('5');
    }
    const { res: health, ms } = await timed(() => fetch(`${world.app.url}/health`));
    expect(ms).toBeLessThan(1_500);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'unhealthy', services: { redis: 'offline' } });

    // The uploads that raced the outage were encrypted to storage, then discarded when registering failed.
    await expectNoPartial(places(world.app));
    expect(await world.app.storage.blobIds()).toHaveLength(1);
    expect(world.app.logs.some((l) => l.event === 'redis_unavailable')).toBe(true);
    // Internal error text never reaches the client; the log has it.
    expect(world.app.logs.find((l) => l.event === 'redis_unavailable')?.code).toBe('SERVICE_UNAVAILABLE');

    // Redis back, empty (no persistence): the same world.app serves again.
    const back = ready(world.app);
    await world.redis.start();
    await back;
    const after = await uploadOk(world.app, body, 'after.bin');
    const download = await fetch(`${world.app.url}/download/${after.key}`);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(body)).toBe(true);
    // The record from before the outage died with Redis' memory: 404, not a hang.
    await expectError(await fetch(`${world.app.url}/status/${before.key}`), 404, 'FILE_NOT_FOUND');

    await expectNoRecordWithoutBlob(places(world.app));
    await expectNoPartial(places(world.app));
    await expectNoPlaintext(places(world.app), marker);
  });
});

describe('faults: Redis out of memory (noeviction)', () => {
  const world = appOnPrivateRedis(['--maxmemory', '0']);
  let filler: Redis;
  beforeAll(() => {
    filler = new Redis(world.redis.url, { maxRetriesPerRequest: 1 });
  });
  afterAll(() => filler.disconnect());

  it('refuses uploads with a clear 507, writes nothing half, and keeps status readable', async () => {
    const { body, marker } = markedPlaintext(100 * 1024);
    const before = await uploadOk(world.app, body, 'before.bin', { uses: '2' });

    // Junk until Redis first says OOM, then pin the limit below what is used: memory use wobbles
    // (a refused value's query buffer counts while it is read), and a pinned limit keeps it full.
    const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await filler.info('memory'))![1]);
    await filler.config('SET', 'maxmemory', String((await usedMemory()) + 512 * 1024));
    const junk = Buffer.alloc(16 * 1024, 'j');
    let oom: Error | null = null;
    for (let i = 0; i < 1_000 && !oom; i++) await filler.set(`junk:${i}`, junk).catch((error: Error) => (oom = error));
    expect(String((oom as Error | null)?.message)).toMatch(/^OOM/);
    await filler.config('SET', 'maxmemory', String((await usedMemory()) - 128 * 1024));
    await expect(filler.set('tiny', 'x')).rejects.toThrow(/^OOM/);

    const blobsBefore = await world.app.storage.blobIds();
    const res = await postFile(world.app, body, 'during.bin');
    const error = await expectError(res, 507, 'INSUFFICIENT_STORAGE');
    expect(JSON.stringify(error)).not.toMatch(/OOM|maxmemory/);
    // Nothing half written: the blob was discarded when its record could not be stored.
    expect(await world.app.storage.blobIds()).toEqual(blobsBefore);
    await expectNoPartial(places(world.app));
    expect(world.app.logs.some((l) => l.event === 'redis_out_of_memory')).toBe(true);

    // Reads keep working.
    const status = await fetch(`${world.app.url}/status/${before.key}`);
    expect(status.status, await status.clone().text()).toBe(200);
    expect(await status.json()).toMatchObject({ remaining_uses: 2 });

    // Memory freed: uploads work again, without a restart.
    await filler.flushdb().catch(() => undefined);
    await filler.config('SET', 'maxmemory', '0');
    // flushdb also dropped the record from before: only check the new upload.
    const after = await uploadOk(world.app, body, 'after.bin');
    expect((await fetch(`${world.app.url}/status/${after.key}`)).status).toBe(200);

    await expectNoRecordWithoutBlob(places(world.app));
    await expectNoPlaintext(places(world.app), marker);
  });
});

/** Kills a worker the test started, if it still runs (SIGKILL: the test is over, nothing to drain). */
async function killIfRunning(worker: RunningProcess | null): Promise<void> {
  if (!worker || worker.child.exitCode !== null) return;
  worker.child.kill('SIGKILL');
  await worker.exited;
}

describe('faults: Redis restarted empty, with a real worker', () => {
  const world = appOnPrivateRedis();
  let worker: RunningProcess | null = null;
  afterEach(async () => {
    await killIfRunning(worker);
  });

  it('answers 404 for old keys and sweeps every blob that lost its record', async () => {
    const env = testEnv(world.app.dir, world.app.deps.keys.prefix, world.redis.url, {
      STORAGE_PATH: world.app.config.storagePath,
      TEMP_PATH: world.app.config.tempPath,
      ORPHAN_AGE_MINUTES: '0.01',
      CLEANUP_INTERVAL_MINUTES: '0.02',
    });
    worker = runTs('workers/main.ts', env);
    await worker.waitForEvent('worker_started');

    const { body, marker } = markedPlaintext(64 * 1024);
    const since = worker.mark();
    const old = await uploadOk(world.app, body, 'old.bin', { uses: '5' });
    const blobs = await world.app.storage.blobIds();
    expect(blobs).toHaveLength(1);
    // A live blob survives sweeps, however old: a sweep found it past ORPHAN_AGE_MINUTES and kept it.
    await worker.waitForEvent('orphan_swept', 15_000, { since, where: (line) => Number(line.kept_live) >= 1 });
    expect(await world.app.storage.has(blobs[0]!)).toBe(true);

    const restarted = worker.mark();
    await world.redis.stop();
    const back = ready(world.app);
    await world.redis.start();
    await back;

    await expectError(await fetch(`${world.app.url}/status/${old.key}`), 404, 'FILE_NOT_FOUND');
    await expectError(await fetch(`${world.app.url}/download/${old.key}`), 404, 'FILE_NOT_FOUND');

    // The worker reconnects by itself; its first sweep after the reconnect's lease grace (one lease
    // TTL, in which it destroys nothing) shreds the orphan.
    await waitFor(
      () => world.app.storage.has(blobs[0]!),
      (present) => !present,
      LEASE_TTL_MS + 15_000,
      'the orphan to be swept',
    );
    await worker.waitForEvent('orphan_swept', 5_000, { since: restarted, where: (line) => Number(line.shredded) >= 1 });

    await expectNoRecordWithoutBlob(places(world.app));
    await expectNoPartial(places(world.app));
    await expectNoPlaintext(places(world.app), marker);
    expect(nonJsonLines(worker)).toEqual([]);
  });
});

describe('faults: Redis hangs (SIGSTOP), with a real worker', () => {
  const world = appOnPrivateRedis();
  let worker: RunningProcess | null = null;
  let stopped: number | null = null;
  afterEach(async () => {
    if (stopped !== null) process.kill(stopped, 'SIGCONT');
    await killIfRunning(worker);
  });

  it('keeps every line the worker writes JSON while its heartbeat is stuck, and beats again after', async () => {
    const env = testEnv(world.app.dir, world.app.deps.keys.prefix, world.redis.url, {
      STORAGE_PATH: world.app.config.storagePath,
      TEMP_PATH: world.app.config.tempPath,
    });
    worker = runTs('workers/main.ts', env);
    await worker.waitForEvent('worker_started');
    const redis = world.app.deps.redis;
    const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
    expect(pid).toBeGreaterThan(0);

    // A hang, not a refusal: connections stay open and no answer comes. The heartbeat ticks every
    // 5 s without overlap, so the tick after the stuck one is blocked (node-cron says so) within 10 s.
    const written = async () => worker!.stdout() + worker!.stderr();
    process.kill(pid, 'SIGSTOP');
    stopped = pid;
    await waitFor(written, (out) => out.includes('new execution blocked'), 15_000, 'a heartbeat tick blocked by the stuck one');
    process.kill(pid, 'SIGCONT');
    stopped = null;

    // Redis answers again: the stuck beat completes and the next ones refresh the key.
    const resumed = Date.now();
    await waitFor(
      async () => JSON.parse((await redis.get(world.app.deps.keys.heartbeat())) ?? '{"at":0}') as { at: number },
      (beat) => beat.at >= resumed,
      10_000,
      'a heartbeat after Redis resumed',
    );
    expect(worker.child.exitCode).toBeNull();

    expect(nonJsonLines(worker)).toEqual([]);
    const warning = worker
      .stdout()
      .split('\n')
      .find((line) => line.includes('new execution blocked'));
    expect(JSON.parse(warning!)).toMatchObject({ level: 'warn', service: 'worker', event: 'cron_warning', task: 'heartbeat' });
  });
});
