/**
 * The admin command (issue 20) as an operator runs it: a real process against the suite's Redis,
 * next to the API (in-process) and a real janitor worker sharing its prefix and directories.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { clientIdOf } from '../../app/abuse/abuse.models.js';
import { loadConfig } from '../../app/config.js';
import { purge } from '../../scripts/admin/actions.js';
import { connect } from '../../scripts/admin/context.js';
import { startTestApp, TEST_SECRET, testEnv, useAppStack, type TestApp } from '../helpers/app.js';
import { fileKeys, redisKeysOf, uploadOk, waitFor, type UploadAnswer } from '../helpers/files.js';
import { ROOT, runTs, type RunningProcess } from '../helpers/processes.js';
import { startTestRedis } from '../helpers/redis-server.js';

const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
const BLOCK_SECONDS = 600;

interface AdminRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Every byte the admin command printed in this file, to look for secrets at the end. */
const printed: string[] = [];

/** Runs `admin <args>` as its own process and waits until it has exited and its output is read. */
function admin(args: string[], env: Record<string, string>, options: { cwd?: string } = {}): Promise<AdminRun> {
  const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'scripts/admin.ts'), ...args], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'close' comes after both streams ended, so the output is complete.
  return new Promise((resolve) =>
    child.once('close', (code) => {
      printed.push(stdout, stderr);
      resolve({ code, stdout, stderr });
    }),
  );
}

const json = <T = Record<string, unknown>>(run: AdminRun): T => JSON.parse(run.stdout) as T;

describe('npm run admin', () => {
  let app: TestApp;
  let worker: RunningProcess;
  let env: Record<string, string>;
  const uploads: UploadAnswer[] = [];

  beforeAll(async () => {
    // No resume window: the burned file's blob is shredded as soon as its download ends.
    const settings = {
      TRUST_PROXY: 'loopback',
      DOWNLOAD_FAIL_LIMIT: '3',
      DOWNLOAD_BLOCK_WINDOW: String(BLOCK_SECONDS),
      RESUME_WINDOW_SECONDS: '0',
    };
    app = await startTestApp({ env: settings });
    env = testEnv(app.dir, app.config.redisPrefix, inject('redisUrl'), settings);
    worker = runTs('workers/main.ts', env);
    await worker.waitForEvent('worker_started');
  });
  afterAll(async () => {
    worker.child.kill('SIGTERM');
    await worker.exited;
    await app.close();
  });

  const statusFrom = (ip: string, key: string) =>
    fetch(`${app.url}/status/${key}`, { headers: { 'X-Forwarded-For': ip } }).then((r) => r.status);
  /** DOWNLOAD_FAIL_LIMIT (3) lookups of keys that are not wordlist words block the client. */
  const block = async (ip: string) => {
    for (let i = 0; i < 3; i += 1) expect(await statusFrom(ip, 'not-a-wordlist-key')).toBe(404);
    expect(await statusFrom(ip, uploads[0]!.key)).toBe(429);
  };

  it('answers usage errors with exit 2 and the usage, and --help with exit 0', async () => {
    for (const args of [[], ['frobnicate'], ['stats', 'extra'], ['unblock'], ['stats', '--yes'], ['stats', '--verbose']]) {
      const run = await admin(args, env);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toContain('usage: npm run admin -- <verb>');
    }
    const help = await admin(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('exit codes: 0 ok, 1 a problem was found');
    // With --json, stdout is one JSON object in every case, for `| jq`.
    const usage = await admin(['unblock', '--json'], env);
    expect(usage.code).toBe(2);
    expect(json(usage)).toEqual({ error: expect.stringContaining('unblock') });
    const helpJson = await admin(['--help', '--json'], env);
    expect(helpJson.code).toBe(0);
    expect(json<{ usage: string }>(helpJson).usage).toContain('usage: npm run admin -- <verb>');
  });

  it('stats: live files and their bytes, blocks, queue and worker', async () => {
    uploads.push(await uploadOk(app, 'a'.repeat(100)), await uploadOk(app, 'b'.repeat(2000)));
    const burned = await uploadOk(app, 'c'.repeat(50));
    expect((await fetch(`${app.url}/download/${burned.key}`)).status).toBe(200);

    const run = await admin(['stats', '--json'], env);
    expect(run.code).toBe(0);
    const stats = json(run);
    expect(stats).toMatchObject({ live_files: 2, live_bytes: 2100, blocked_clients: 0, worker: { online: true } });
    expect(Object.keys(stats.queue as object)).toEqual(['waiting', 'delayed', 'active', 'prioritized', 'failed', 'completed']);
    expect((stats.queue as { delayed: number }).delayed).toBeGreaterThanOrEqual(2); // the two live files' expiries

    const text = await admin(['stats'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^live files\s+2$/m);
    expect(text.stdout).toMatch(/^worker\s+online/m);
  });

  it('blocks: hashed clients as the log names them, and when each block ends', async () => {
    await block('203.0.113.7');
    await block('198.51.100.9');
    const run = await admin(['blocks', '--json'], env);
    expect(run.code).toBe(0);
    const { blocks } = json<{ blocks: { client: string; ends_at: string; seconds_left: number }[] }>(run);
    expect(blocks.map((b) => b.client).sort()).toEqual(
      [clientIdOf(TEST_SECRET, '203.0.113.7'), clientIdOf(TEST_SECRET, '198.51.100.9')].sort(),
    );
    for (const b of blocks) {
      expect(b.seconds_left).toBeGreaterThan(BLOCK_SECONDS - 30);
      expect(b.seconds_left).toBeLessThanOrEqual(BLOCK_SECONDS);
      expect(Date.parse(b.ends_at) - Date.now()).toBeGreaterThan((BLOCK_SECONDS - 30) * 1000);
    }
    const text = await admin(['blocks'], env);
    expect(text.stdout).toContain(clientIdOf(TEST_SECRET, '203.0.113.7'));
    expect(text.stdout).not.toMatch(/203\.0\.113|198\.51\.100/); // no IP is stored, so none can be shown
    expect(json(await admin(['stats', '--json'], env))).toMatchObject({ blocked_clients: 2 });
  });

  it('unblock <ip>: that client is let in at once, and only that client', async () => {
    const run = await admin(['unblock', '203.0.113.7'], env);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`unblocked 203.0.113.7 (${clientIdOf(TEST_SECRET, '203.0.113.7')})`);
    expect(await statusFrom('203.0.113.7', uploads[0]!.key)).toBe(200);
    expect(await statusFrom('198.51.100.9', uploads[0]!.key)).toBe(429);
    // Its failure count went with the block: one more mistake does not block it again.
    expect(await statusFrom('203.0.113.7', 'not-a-wordlist-key')).toBe(404);
    expect(await statusFrom('203.0.113.7', uploads[0]!.key)).toBe(200);

    const again = await admin(['unblock', '203.0.113.7', '--json'], env);
    expect(again.code).toBe(1);
    expect(json(again)).toEqual({ unblocked: false, clients: [{ client: clientIdOf(TEST_SECRET, '203.0.113.7'), was_blocked: false }] });
  });

  it('unblock <hash>: the client hash from an ip_blocked line works too', async () => {
    const run = await admin(['unblock', clientIdOf(TEST_SECRET, '198.51.100.9'), '--json'], env);
    expect(run.code).toBe(0);
    expect(json(run)).toEqual({ unblocked: true, clients: [{ client: clientIdOf(TEST_SECRET, '198.51.100.9'), was_blocked: true }] });
    expect(await statusFrom('198.51.100.9', uploads[0]!.key)).toBe(200);
    expect(json(await admin(['blocks', '--json'], env))).toEqual({ blocks: [] });
  });

  it('unblock <IPv6 address>: lifts the block of its whole /64, and of its /48 when that is blocked too', async () => {
    await block('2001:db8:1:2::5');
    const run = await admin(['unblock', '2001:db8:1:2:ffff::99', '--json'], env);
    expect(run.code).toBe(0);
    expect(json(run)).toEqual({
      unblocked: true,
      clients: [
        { client: clientIdOf(TEST_SECRET, '2001:db8:1:2::/64'), was_blocked: true },
        { client: clientIdOf(TEST_SECRET, '2001:db8:1::/48'), was_blocked: false },
      ],
    });
    expect(await statusFrom('2001:db8:1:2::5', uploads[0]!.key)).toBe(200);
    // The /48 was not blocked: its failure count stays, or unblocking one /64 would hand the others a fresh budget.
    const site = app.deps.keys.lookupFailures(clientIdOf(TEST_SECRET, '2001:db8:1::/48'));
    expect(await app.deps.redis.hget(site, 'failed')).toBe('3');

    // Twelve failures (4 × DOWNLOAD_FAIL_LIMIT) from four /64s of one /48 block the whole /48.
    for (const net of [3, 4, 5, 6]) await block(`2001:db8:2:${net}::1`);
    expect(await statusFrom('2001:db8:2:7::1', uploads[0]!.key)).toBe(429);
    // Its ip_blocked line names the /48 by the hash `blocks` lists and `unblock` takes (it named the /64).
    const siteLine = app.logs.filter((l) => l.event === 'ip_blocked' && l.scope === 'aggregate').at(-1);
    expect(siteLine?.client).toBe(clientIdOf(TEST_SECRET, '2001:db8:2::/48'));
    const listed = json<{ blocks: { client: string }[] }>(await admin(['blocks', '--json'], env)).blocks.map((b) => b.client);
    expect(listed).toContain(siteLine?.client);
    const text = await admin(['unblock', '2001:db8:2:6::1'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(
      `unblocked 2001:db8:2:6::/64 (${clientIdOf(TEST_SECRET, '2001:db8:2:6::/64')}) and 2001:db8:2::/48 (${clientIdOf(TEST_SECRET, '2001:db8:2::/48')})`,
    );
    expect(await statusFrom('2001:db8:2:6::1', uploads[0]!.key)).toBe(200);
    expect(await statusFrom('2001:db8:2:7::1', uploads[0]!.key)).toBe(200); // the /48 block is gone for all of it
    expect(await statusFrom('2001:db8:2:5::1', uploads[0]!.key)).toBe(429); // another /64's own block stays
  });

  it('unblock refuses what is neither an IP nor a hash (2), and an IP when it cannot hash it as the API does (1)', async () => {
    expect((await admin(['unblock', 'example.com'], env)).code).toBe(2);
    // No CINDERBOX_SECRET and no var/cinderbox-secret where it runs: it says so instead of guessing.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-admin-'));
    try {
      const { CINDERBOX_SECRET: _secret, ...withoutSecret } = env;
      const run = await admin(['unblock', '203.0.113.7'], withoutSecret, { cwd: dir });
      expect(run.code).toBe(1);
      expect(run.stderr + run.stdout).toContain('needs the server secret');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('sweep: queues a manual sweep that the worker runs, removing an old orphan', async () => {
    await app.storage.put('left-behind.bin', 'nobody owns this', { ageMs: 3_600_000 });

    const since = worker.mark();
    const run = await admin(['sweep', '--json'], env);
    expect(run.code).toBe(0);
    const { job_id: jobId, worker_online: online } = json<{ job_id: string; worker_online: boolean }>(run);
    expect(jobId).toMatch(/^sweep-manual-\d+$/);
    expect(online).toBe(true);
    const swept = await worker.waitForEvent('orphan_swept', 20_000, { since, where: (line) => line.job_id === jobId });
    expect(swept).toMatchObject({ trigger: 'manual', failed: 0 });
    expect(Number(swept.shredded)).toBeGreaterThanOrEqual(1);
    expect((await app.storage.names()).filter((name) => name.endsWith('left-behind.bin'))).toEqual([]);
  });

  it('purge: refuses without --yes and touches nothing; with it, every live file is gone at once and shredded', async () => {
    uploads.push(await uploadOk(app, 'd'.repeat(10)));
    const refused = await admin(['purge'], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr + refused.stdout).toContain('--yes');
    for (const file of uploads) expect((await fetch(`${app.url}/status/${file.key}`)).status).toBe(200);

    const lookupIds = (await fileKeys(app)).map((k) => /\{(.+)\}/.exec(k)?.[1]).filter(Boolean);
    const blobsBefore = await app.storage.blobIds();
    expect(blobsBefore).toHaveLength(3);
    const since = worker.mark();
    const run = await admin(['purge', '--yes', '--json'], env);
    expect(run.code).toBe(0);
    expect(json(run)).toEqual({ purged: 3, resume_windows_ended: 0, shreds_queued: 3, worker_online: true });

    for (const file of uploads) {
      const res = await fetch(`${app.url}/status/${file.key}`);
      expect(res.status).toBe(410);
      expect(await res.json()).toMatchObject({ error: { code: 'FILE_GONE', reason: 'deleted' } });
    }
    const shreds = () =>
      Promise.resolve(worker.events().filter((l, i) => i >= since && l.event === 'blob_shredded' && l.reason === 'deleted').length);
    await waitFor(shreds, (n) => n === 3, 20_000, 'the worker to shred the three purged blobs');
    expect(await app.storage.names()).toEqual([]);
    expect(json(await admin(['stats', '--json'], env))).toMatchObject({ live_files: 0, live_bytes: 0 });

    // Nothing the command printed in this file names a secret: keys, tokens, lookup ids, blob ids, the server secret.
    const all = printed.join('\n');
    for (const secret of [TEST_SECRET, ...uploads.flatMap((u) => [u.key, u.delete_token]), ...lookupIds, ...blobsBefore])
      expect(all).not.toContain(secret);
  });
});

describe('npm run admin doctor', () => {
  const stack = useAppStack({ worker: true });

  type Doctor = { ok: boolean; problems: number; checks: { name: string; status: string; detail: string }[] };
  const statusOf = (report: Doctor) => Object.fromEntries(report.checks.map((c) => [c.name, c.status]));

  it('finds nothing wrong with a healthy stack (exit 0), in text and JSON', async () => {
    const { env } = stack;
    const run = await admin(['doctor', '--json'], env);
    expect(run.code).toBe(0);
    const report = json<Doctor>(run);
    expect(report).toMatchObject({ ok: true, problems: 0 });
    expect(statusOf(report)).toEqual({
      config: 'ok',
      redis: 'ok',
      eviction: 'ok',
      persistence: 'ok',
      memory: 'warn',
      worker: 'ok',
      clock: 'ok',
      queue: 'ok',
      storage: 'ok',
    });
    expect(report.checks.find((c) => c.name === 'clock')?.detail).toMatch(/^[+-]\d+ ms against Redis TIME/);
    const text = await admin(['doctor'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ok\s+worker\s+heartbeat \d+s ago$/m);
    expect(text.stdout).toMatch(/no problem found\n$/);
  });

  it('fails on an evicting, persisting Redis with no worker (exit 1), naming each', async () => {
    const { env } = stack;
    const redis = await startTestRedis(['--maxmemory-policy', 'allkeys-lru', '--appendonly', 'yes']);
    try {
      const run = await admin(['doctor', '--json'], { ...env, REDIS_URL: redis.url });
      expect(run.code).toBe(1);
      const report = json<Doctor>(run);
      expect(statusOf(report)).toMatchObject({
        redis: 'ok',
        eviction: 'fail',
        persistence: 'fail',
        worker: 'fail',
        clock: 'ok',
        storage: 'ok',
      });
      expect(report.problems).toBe(3);
      expect(report.checks.find((c) => c.name === 'persistence')?.detail).toContain('appendonly yes');
    } finally {
      await redis.destroy();
    }
  });

  it('reports an unreachable Redis and a bad configuration as problems, without quoting a credential', async () => {
    const { env } = stack;
    const unreachable = await admin(['doctor'], { ...env, REDIS_URL: 'redis://:hunter2@127.0.0.1:1' });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stdout).toMatch(/^FAIL\s+redis\s+not reachable/m);
    expect(unreachable.stdout).toMatch(/^ok\s+storage/m);

    const bad = await admin(['doctor', '--json'], { ...env, CINDERBOX_SECRET: 'too-short-secret', PORT: 'eighty' });
    expect(bad.code).toBe(1);
    const report = json<Doctor>(bad);
    expect(report.checks[0]).toMatchObject({ name: 'config', status: 'fail' });
    expect(report.checks[0]!.detail).toContain('PORT: expected a positive integer, got "eighty"');
    expect(report.checks[0]!.detail).toContain('CINDERBOX_SECRET: expected at least 32 characters');
    expect(bad.stdout + unreachable.stdout + unreachable.stderr).not.toMatch(/too-short-secret|hunter2/);
  });

  it('other verbs stop with exit 1 when Redis cannot be reached', async () => {
    const { env } = stack;
    const run = await admin(['stats'], { ...env, REDIS_URL: 'redis://127.0.0.1:1' });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('admin stats: Redis not reachable');
  });
});

describe('npm run admin purge, with resume windows open', () => {
  const stack = useAppStack({ worker: true });

  // Each download left a resume record (the data key wrapped once more) and kept its blob for the
  // window: a purge ends both, for a live file and for a burned one, as a sender's delete would.
  it('ends every resume window: the records and their protection go, and the bytes are shredded', async () => {
    const { app, worker, env } = stack;
    const live = await uploadOk(app, 'still has a use', 'live.txt', { uses: '2' });
    const burned = await uploadOk(app, 'had its one use', 'burned.txt', { uses: '1' });
    const etags: string[] = [];
    for (const file of [live, burned]) {
      const res = await fetch(file.download_url, { headers: { Accept: '*/*' } });
      expect(res.status).toBe(200);
      etags.push(res.headers.get('etag')!);
      await res.arrayBuffer();
    }
    expect(await redisKeysOf(app, 'resume:*')).toHaveLength(2);

    const since = worker.mark();
    const run = await admin(['purge', '--yes', '--json'], env);
    expect(run.code).toBe(0);
    expect(json(run)).toEqual({ purged: 1, resume_windows_ended: 2, shreds_queued: 2, worker_online: true });

    expect(await redisKeysOf(app, 'resume:*')).toEqual([]);
    // Nothing resumes: the burned file's capability opens nothing, its Range is ignored, and it is gone.
    const resumed = await fetch(burned.download_url, { headers: { Accept: '*/*', Range: 'bytes=1-', 'If-Range': etags[1]! } });
    expect(resumed.status).toBe(410);
    const shreds = () =>
      Promise.resolve(worker.events().filter((l, i) => i >= since && l.event === 'blob_shredded' && l.kind === 'blob').length);
    await waitFor(shreds, (n) => n === 2, 20_000, 'the worker to shred both blobs');
    expect(await app.storage.blobIds()).toEqual([]);
  });

  // A file uploaded after the purge's first pass, and downloaded, is live: its download gets no resume
  // window while the purge runs, and its bytes are its own jobs' (a shred queued for it would wait for
  // its expiry under the id its sender's delete then uses, and that delete's shred would wait too).
  it("opens no window for a file that became live during the purge, and leaves its bytes to the file's own delete", async () => {
    const { app, worker, env } = stack;
    await uploadOk(app, 'purged in the first pass', 'first.txt');
    let late: UploadAnswer | undefined;
    const ctx = await connect(loadConfig(env));
    const enqueue = ctx.janitor.enqueue;
    ctx.janitor.enqueue = (async (...args: Parameters<typeof enqueue>) => {
      if (late === undefined) {
        // Between the passes: a new file, downloaded once (a resume record), two uses so it stays live.
        late = await uploadOk(app, 'uploaded during the purge', 'late.txt', { uses: '2' });
        const res = await fetch(late.download_url, { headers: { Accept: '*/*' } });
        expect(res.status).toBe(200);
        expect(res.headers.get('etag')).toBeNull();
        await res.arrayBuffer();
      }
      return enqueue(...args);
    }) as typeof enqueue;
    try {
      const report = await purge(ctx);
      expect(report.json).toEqual({ purged: 1, resume_windows_ended: 0, shreds_queued: 1, worker_online: true });
    } finally {
      await ctx.close();
    }
    expect(await redisKeysOf(app, 'resume:*')).toEqual([]);
    const status = await fetch(late!.status_url);
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ remaining_uses: 1 });

    // The sender deletes it: its bytes are shredded now, not at its expiry.
    const since = worker.mark();
    const del = await fetch(late!.delete_url, { method: 'DELETE', headers: { 'X-Delete-Token': late!.delete_token } });
    expect(del.status).toBe(204);
    await worker.waitForEvent('blob_shredded', 20_000, { since, where: (line) => line.reason === 'deleted' && line.kind === 'blob' });
    // And the purged file's bytes (its shred may come before or after).
    await waitFor(
      () => app.storage.blobIds(),
      (ids) => ids.length === 0,
      20_000,
      'both blobs to be shredded',
    );
  });

  /** Makes the app's next blob read wait at a gate, then fail (`fail`) or read for real. */
  const stallNextRead = (app: TestApp) => {
    const store = app.deps.store;
    const real = store.read.bind(store);
    let reached!: () => void;
    let release!: (how: 'fail' | 'read') => void;
    const atRead = new Promise<void>((resolve) => (reached = resolve));
    const gate = new Promise<'fail' | 'read'>((resolve) => (release = resolve));
    store.read = async (...args: Parameters<typeof real>) => {
      store.read = real;
      reached();
      if ((await gate) === 'fail') throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', syscall: 'read' });
      return real(...args);
    };
    return { atRead, release };
  };

  // The burn is claimed before the purge; its first pass finds no record; the download then fails and
  // its refund restores the record (tombstone back to "expired") before the pass over the tombstones.
  it('keeps a burn gone whose refund comes between the passes', async () => {
    const { app, env } = stack;
    await uploadOk(app, 'purged in the first pass', 'first.txt');
    const file = await uploadOk(app, 'burning now', 'burning.txt', { uses: '1' });
    const read = stallNextRead(app);
    const pending = fetch(file.download_url, { headers: { Accept: '*/*' } });
    await read.atRead;

    const ctx = await connect(loadConfig(env));
    const enqueue = ctx.janitor.enqueue;
    let failed: number | undefined;
    ctx.janitor.enqueue = (async (...args: Parameters<typeof enqueue>) => {
      if (failed === undefined) {
        read.release('fail');
        failed = (await pending).status; // answered after its refund ran
      }
      return enqueue(...args);
    }) as typeof enqueue;
    try {
      await purge(ctx);
    } finally {
      await ctx.close();
    }
    expect(failed).toBe(503);
    const status = await fetch(`${app.url}/status/${file.key}`);
    expect(status.status).toBe(410);
    expect(await status.json()).toMatchObject({ error: { code: 'FILE_GONE' } });
  });

  // A download claimed just before its file expired verifies its first chunk only after a purge that
  // ran past the expiry (the file was no longer live for its first pass): it gets no resume window.
  it('writes no resume record for a download claimed before the purge and started after it', async () => {
    let offset = 0;
    const app = await startTestApp({ now: () => new Date(Date.now() + offset) });
    try {
      const file = await uploadOk(app, 'about to expire', 'expiring.txt', { uses: '2', expiry: '1' });
      const read = stallNextRead(app);
      const pending = fetch(file.download_url, { headers: { Accept: '*/*' } });
      await read.atRead;
      offset = 61_000; // the record's time is up (Redis has not removed it yet)

      const ctx = await connect(loadConfig(testEnv(app.dir, app.config.redisPrefix, inject('redisUrl'))));
      ctx.now = () => Date.now() + offset;
      try {
        expect((await purge(ctx)).json).toMatchObject({ purged: 0, resume_windows_ended: 0 });
      } finally {
        await ctx.close();
      }
      read.release('read');
      const res = await pending;
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('about to expire');
      expect(res.headers.get('etag')).toBeNull();
      expect(await redisKeysOf(app, 'resume:*')).toEqual([]);
    } finally {
      await app.close();
    }
  });

  // A burn on its way to its first byte has no record left for purge to delete, and no resume record
  // yet: its tombstone must say deleted, or a refund would bring the file back after the purge.
  it('keeps a burn that was in progress gone, though its download then fails before its first byte', async () => {
    const { app, env } = stack;
    const file = await uploadOk(app, 'burning now', 'burning.txt', { uses: '1' });
    const store = app.deps.store;
    const real = store.read.bind(store);
    let reached!: () => void;
    let open!: () => void;
    const atRead = new Promise<void>((resolve) => (reached = resolve));
    const gate = new Promise<void>((resolve) => (open = resolve));
    store.read = async () => {
      store.read = real;
      reached();
      await gate;
      throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', syscall: 'read' });
    };
    const pending = fetch(file.download_url, { headers: { Accept: '*/*' } });
    await atRead; // claimed: the file is burned, its record gone

    const run = await admin(['purge', '--yes', '--json'], env);
    expect(run.code).toBe(0);
    open();
    expect((await pending).status).toBe(503); // refunded: the store failed before the first byte
    const status = await fetch(`${app.url}/status/${file.key}`);
    expect(status.status).toBe(410);
    expect(await status.json()).toMatchObject({ error: { code: 'FILE_GONE', reason: 'deleted' } });
  });
});
