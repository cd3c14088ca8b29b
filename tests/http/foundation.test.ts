import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';

describe('the HTTP foundation', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers an unknown route with the JSON error envelope and a 404', async () => {
    const res = await fetch(`${app.url}/no/such/place`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string; message: string; request_id: string } };
    expect(body).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String), request_id: res.headers.get('x-request-id') } });
  });

  it('honours a well-formed X-Request-ID and returns it', async () => {
    const res = await fetch(`${app.url}/health`, { headers: { 'X-Request-ID': 'client-chosen-id-123' } });
    expect(res.headers.get('x-request-id')).toBe('client-chosen-id-123');
  });

  it('replaces a malformed X-Request-ID with a generated one', async () => {
    const res = await fetch(`${app.url}/health`, { headers: { 'X-Request-ID': 'bad id with spaces "and quotes"' } });
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('logs one request_completed line per request with the route template, never the raw path', async () => {
    const res = await fetch(`${app.url}/health/`, { headers: { 'X-Request-ID': 'log-line-check-0001' } });
    await res.arrayBuffer();
    const nonsense = await fetch(`${app.url}/secret-looking-path/apple-banana`);
    await nonsense.arrayBuffer();
    const lines = app.logs.filter((l) => l.event === 'request_completed' && l.request_id === 'log-line-check-0001');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'info',
      service: 'api',
      method: 'GET',
      route: '/health',
      status_code: 200,
      duration_ms: expect.any(Number),
    });
    expect(lines[0]!.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(app.rawLogs.join('\n')).not.toContain('apple-banana');
  });

  it('reports healthy when Redis, storage, the wordlist and a fresh heartbeat are present', async () => {
    await app.deps.redis.set(app.deps.keys.heartbeat(), 'x', 'EX', 15);
    const res = await fetch(`${app.url}/health`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      status: 'healthy',
      version: 'test',
      services: { redis: 'online', storage: 'online', scheduler: 'online', diceware: 'online' },
      uptime_seconds: expect.any(Number),
      started_at: expect.any(String),
      timestamp: expect.any(String),
    });
  });

  it('reports degraded (still 200) when the worker heartbeat is missing', async () => {
    await app.deps.redis.del(app.deps.keys.heartbeat());
    const res = await fetch(`${app.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'degraded', services: { scheduler: 'offline', redis: 'online' } });
  });
});
