import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { testEnv, uniquePrefix } from '../helpers/app.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';

const NOT_WORDLIST_KEY = 'zzqx-notaword-qqqq-xyzzy';

async function upload(url: string): Promise<Response> {
  const form = new FormData();
  form.append('file', new Blob(['replica test\n'], { type: 'text/plain' }), 'r.txt');
  return fetch(`${url}/upload`, { method: 'POST', body: form });
}

/** Two real API processes on one Redis and one prefix: counts and blocks are shared. */
describe('two API replicas on one Redis', () => {
  let dir: string;
  const procs: RunningProcess[] = [];
  const urls: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-replicas-'));
    const env = testEnv(dir, uniquePrefix(), inject('redisUrl'), {
      UPLOAD_RATE_LIMIT: '2/hour',
      DOWNLOAD_FAIL_LIMIT: '2',
      DOWNLOAD_BLOCK_WINDOW: '600',
      LOG_DIR: '',
    });
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const proc = runTs('app/main.ts', { ...env, PORT: String(port), HOST: '127.0.0.1' });
      procs.push(proc);
      urls.push(`http://127.0.0.1:${port}`);
    }
    await Promise.all(procs.map((p) => p.waitForEvent('api_started', 30_000)));
  }, 60_000);

  afterAll(async () => {
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGTERM');
        await p.exited;
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('share the upload limit', async () => {
    const [a, b] = urls as [string, string];
    expect((await upload(a)).status).toBe(201);
    expect((await upload(a)).status).toBe(201);
    const res = await upload(b);
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ error: { code: 'RATE_LIMITED', retry_after_seconds: expect.any(Number) } });
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('share blocks: two failures on A block the client on B', async () => {
    const [a, b] = urls as [string, string];
    expect((await fetch(`${a}/status/${NOT_WORDLIST_KEY}`)).status).toBe(404);
    expect((await fetch(`${a}/status/${NOT_WORDLIST_KEY}`)).status).toBe(404);
    const res = await fetch(`${b}/status/${NOT_WORDLIST_KEY}`);
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ error: { code: 'IP_BLOCKED' } });
    expect((await fetch(`${b}/download/${NOT_WORDLIST_KEY}`)).status).toBe(429);
  });

  it('log no ERR_ERL_ validation warnings', () => {
    for (const p of procs) expect(`${p.stdout()}\n${p.stderr()}`).not.toContain('ERR_ERL_');
  });
});
