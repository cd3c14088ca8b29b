/**
 * Hardening of the abuse accounting and of the API's Redis client, each against a real Redis (and,
 * where HTTP matters, the real app on loopback): a command that timed out is not run a second time
 * after the reconnect; a lookup slot belongs to its failure window only; uploads have an IPv6 /48
 * budget; a lookup whose client hung up during its reservation gives its slot back.
 */
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { clientIdOf } from '../../app/abuse/abuse.models.js';
import { createAbuseRepository, type AbuseRepository, type CountedClient, type FailureTerms } from '../../app/abuse/abuse.repository.js';
import { AGGREGATE_MULTIPLE } from '../../app/abuse/client.models.js';
import { createApp } from '../../app/app.js';
import { createApiRedis } from '../../app/shared/redis.js';
import { redisKeys, type RedisKeys } from '../../app/shared/redis-keys.js';
import { startTestApp, TEST_SECRET, uniquePrefix, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/files.js';
import { startTestRedis, type TestRedis } from '../helpers/redis-server.js';

const apps: TestApp[] = [];
async function app(env: Record<string, string>): Promise<TestApp> {
  const started = await startTestApp({ env });
  apps.push(started);
  return started;
}
afterEach(async () => {
  for (const a of apps.splice(0)) await a.close();
});

/** A promise and its resolve (Promise.withResolvers is Node 22; the engines allow 20). */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

async function upload(url: string, headers: Record<string, string> = {}): Promise<Response> {
  const form = new FormData();
  form.append('file', new Blob(['hardening'], { type: 'text/plain' }), 'h.txt');
  return fetch(`${url}/upload`, { method: 'POST', body: form, headers });
}

describe('the API client resends nothing after a reconnect', () => {
  let server: TestRedis;
  beforeAll(async () => {
    // DEBUG SLEEP stalls the whole server, as a primary that is slow to answer does: a command sent
    // meanwhile runs once it wakes up, but its reply comes after the client has given up.
    server = await startTestRedis(['--enable-debug-command', 'yes']);
  });
  afterAll(async () => {
    await server.destroy();
  });

  it('takes a lookup slot once when its reserve timed out (503) and the socket timeout reconnected', async () => {
    const api = createApiRedis(server.url);
    api.on('error', () => undefined);
    const other = new Redis(server.url);
    try {
      await other.ping();
      // The API's client queues nothing while it connects (enableOfflineQueue: false): wait until it is ready.
      if (api.status !== 'ready') await new Promise<void>((resolve) => api.once('ready', () => resolve()));
      const keys = redisKeys(uniquePrefix());
      const abuse = createAbuseRepository(api, keys);
      const terms: FailureTerms = { limit: 10, aggregateLimit: 40, blockMs: 60_000 };
      const client: CountedClient = { id: 'stalled', aggregateId: 'stalled-site', countAggregate: false };
      // Loads the script, so the stalled call below is a single EVALSHA.
      expect((await abuse.reserve({ ...client, id: 'warm-up' }, terms)).kind).toBe('ok');

      const stall = other.call('DEBUG', 'SLEEP', '3');
      stall.catch(() => undefined);
      // Not events.once: the socket timeout is an 'error' event on the way.
      const reconnected = new Promise<void>((resolve) => api.once('ready', () => resolve()));
      // The caller is told it failed (a 503 upstream) after the 1 s command timeout...
      await expect(abuse.reserve(client, terms)).rejects.toThrow('Command timed out');
      // ...and the 2 s socket timeout drops the connection; this is the next one, after the stall.
      await reconnected;
      await stall;
      // Same connection, so after anything resent on it: the one request took one slot, not two.
      expect(await api.hget(keys.lookupFailures(client.id), 'pending')).toBe('1');
    } finally {
      api.disconnect();
      other.disconnect();
    }
  });
});

describe('a lookup slot belongs to its failure window (SPEC §10.4)', () => {
  let redis: Redis;
  let keys: RedisKeys;
  let abuse: AbuseRepository;
  beforeAll(() => {
    redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
  });
  afterAll(() => {
    redis.disconnect();
  });

  const terms: FailureTerms = { limit: 3, aggregateLimit: 12, blockMs: 60_000 };
  const newClient = (): CountedClient => ({ id: `c-${uniquePrefix()}`, aggregateId: `a-${uniquePrefix()}`, countAggregate: true });
  const countsOf = (client: CountedClient) => [keys.lookupFailures(client.id), keys.lookupFailures(client.aggregateId)];
  const reserved = async (client: CountedClient) => {
    const reservation = await abuse.reserve(client, terms);
    if (reservation.kind !== 'ok') throw new Error(`expected a slot, got ${reservation.kind}`);
    return reservation.slot;
  };
  /** The window ends: its counts expire (an expiry of 1 ms, then gone at the next access). */
  const endWindow = async (client: CountedClient) => {
    for (const key of countsOf(client)) await redis.pexpire(key, 1);
    await waitFor(
      () => redis.exists(...countsOf(client)),
      (n) => n === 0,
      2_000,
      'the window to expire',
    );
  };
  const fields = (key: string) => redis.hmget(key, 'failed', 'pending');

  beforeAll(() => {
    keys = redisKeys(uniquePrefix());
    abuse = createAbuseRepository(redis, keys);
  });

  it("gives nothing back to the next window: an old slot neither frees nor fills the new window's slots", async () => {
    const client = newClient();
    const old = [await reserved(client), await reserved(client)];
    await endWindow(client);
    const current = await reserved(client);
    await abuse.settle(client, old[0]!, 'hit', { ...terms, now: Date.now() });
    await abuse.settle(client, old[1]!, 'miss', { ...terms, now: Date.now() });
    for (const key of countsOf(client)) {
      // The slot still in flight is still counted; the old miss counts as a failure of this window.
      expect(await fields(key), key).toEqual(['1', '1']);
      expect(await redis.pttl(key)).toBeGreaterThan(0);
    }
    // failed + pending stays within the limit: one more slot, then full.
    expect((await abuse.reserve(client, terms)).kind).toBe('ok');
    expect((await abuse.reserve(client, terms)).kind).toBe('full');
    await abuse.settle(client, current, 'hit', { ...terms, now: Date.now() });
    expect(await fields(countsOf(client)[0]!)).toEqual(['1', '1']);
  });

  it('never leaves a count without an expiry when the window ended during the lookup', async () => {
    const client = newClient();
    const slot = await reserved(client);
    await endWindow(client);
    await abuse.settle(client, slot, 'miss', { ...terms, now: Date.now() });
    for (const key of countsOf(client)) {
      expect(await fields(key), key).toEqual(['1', null]);
      expect(await redis.pttl(key), key).toBeGreaterThan(0);
    }
  });

  it('adds nothing for a slot whose window a block deleted', async () => {
    const client = newClient();
    const old = [await reserved(client), await reserved(client), await reserved(client)];
    await endWindow(client);
    const current = await reserved(client);
    // The old misses count in the new window; the third reaches the limit and blocks the client.
    const started = [];
    for (const slot of old) started.push((await abuse.settle(client, slot, 'miss', { ...terms, now: Date.now() })).client);
    expect(started).toEqual([false, false, true]);
    expect(await redis.pttl(keys.block(client.id))).toBeGreaterThan(0);
    // The slot taken in the deleted window ends during the block: no count is created, with or without expiry.
    await abuse.settle(client, current, 'miss', { ...terms, now: Date.now() });
    expect(await redis.exists(keys.lookupFailures(client.id))).toBe(0);
  });

  it('gives an expiry back to a count left without one, instead of refusing its client for ever', async () => {
    const client = newClient();
    // As an older settle.lua left it: as many failures as the limit, no window, no expiry.
    await redis.hset(keys.lookupFailures(client.id), 'failed', String(terms.limit - 1), 'pending', '1');
    expect(await abuse.reserve(client, terms)).toEqual({ kind: 'full' });
    const ttl = await redis.pttl(keys.lookupFailures(client.id));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(600_000);
  });
});

describe('uploads are also counted per IPv6 /48 (SPEC §10.4)', () => {
  it(`refuses the ${2 * AGGREGATE_MULTIPLE + 1}th upload of one /48 from fresh /64s, while another /48 still uploads`, async () => {
    const a = await app({ TRUST_PROXY: 'loopback', UPLOAD_RATE_LIMIT: '2/hour' });
    const from = (address: string) => ({ 'X-Forwarded-For': address });
    // One upload from each /64: every one is within its own /64's budget of 2.
    for (let i = 1; i <= 2 * AGGREGATE_MULTIPLE; i++) {
      const res = await upload(a.url, from(`2001:db8:aa:${i.toString(16)}::1`));
      expect(res.status, await res.text()).toBe(201);
    }
    const refused = await upload(a.url, from('2001:db8:aa:ff::1'));
    expect(refused.status).toBe(429);
    const body = (await refused.json()) as { error: { code: string; retry_after_seconds: number } };
    expect(body.error.code).toBe('RATE_LIMITED');
    expect(refused.headers.get('retry-after')).toBe(String(body.error.retry_after_seconds));
    expect(body.error.retry_after_seconds).toBeLessThanOrEqual(3600);
    expect((await upload(a.url, from('2001:db8:bb:1::1'))).status).toBe(201);
    // Counted under keyed hashes, never the address.
    const site = clientIdOf(TEST_SECRET, '2001:db8:aa::/48');
    const stored = await a.deps.redis.keys(`${a.deps.keys.prefix}:rl:*`);
    expect(stored.some((k) => k.includes(site))).toBe(true);
    expect(stored.filter((k) => k.includes('2001') || k.includes('db8'))).toEqual([]);
  });

  it('does not count IPv4 /24s together (addresses there often belong to different people)', async () => {
    const a = await app({ TRUST_PROXY: 'loopback', UPLOAD_RATE_LIMIT: '1/hour' });
    for (let i = 1; i <= AGGREGATE_MULTIPLE + 1; i++) {
      expect((await upload(a.url, { 'X-Forwarded-For': `198.51.100.${i}` })).status).toBe(201);
    }
  });
});

describe('a lookup whose client hangs up during its reservation', () => {
  it('gives its slot back at once, though the response closed before the guard could listen for it', async () => {
    const a = await app({});
    const up = await upload(a.url);
    expect(up.status).toBe(201);
    const { key } = (await up.json()) as { key: string };

    // The brute-force store, held after the reservation until the test says so.
    const real = createAbuseRepository(a.deps.redis, a.deps.keys);
    const reserving = deferred();
    const proceed = deferred();
    const settled = deferred<'hit' | 'miss'>();
    const abuse: AbuseRepository = {
      ...real,
      async reserve(client, terms) {
        const reservation = await real.reserve(client, terms);
        reserving.resolve();
        await proceed.promise;
        return reservation;
      },
      async settle(client, slot, outcome, terms) {
        const started = await real.settle(client, slot, outcome, terms);
        settled.resolve(outcome);
        return started;
      },
    };
    const sockets = new Map<number, net.Socket>();
    const server = http.createServer(createApp({ ...a.deps, abuse }));
    server.on('connection', (socket: net.Socket) => sockets.set(socket.remotePort!, socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const raw = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
      raw.on('error', () => undefined);
      await once(raw, 'connect');
      raw.write(`GET /download/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      await reserving.promise;
      const pending = () => a.deps.redis.hget(a.deps.keys.lookupFailures(clientIdOf(TEST_SECRET, '127.0.0.1')), 'pending');
      expect(await pending()).toBe('1');

      // The client is gone before the reservation's answer reaches the guard.
      const serverSide = sockets.get(raw.localPort!)!;
      const closed = once(serverSide, 'close');
      raw.destroy();
      await closed;
      proceed.resolve();

      // Bounded: before the fix nothing ever settled the slot, and it stayed taken for the whole window.
      const outcome = await Promise.race([
        settled.promise,
        new Promise<'never'>((resolve) => setTimeout(() => resolve('never'), 5_000).unref()),
      ]);
      expect(outcome).toBe('hit');
      expect(await pending()).toBe('0');
      // No lookup ran for nobody: nothing derived, nothing claimed.
      expect(a.logs.filter((l) => l.event === 'lookup_not_started')).toEqual([
        expect.objectContaining({ level: 'info', reason: 'client_gone' }),
      ]);
      expect(a.logs.filter((l) => l.event === 'download_not_claimed')).toEqual([]);
      const status = await fetch(`${a.url}/status`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ key }),
      });
      expect(((await status.json()) as { remaining_uses: number }).remaining_uses).toBe(1);
    } finally {
      proceed.resolve();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
