import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { clientIdOf } from '../../app/abuse/abuse.models.js';
import { createApp } from '../../app/app.js';
import { configureServerTimeouts } from '../../app/http/timeouts.js';
import { JANITOR_QUEUE } from '../../app/jobs/catalogue.js';
import { startTestApp, TEST_SECRET, type TestApp } from '../helpers/app.js';
import { startTestRedis } from '../helpers/redis-server.js';

// express-rate-limit reports ERR_ERL_* validation problems through console (or our logger): any is a bug.
const spies: MockInstance[] = [];
const erlMessages = (apps: TestApp[]) =>
  [
    ...spies.flatMap((s) =>
      s.mock.calls.map((args) =>
        args.map((a) => (a instanceof Error ? `${(a as Error & { code?: string }).code ?? ''} ${a.message}` : String(a))).join(' '),
      ),
    ),
    ...apps.flatMap((a) => a.rawLogs),
  ].filter((m) => m.includes('ERR_ERL_'));

const opened: TestApp[] = [];
async function app(env: Record<string, string>, options: { redisUrl?: string } = {}): Promise<TestApp> {
  const started = await startTestApp({ env, ...options });
  opened.push(started);
  return started;
}

beforeAll(() => {
  for (const method of ['error', 'warn', 'log', 'info'] as const) spies.push(vi.spyOn(console, method));
});
afterEach(() => {
  expect(erlMessages(opened)).toEqual([]);
});
afterAll(async () => {
  for (const a of opened) await a.close().catch(() => undefined);
  for (const s of spies) s.mockRestore();
});

/** Raw HTTP, so the test alone decides which headers go out (fetch adds its own Sec-Fetch-Mode). */
function raw(
  url: string,
  options: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${options.path}`, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const UNKNOWN_WORDLIST_KEY = 'abacus-abdomen-abdominal-abide';
const NOT_WORDLIST_KEY = 'zzqx-notaword-qqqq-xyzzy';

async function upload(url: string, headers: Record<string, string> = {}): Promise<Response> {
  const form = new FormData();
  form.append('file', new Blob(['hello abuse test\n'], { type: 'text/plain' }), 'hello.txt');
  return fetch(`${url}/upload`, { method: 'POST', body: form, headers });
}

async function fail(url: string, key: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/status/${key}`, { headers });
}

async function expect429(res: Response, code: 'IP_BLOCKED' | 'RATE_LIMITED', maxSeconds: number): Promise<number> {
  expect(res.status).toBe(429);
  const body = (await res.json()) as { error: { code: string; message: string; request_id: string; retry_after_seconds: number } };
  expect(body.error).toEqual({
    code,
    message: expect.any(String),
    request_id: expect.any(String),
    retry_after_seconds: expect.any(Number),
  });
  expect(body.error.retry_after_seconds).toBeGreaterThanOrEqual(1);
  expect(body.error.retry_after_seconds).toBeLessThanOrEqual(maxSeconds);
  expect(res.headers.get('retry-after')).toBe(String(body.error.retry_after_seconds));
  return body.error.retry_after_seconds;
}

describe('failed lookups block the client', () => {
  let a: TestApp;
  beforeAll(async () => {
    a = await app({ DOWNLOAD_FAIL_LIMIT: '3', DOWNLOAD_BLOCK_WINDOW: '600', LOG_IP: 'hash' });
  });

  it('a 410 for a tombstoned key is not a failed lookup', async () => {
    const up = await upload(a.url);
    expect(up.status).toBe(201);
    const { key, delete_token } = (await up.json()) as { key: string; delete_token: string };
    const del = await fetch(`${a.url}/files/${key}`, { method: 'DELETE', headers: { 'X-Delete-Token': delete_token } });
    expect(del.status).toBe(204);
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${a.url}/status/${key}`);
      expect(res.status).toBe(410);
      expect(await res.json()).toMatchObject({ error: { code: 'FILE_GONE', reason: 'deleted' } });
    }
    const id = clientIdOf(TEST_SECRET, '127.0.0.1');
    expect(await a.deps.redis.exists(a.deps.keys.block(id))).toBe(0);
    expect(await a.deps.redis.hget(a.deps.keys.lookupFailures(id), 'failed')).toBeNull();
  });

  it('blocks after N failures (wordlist and non-wordlist keys) on download, status, preview and delete', async () => {
    expect((await fail(a.url, UNKNOWN_WORDLIST_KEY)).status).toBe(404);
    expect((await fail(a.url, NOT_WORDLIST_KEY)).status).toBe(404);
    expect((await fetch(`${a.url}/preview/${UNKNOWN_WORDLIST_KEY}`)).status).toBe(404);

    const json = { 'Content-Type': 'application/json' };
    const blocked = [
      fetch(`${a.url}/download/${UNKNOWN_WORDLIST_KEY}`),
      fetch(`${a.url}/download`, { method: 'POST', headers: json, body: JSON.stringify({ key: UNKNOWN_WORDLIST_KEY }) }),
      fetch(`${a.url}/status/${UNKNOWN_WORDLIST_KEY}`),
      fetch(`${a.url}/status`, { method: 'POST', headers: json, body: JSON.stringify({ key: UNKNOWN_WORDLIST_KEY }) }),
      fetch(`${a.url}/preview/${UNKNOWN_WORDLIST_KEY}`),
      fetch(`${a.url}/preview`, { method: 'POST', headers: json, body: JSON.stringify({ key: UNKNOWN_WORDLIST_KEY }) }),
      fetch(`${a.url}/files/${UNKNOWN_WORDLIST_KEY}`, { method: 'DELETE', headers: { 'X-Delete-Token': 'x' } }),
    ];
    for (const res of await Promise.all(blocked)) await expect429(res, 'IP_BLOCKED', 600);

    // Uploads and health still answer.
    expect((await upload(a.url)).status).toBe(201);
    expect((await fetch(`${a.url}/health`)).status).toBe(200);

    const id = clientIdOf(TEST_SECRET, '127.0.0.1');
    const line = a.logs.find((l) => l.event === 'ip_blocked');
    expect(line).toMatchObject({ level: 'warn', client: id, scope: 'client', block_seconds: 600 });
    expect(line).not.toHaveProperty('ip');
    expect(a.rawLogs.filter((l) => l.includes('"ip_blocked"')).join('\n')).not.toContain('127.0.0.1');

    expect(await a.deps.redis.zscore(a.deps.keys.blockList(), id)).not.toBeNull();
    // A block needs no job: its key's TTL ends it (SPEC §10.4). Only the files' own jobs wait.
    const queue = new Queue('janitor', { connection: a.deps.redis, prefix: a.deps.keys.queuePrefix() });
    try {
      const jobs = await queue.getJobs(['delayed', 'waiting']);
      expect(jobs.filter((j) => JSON.stringify(j.data).includes(id))).toEqual([]);
      expect(new Set(jobs.map((j) => j.name))).toEqual(new Set(['expire', 'shred']));
    } finally {
      await queue.close();
    }
  });
});

describe('the block lifts after DOWNLOAD_BLOCK_WINDOW', () => {
  it('answers normally once the block key has expired', async () => {
    const a = await app({ DOWNLOAD_FAIL_LIMIT: '3', DOWNLOAD_BLOCK_WINDOW: '1' });
    for (let i = 0; i < 3; i++) expect((await fail(a.url, NOT_WORDLIST_KEY)).status).toBe(404);
    await expect429(await fail(a.url, NOT_WORDLIST_KEY), 'IP_BLOCKED', 1);
    const blockKey = a.deps.keys.block(clientIdOf(TEST_SECRET, '127.0.0.1'));
    let ttl = await a.deps.redis.pttl(blockKey);
    for (let i = 0; i < 60 && ttl !== -2; i++) {
      await new Promise((r) => setTimeout(r, Math.max(20, Math.min(ttl, 100))));
      ttl = await a.deps.redis.pttl(blockKey);
    }
    expect(ttl).toBe(-2);
    expect((await fail(a.url, UNKNOWN_WORDLIST_KEY)).status).toBe(404);
  });
});

describe('client IP and X-Forwarded-For', () => {
  it('without TRUST_PROXY a forged X-Forwarded-For neither escapes a block nor blocks someone else', async () => {
    const a = await app({ DOWNLOAD_FAIL_LIMIT: '3', DOWNLOAD_BLOCK_WINDOW: '600' });
    for (let i = 0; i < 3; i++) expect((await fail(a.url, NOT_WORDLIST_KEY, { 'X-Forwarded-For': '198.51.100.9' })).status).toBe(404);
    // The socket address was blocked, not the forged one.
    expect(await a.deps.redis.exists(a.deps.keys.block(clientIdOf(TEST_SECRET, '127.0.0.1')))).toBe(1);
    expect(await a.deps.redis.exists(a.deps.keys.block(clientIdOf(TEST_SECRET, '198.51.100.9')))).toBe(0);
    // A fresh forged address does not escape.
    await expect429(await fail(a.url, NOT_WORDLIST_KEY, { 'X-Forwarded-For': '203.0.113.50' }), 'IP_BLOCKED', 600);
    await expect429(await fail(a.url, NOT_WORDLIST_KEY, { Forwarded: 'for=203.0.113.51' }), 'IP_BLOCKED', 600);
  });

  it('with TRUST_PROXY=loopback two forwarded clients are counted separately', async () => {
    const a = await app({ DOWNLOAD_FAIL_LIMIT: '3', DOWNLOAD_BLOCK_WINDOW: '600', TRUST_PROXY: 'loopback', LOG_IP: 'full' });
    const one = { 'X-Forwarded-For': '203.0.113.7' };
    const two = { 'X-Forwarded-For': '203.0.113.8' };
    for (let i = 0; i < 3; i++) expect((await fail(a.url, NOT_WORDLIST_KEY, one)).status).toBe(404);
    await expect429(await fail(a.url, NOT_WORDLIST_KEY, one), 'IP_BLOCKED', 600);
    expect((await fail(a.url, NOT_WORDLIST_KEY, two)).status).toBe(404);
    expect(a.logs.find((l) => l.event === 'ip_blocked')).toMatchObject({
      ip: '203.0.113.7',
      client: clientIdOf(TEST_SECRET, '203.0.113.7'),
    });
    // IPv6 clients behind the proxy are grouped per /64.
    for (let i = 0; i < 3; i++)
      expect((await fail(a.url, NOT_WORDLIST_KEY, { 'X-Forwarded-For': `2001:db8:1:2::${i + 1}` })).status).toBe(404);
    await expect429(await fail(a.url, NOT_WORDLIST_KEY, { 'X-Forwarded-For': '2001:db8:1:2::ffff' }), 'IP_BLOCKED', 600);
    expect((await fail(a.url, NOT_WORDLIST_KEY, { 'X-Forwarded-For': '2001:db8:1:3::1' })).status).toBe(404);
  });
});

describe('rate limits', () => {
  it('answers the third lookup within a minute with 429 RATE_LIMITED and standard headers', async () => {
    const a = await app({ LOOKUP_RATE_LIMIT: '2/minute' });
    for (let i = 0; i < 2; i++) {
      const res = await fail(a.url, UNKNOWN_WORDLIST_KEY);
      expect(res.status).toBe(404);
      expect(res.headers.get('ratelimit-policy')).toMatch(/^"lookup"; ?q=2; ?w=60/);
      expect(res.headers.get('ratelimit')).toMatch(new RegExp(`^"lookup"; ?r=${1 - i}; ?t=\\d+`));
    }
    const res = await fail(a.url, UNKNOWN_WORDLIST_KEY);
    expect(res.headers.get('ratelimit')).toMatch(/^"lookup"; ?r=0; ?t=\d+/);
    expect(res.headers.get('ratelimit-policy')).toMatch(/q=2/);
    await expect429(res, 'RATE_LIMITED', 60);
    // Not the upload budget.
    expect((await upload(a.url)).status).toBe(201);
  });

  it('answers the second upload within an hour with 429 RATE_LIMITED', async () => {
    const a = await app({ UPLOAD_RATE_LIMIT: '1/hour' });
    expect((await upload(a.url)).status).toBe(201);
    const res = await upload(a.url);
    expect(res.headers.get('ratelimit-policy')).toMatch(/^"upload"; ?q=1; ?w=3600/);
    await expect429(res, 'RATE_LIMITED', 3600);
    const put = await fetch(`${a.url}/upload/x.txt`, { method: 'PUT', body: 'hi' });
    await expect429(put, 'RATE_LIMITED', 3600);
  });
});

describe('the limit store is unreachable', () => {
  it('fails closed with 503 on key-taking routes and uploads, fast; health answers 503', async () => {
    const redis = await startTestRedis();
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const a = await app({}, { redisUrl: redis.url });
      expect((await fail(a.url, UNKNOWN_WORDLIST_KEY)).status).toBe(404);
      await redis.stop();
      const timed = async (request: () => Promise<Response>) => {
        const started = Date.now();
        const res = await request();
        const body = (await res.json()) as { error?: { code: string }; status?: string };
        return { status: res.status, body, ms: Date.now() - started };
      };
      for (const request of [
        () => fail(a.url, UNKNOWN_WORDLIST_KEY),
        () => fetch(`${a.url}/download/${UNKNOWN_WORDLIST_KEY}`),
        () => fetch(`${a.url}/preview/${NOT_WORDLIST_KEY}`),
        () => fetch(`${a.url}/files/${UNKNOWN_WORDLIST_KEY}`, { method: 'DELETE', headers: { 'X-Delete-Token': 'x' } }),
        () => upload(a.url),
        () => fetch(`${a.url}/upload/x.txt`, { method: 'PUT', body: 'hi' }),
      ]) {
        const r = await timed(request);
        expect(r.status).toBe(503);
        expect(r.body.error?.code).toBe('SERVICE_UNAVAILABLE');
        expect(r.ms).toBeLessThan(1_500);
      }
      const health = await timed(() => fetch(`${a.url}/health`));
      expect(health.status).toBe(503);
      expect(health.body.status).toBe('unhealthy');
      expect(health.ms).toBeLessThan(2_500);
      await new Promise((r) => setTimeout(r, 50));
      expect(rejections).toEqual([]);
      // The health limiter counts in the process: it never waits for the Redis that is down.
      expect(a.logs.filter((l) => l.event === 'rate_limit_store_error' && l.limiter === 'health')).toEqual([]);
      await redis.start();
    } finally {
      process.off('unhandledRejection', onRejection);
      await Promise.all(
        opened
          .splice(
            opened.findIndex((x) => x.deps.config.redisUrl === redis.url),
            1,
          )
          .map((x) => x.close().catch(() => undefined)),
      );
      await redis.destroy();
    }
  });
});

describe('CORS: same-origin only', () => {
  let a: TestApp;
  beforeAll(async () => {
    a = await app({});
  });

  it('sends no Access-Control-Allow-Origin to another origin', async () => {
    for (const path of ['/health', `/status/${UNKNOWN_WORDLIST_KEY}`, '/']) {
      const res = await raw(a.url, { path, headers: { Origin: 'https://evil.example' } });
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
      expect(res.headers['access-control-expose-headers']).toBeUndefined();
    }
  });

  it('does not grant a preflight', async () => {
    const res = await raw(a.url, {
      method: 'OPTIONS',
      path: '/upload',
      headers: {
        Origin: 'https://evil.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type',
      },
    });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'CROSS_ORIGIN_FORBIDDEN' } });
    for (const h of [
      'access-control-allow-origin',
      'access-control-allow-methods',
      'access-control-allow-headers',
      'access-control-allow-credentials',
    ])
      expect(res.headers[h]).toBeUndefined();
  });

  it('refuses cross-site posts and sub-resource lookups before they spend the visitor budget', async () => {
    const a = await app({ LOOKUP_RATE_LIMIT: '4/minute' });
    const post = {
      method: 'POST',
      path: '/status',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `key=${UNKNOWN_WORDLIST_KEY}`,
    };
    for (let i = 0; i < 5; i++) {
      expect((await raw(a.url, { ...post, headers: { ...post.headers, Origin: 'https://evil.example' } })).status).toBe(403);
      expect(
        (await raw(a.url, { ...post, headers: { ...post.headers, 'Sec-Fetch-Site': 'cross-site', Origin: 'https://evil.example' } }))
          .status,
      ).toBe(403);
      expect(
        (
          await raw(a.url, {
            path: `/status/${UNKNOWN_WORDLIST_KEY}`,
            headers: { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'no-cors' },
          })
        ).status,
      ).toBe(403);
    }
    // Same origin (the page itself) and non-browser clients work, with the whole budget left.
    const own = await raw(a.url, { ...post, headers: { ...post.headers, Origin: a.url, 'Sec-Fetch-Site': 'same-origin' } });
    expect(own.status).toBe(404);
    expect(own.headers.ratelimit).toMatch(/r=3/);
    expect((await raw(a.url, { ...post, headers: { ...post.headers, Origin: a.url } })).status).toBe(404);
    expect((await raw(a.url, post)).status).toBe(404);
    // A shared link is a top-level navigation: it still reaches the page.
    const nav = await raw(a.url, {
      path: `/download/${UNKNOWN_WORDLIST_KEY}`,
      headers: { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'navigate', Accept: 'text/html' },
    });
    expect(nav.status).toBe(303);
    expect(nav.headers.location).toBe(`/d#${UNKNOWN_WORDLIST_KEY}`);
  });
});

describe('security headers (helmet)', () => {
  it('API answers have a default-src none CSP; pages a CSP without unsafe-inline; no HSTS over http', async () => {
    const a = await app({});
    for (const path of ['/health', `/status/${UNKNOWN_WORDLIST_KEY}`, '/no/such/route']) {
      const res = await fetch(`${a.url}${path}`);
      expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('strict-transport-security')).toBeNull();
    }
    for (const path of ['/', '/d']) {
      const res = await fetch(`${a.url}${path}`);
      expect(res.status).toBe(200);
      const csp = res.headers.get('content-security-policy');
      expect(csp).toBeTruthy();
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('unsafe-eval');
    }
  });

  it('sends HSTS when PUBLIC_URL is https', async () => {
    const a = await app({ PUBLIC_URL: 'https://drop.example' });
    const res = await fetch(`${a.url}/health`);
    expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
    expect((await fetch(`${a.url}/`)).headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
  });
});

describe('slow clients', () => {
  it('closes a socket that trickles its headers past headersTimeout', async () => {
    const a = await app({});
    const server = http.createServer({ connectionsCheckingInterval: 100 }, createApp(a.deps));
    configureServerTimeouts(server, a.config, { headersTimeoutMs: 600 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const socket = net.connect(port, '127.0.0.1');
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (received += d));
      const started = Date.now();
      socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n');
      const trickle = setInterval(() => socket.writable && socket.write('X-Slow: a\r\n'), 100);
      const closedAfter = await new Promise<number>((resolve, reject) => {
        const guard = setTimeout(() => reject(new Error('socket still open after 5 s')), 5_000);
        socket.once('close', () => (clearTimeout(guard), resolve(Date.now() - started)));
        socket.once('error', () => undefined);
      });
      clearInterval(trickle);
      expect(closedAfter).toBeGreaterThanOrEqual(500);
      expect(received).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("answers 408 and closes the socket when a key route's small body trickles past its deadline, before any limiter counts it", async () => {
    // UPLOAD_STALL_SECONDS=1: the small-body deadline is the shorter of it and 10 s.
    const a = await app({ UPLOAD_STALL_SECONDS: '1' });
    // BullMQ's queue writes its metadata hash once after it connects, whenever that is: not a count.
    const queueMeta = `${a.deps.keys.queuePrefix()}:${JANITOR_QUEUE}:meta`;
    const redisKeysNow = async () => (await a.deps.redis.keys(`${a.deps.keys.prefix}:*`)).filter((k) => k !== queueMeta).sort();
    const keysBefore = await redisKeysNow();
    for (const [method, route] of [
      ['POST', '/status'],
      ['POST', '/download'],
      ['DELETE', '/files'],
    ]) {
      const { port } = new URL(a.url);
      const socket = net.connect(Number(port), '127.0.0.1');
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (received += d));
      const started = Date.now();
      socket.write(
        `${method} ${route} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"key":"`,
      );
      // A byte every 100 ms: never idle long enough for the socket's idle timer.
      const trickle = setInterval(() => socket.writable && socket.write('a'), 100);
      const closedAfter = await new Promise<number>((resolve, reject) => {
        const guard = setTimeout(() => reject(new Error(`${route}: socket still open after 5 s`)), 5_000);
        socket.once('close', () => (clearTimeout(guard), resolve(Date.now() - started)));
        socket.once('error', () => undefined);
      });
      clearInterval(trickle);
      expect(closedAfter, route).toBeGreaterThanOrEqual(900);
      const [head, body] = received.split('\r\n\r\n');
      expect(head, route).toMatch(/^HTTP\/1\.1 408 /);
      expect(head?.toLowerCase(), route).toContain('connection: close');
      expect(JSON.parse(body!), route).toEqual({
        error: { code: 'REQUEST_TIMEOUT', message: 'The request body did not arrive in time.', request_id: expect.any(String) },
      });
    }
    // Counted nowhere: no failed lookup, no rate-limit hit (the guards run after the body).
    expect(await redisKeysNow()).toEqual(keysBefore);
    // A body that arrives in time is served as before.
    const res = await fetch(`${a.url}/status`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ key: UNKNOWN_WORDLIST_KEY }),
    });
    expect(res.status).toBe(404);
  });

  it('closes the connection after answering a key route whose body it does not read (another Content-Type), however slowly that body comes', async () => {
    const a = await app({});
    const { port } = new URL(a.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (received += d));
    socket.write('POST /status HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\nkey=');
    const trickle = setInterval(() => socket.writable && socket.write('a'), 100);
    const closed = await new Promise<boolean>((resolve) => {
      const guard = setTimeout(() => resolve(false), 5_000);
      socket.once('close', () => (clearTimeout(guard), resolve(true)));
      socket.once('error', () => undefined);
    });
    clearInterval(trickle);
    socket.destroy();
    expect(received).toMatch(/^HTTP\/1\.1 4\d\d /); // answered at once, whatever the route made of no key
    expect(received.toLowerCase()).toContain('connection: close');
    expect(closed).toBe(true);
  });

  it('sizes requestTimeout for the largest upload at 64 KiB/s', async () => {
    const server = http.createServer();
    configureServerTimeouts(server, { maxFileSize: 100 * 1024 * 1024, uploadStallSeconds: 30 });
    expect(server.headersTimeout).toBe(20_000);
    expect(server.requestTimeout).toBe(1600 * 1000 + 60_000);
    expect(server.timeout).toBe(35_000);
  });
});
