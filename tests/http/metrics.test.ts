import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { clientIdOf } from '../../app/abuse/abuse.models.js';
import { deriveKeys } from '../../app/crypto/keys.js';
import { JANITOR_QUEUE } from '../../app/jobs/catalogue.js';
import { createApiMetrics } from '../../app/metrics/api-metrics.js';
import { createRegistry, registerQueueDepth } from '../../app/metrics/registry.js';
import { createKdf, type DeriveKeys } from '../../app/kdf/kdf.js';
import { createKeyPool } from '../../app/kdf/key-pool.js';
import { loadWordlist } from '../../app/diceware/wordlist.js';
import { createApiRedis } from '../../app/shared/redis.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { startTestApp, TEST_SECRET, uniquePrefix, type TestApp } from '../helpers/app.js';
import { expectError, uploadOk, waitFor } from '../helpers/files.js';
import { parsePrometheus, type Scrape } from '../helpers/prometheus.js';

const TOKEN = 'metrics-token-0123456789abcdef';

async function scrape(app: TestApp, headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}` }): Promise<Scrape> {
  const res = await fetch(`${app.url}/metrics`, { headers });
  expect(res.status).toBe(200);
  return parsePrometheus(await res.text());
}

/** Waits until the request log has counted `route` (the line is written a moment after the client has its answer). */
const counted = (app: TestApp, labels: Record<string, string>, n = 1) =>
  waitFor(
    () => scrape(app),
    (s) => s.sum('cinderbox_http_request_duration_seconds_count', labels) >= n,
    5_000,
    `${JSON.stringify(labels)} counted`,
  );

describe('/metrics of the API', () => {
  let on: TestApp;
  let off: TestApp;
  beforeAll(async () => {
    // No resume window here: a burned file's blob is then queued for shredding when its download ends.
    on = await startTestApp({
      env: { METRICS_ENABLED: 'true', METRICS_TOKEN: TOKEN, DOWNLOAD_FAIL_LIMIT: '3', RESUME_WINDOW_SECONDS: '0' },
    });
    off = await startTestApp();
  });
  afterAll(async () => {
    await on.close();
    await off.close();
  });

  it('is not served unless METRICS_ENABLED', async () => {
    await expectError(await fetch(`${off.url}/metrics`), 404, 'NOT_FOUND');
  });

  it('asks for the bearer token when METRICS_TOKEN is set, and compares it whole', async () => {
    for (const authorization of [undefined, 'Bearer', `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN]) {
      const res = await fetch(`${on.url}/metrics`, { headers: authorization === undefined ? {} : { Authorization: authorization } });
      await expectError(res, 401, 'UNAUTHORIZED');
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
    }
    const res = await fetch(`${on.url}/metrics/`, { headers: { Authorization: `bearer  ${TOKEN}` } });
    expect(res.status).toBe(200);
  });

  it('serves strict Prometheus text, never cached, with the process metrics and the service label', async () => {
    const res = await fetch(`${on.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const metrics = parsePrometheus(await res.text());
    for (const name of [
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_gc_duration_seconds',
    ]) {
      expect(metrics.families.has(name), name).toBe(true);
    }
    expect(metrics.value('process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    expect(metrics.value('cinderbox_build_info', { version: 'test' })).toBe(1);
    expect(metrics.samples.every((s) => s.labels.service === 'api')).toBe(true);
    expect(metrics.value('cinderbox_redis_up')).toBe(1);
    expect(metrics.value('cinderbox_redis_memory_used_bytes')).toBeGreaterThan(0);
    expect(metrics.value('cinderbox_worker_up')).toBe(0); // no worker in this test
    // The app's own KDF and key pool, through their stats().
    expect(metrics.value('cinderbox_kdf_slots')).toBe(on.config.kdfConcurrency);
    expect(metrics.value('cinderbox_key_pool_capacity')).toBe(on.deps.pool!.stats().capacity);
  });

  it('counts an upload, a download that burns, a delete, their bytes, queue depth and latency by route template', async () => {
    const before = await scrape(on);
    const body = 'metrics test payload';
    const up = await fetch(`${on.url}/upload/m.txt`, { method: 'PUT', body, headers: { Accept: 'application/json' } });
    const { key } = (await up.json()) as { key: string };
    const down = await fetch(`${on.url}/download/${key}`);
    expect(await down.text()).toBe(body);
    const other = await uploadOk(on, 'x'.repeat(1000));
    const del = await fetch(`${on.url}/files/${other.key}`, { method: 'DELETE', headers: { 'X-Delete-Token': other.delete_token } });
    expect(del.status).toBe(204);
    await counted(on, { route: '/files/:key', method: 'DELETE', status_class: '2xx' });
    await counted(on, { route: '/download/:key', method: 'GET', status_class: '2xx' });

    // No worker runs here: both expire jobs wait delayed; the burn, the delete and the end of the
    // download's lease (a moment after its last byte) queue three shreds.
    const after = await waitFor(
      () => scrape(on),
      (s) => s.value('cinderbox_janitor_jobs', { state: 'waiting' }) === 3,
      5_000,
      'the three shreds to be queued',
    );
    const moved = (name: string) => after.value(name) - before.value(name);
    expect(moved('cinderbox_uploads_total')).toBe(2);
    expect(moved('cinderbox_upload_bytes_total')).toBe(body.length + 1000);
    expect(moved('cinderbox_downloads_total')).toBe(1);
    expect(moved('cinderbox_download_bytes_total')).toBe(body.length);
    expect(moved('cinderbox_burns_total')).toBe(1);
    expect(moved('cinderbox_deletes_total')).toBe(1);
    expect(after.value('cinderbox_janitor_jobs', { state: 'delayed' })).toBe(2);
    expect(
      after.value('cinderbox_http_request_duration_seconds_count', { method: 'PUT', route: '/upload/:filename', status_class: '2xx' }),
    ).toBe(1);
    expect(after.value('cinderbox_http_request_duration_seconds_count', { method: 'POST', route: '/upload', status_class: '2xx' })).toBe(1);
    expect(
      after.value('cinderbox_http_request_duration_seconds_sum', { method: 'GET', route: '/download/:key', status_class: '2xx' }),
    ).toBeGreaterThan(0);
  });

  it('counts a resumed download apart from downloads: it spends no use', async () => {
    const resumable = await startTestApp({ env: { METRICS_ENABLED: 'true' } });
    try {
      const file = await uploadOk(resumable, 'r'.repeat(1000));
      const whole = await fetch(`${resumable.url}/download/${file.key}`);
      expect(whole.status).toBe(200);
      await whole.arrayBuffer();
      const etag = whole.headers.get('etag')!;
      const rest = await fetch(`${resumable.url}/download/${file.key}`, { headers: { Range: 'bytes=100-', 'If-Range': etag } });
      expect(rest.status).toBe(206);
      expect((await rest.arrayBuffer()).byteLength).toBe(900);
      const metrics = await waitFor(
        async () => parsePrometheus(await (await fetch(`${resumable.url}/metrics`)).text()),
        (s) => s.sum('cinderbox_http_request_duration_seconds_count', { route: '/download/:key' }) === 2,
        5_000,
        'both requests to be counted',
      );
      expect(metrics.value('cinderbox_downloads_total')).toBe(1);
      expect(metrics.value('cinderbox_download_resumes_total')).toBe(1);
      expect(metrics.value('cinderbox_download_resumed_bytes_total')).toBe(900);
      expect(metrics.value('cinderbox_http_request_duration_seconds_count', { route: '/download/:key', status_class: '2xx' })).toBe(2);
    } finally {
      await resumable.close();
    }
  });

  it('counts blocks and integrity failures', async () => {
    const before = await scrape(on);
    // DOWNLOAD_FAIL_LIMIT is 3 here: the third unknown key blocks this client.
    for (let i = 0; i < 3; i += 1) expect((await fetch(`${on.url}/status/${randomKey()}`)).status).toBe(404);
    await expectError(await fetch(`${on.url}/status/${randomKey()}`), 429, 'IP_BLOCKED');
    await on.deps.redis.del(on.deps.keys.block(clientIdOf(TEST_SECRET, '127.0.0.1')));

    // One flipped byte in the stored ciphertext: the download fails authentication before its first byte.
    const names = new Set(await on.storage.blobIds());
    const file = await uploadOk(on, randomBytes(4096));
    const [blob] = (await on.storage.blobIds()).filter((n) => !names.has(n));
    await on.storage.corrupt(blob!, -100);
    await expectError(await fetch(`${on.url}/download/${file.key}`), 500, 'INTEGRITY_CHECK_FAILED');
    await counted(on, { route: '/download/:key', status_class: '5xx' });

    const after = await scrape(on);
    expect(
      after.value('cinderbox_ip_blocks_total', { scope: 'client' }) - before.value('cinderbox_ip_blocks_total', { scope: 'client' }),
    ).toBe(1);
    expect(
      after.value('cinderbox_integrity_failures_total', { stage: 'before_first_byte' }) -
        before.value('cinderbox_integrity_failures_total', { stage: 'before_first_byte' }),
    ).toBe(1);
    expect(
      after.value('cinderbox_http_request_duration_seconds_count', { route: '/status/:key', status_class: '4xx' }),
    ).toBeGreaterThanOrEqual(4);
  });

  it('keeps the number of series bounded whatever paths, keys and methods clients send', async () => {
    const probe = async (round: number) => {
      const requests: Promise<Response>[] = [];
      for (let i = 0; i < 40; i += 1) {
        const id = `${round}-${i}-${randomBytes(6).toString('hex')}`;
        requests.push(fetch(`${on.url}/no/such/path/${id}?q=${id}`));
        requests.push(fetch(`${on.url}/download/${randomKey()}-${id}`, { method: 'HEAD' }));
        requests.push(fetch(`${on.url}/preview/${randomKey()}`, { method: 'POST' }));
        requests.push(fetch(`${on.url}/${id}`, { method: 'PROPFIND' }));
        requests.push(fetch(`${on.url}/static/${id}.js`));
      }
      const answers = await Promise.all(requests);
      await Promise.all(answers.map((r) => r.arrayBuffer()));
      return answers.length;
    };
    const sent = await probe(0);
    await counted(on, { route: '*', method: 'other' }, 40);
    const first = await scrape(on);
    await probe(1);
    await counted(on, { route: '*', method: 'other' }, 80);
    const second = await scrape(on);
    const text = (s: Scrape) => s.samples.map((x) => `${x.name}${JSON.stringify(x.labels)}`);

    expect(sent).toBe(200);
    const cinderbox = (s: Scrape) => text(s).filter((t) => t.startsWith('cinderbox_'));
    expect(cinderbox(second)).toEqual(cinderbox(first));
    const routes = new Set(
      second.samples.filter((s) => s.name === 'cinderbox_http_request_duration_seconds_count').map((s) => s.labels.route),
    );
    for (const route of routes) expect(route, 'a route label is a template').toMatch(/^(\*|\/[a-z/:]*)$/);
    expect(routes.size).toBeLessThan(20);
    expect(text(second).join('\n')).not.toMatch(/no\/such|[0-9a-f]{12}/);
  });
});

function randomKey(): string {
  return ['able', 'acid', 'acre', 'aged'].map((w) => `${w}${randomBytes(2).toString('hex')}`).join('-');
}

describe('the janitor queue gauges', () => {
  it('say how long the most overdue delayed job has been due: 0 when none is due, a stuck worker in seconds', async () => {
    const redis = new Redis(inject('redisUrl'));
    const queue = new Queue(JANITOR_QUEUE, { connection: redis, prefix: `${uniquePrefix()}:bull` });
    try {
      let clock = Date.now();
      const registry = createRegistry('api', 'test');
      registerQueueDepth(registry, queue, redis, () => clock);
      const overdue = async () => parsePrometheus(await registry.metrics()).value('cinderbox_janitor_overdue_seconds');
      expect(await overdue()).toBe(0); // an empty queue

      // No worker takes them: an expiry due in a minute and a shred due in two.
      const added = Date.now();
      await queue.add('expire', {}, { delay: 60_000 });
      await queue.add('shred', {}, { delay: 120_000 });
      const addedBy = Date.now();
      clock = added + 30_000;
      expect(await overdue()).toBe(0);
      clock = addedBy + 60_000 + 90_000;
      const seconds = await overdue();
      expect(seconds).toBeGreaterThanOrEqual(90);
      expect(seconds).toBeLessThanOrEqual(90 + (addedBy - added) / 1000);
      const counts = parsePrometheus(await registry.metrics());
      expect(counts.value('cinderbox_janitor_jobs', { state: 'delayed' })).toBe(2);
      expect(counts.value('cinderbox_janitor_jobs', { state: 'waiting' })).toBe(0);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
      redis.disconnect();
    }
  });
});

describe('/metrics while Redis does not answer', () => {
  it('still answers at once: redis_up 0, and what it reads from Redis is left out rather than zero', async () => {
    const redis = createApiRedis('redis://127.0.0.1:1');
    redis.on('error', () => undefined);
    const keys = redisKeys(uniquePrefix());
    const queue = new Queue('janitor', { connection: redis, prefix: keys.queuePrefix() });
    queue.on('error', () => undefined);
    try {
      const metrics = createApiMetrics({ queue, redis, keys, version: 'test' });
      const started = Date.now();
      const scrape = parsePrometheus(await metrics.registry.metrics());
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(scrape.value('cinderbox_redis_up')).toBe(0);
      for (const name of [
        'cinderbox_redis_memory_used_bytes',
        'cinderbox_redis_memory_max_bytes',
        'cinderbox_worker_up',
        'cinderbox_janitor_jobs',
      ])
        expect(scrape.families.get(name)?.samples, name).toEqual([]);
      expect(scrape.value('cinderbox_uploads_total')).toBe(0);
    } finally {
      await queue.close().catch(() => undefined);
      redis.disconnect();
    }
  });
});

describe('KDF and key pool figures in /metrics', () => {
  it('reads the stats() of a real fair KDF and key pool at each scrape', async () => {
    const redis = createApiRedis(inject('redisUrl'));
    const keys = redisKeys(uniquePrefix());
    const queue = new Queue('janitor', { connection: redis, prefix: keys.queuePrefix() });
    // Real scrypt, held back until the test has looked at the running derivation.
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const heldDerive: DeriveKeys = async (options) => {
      await held;
      return deriveKeys(options);
    };
    const kdf = createKdf({ secret: 'x'.repeat(32), costLog2: 10, concurrency: 1, maxQueue: 8, maxPerClient: 1, deriveKeys: heldDerive });
    const wordlist = await loadWordlist('data/eff_large_wordlist.txt');
    const keyPool = createKeyPool({ kdf, wordlist, words: 4, size: 3, now: () => new Date() });
    try {
      // Without providers (not wired yet) their series are left out, not reported as zero.
      const bare = parsePrometheus(await createApiMetrics({ queue, redis, keys, version: 'test' }).registry.metrics());
      expect([...bare.families.keys()].filter((n) => /^cinderbox_(kdf|key_pool)_/.test(n))).toEqual([]);

      const metrics = createApiMetrics({ queue, redis, keys, version: 'test', kdf, keyPool });
      const read = async () => parsePrometheus(await metrics.registry.metrics());
      const empty = await read();
      expect(empty.value('cinderbox_kdf_slots')).toBe(1);
      expect(empty.value('cinderbox_key_pool_capacity')).toBe(3);
      expect(empty.value('cinderbox_key_pool_entries')).toBe(0);

      // One client may hold one derivation: its second one is refused at once by the client cap.
      const who = { client: '192.0.2.7', aggregate: '192.0.2.0/24' };
      const first = kdf.derive('apple-banana-cherry-delta', who);
      await expect(kdf.derive('apple-banana-cherry-delta', who)).rejects.toThrow();
      const busy = await read();
      expect(busy.value('cinderbox_kdf_active', { class: 'foreground' })).toBe(1);
      expect(busy.value('cinderbox_kdf_clients')).toBe(1);
      expect(busy.value('cinderbox_kdf_refusals_total', { cap: 'client' })).toBe(1);
      release();
      await first;

      keyPool.start();
      await waitFor(
        async () => keyPool.stats().size,
        (n) => n === 3,
        10_000,
        'the key pool to fill',
      );
      expect(keyPool.take()).not.toBeNull();
      keyPool.stop();
      const after = await read();
      expect(after.value('cinderbox_kdf_derivations_total', { class: 'foreground' })).toBe(1);
      expect(after.value('cinderbox_kdf_derivations_total', { class: 'background' })).toBeGreaterThanOrEqual(3);
      expect(after.value('cinderbox_key_pool_hits_total')).toBe(1);
      expect(after.value('cinderbox_key_pool_misses_total')).toBe(0);
      expect(after.value('cinderbox_kdf_active', { class: 'foreground' })).toBe(0);
    } finally {
      release();
      keyPool.stop();
      await queue.close();
      redis.disconnect();
    }
  });
});
