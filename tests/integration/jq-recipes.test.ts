/**
 * The jq recipes of docs/OPERATIONS.md ("jq recipes"), run with the real jq against the log files
 * of a real API and a real worker. The recipes are read from the doc (blocks marked
 * `<!-- jq-recipe: <id> -->`), so the doc and this test cannot drift: a recipe without a check
 * here, or a check without its recipe, fails.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { clientIdOf } from '../../app/abuse/abuse.models.js';
import { createJanitorQueue } from '../../app/jobs/enqueue.js';
import { createWorkerRedis } from '../../app/shared/redis.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { TEST_SECRET } from '../helpers/app.js';
import { ROOT } from '../helpers/processes.js';
import { startStack, type Stack } from '../helpers/stack.js';

const UPLOAD_REQUEST_ID = 'recipe-upload-0001';
const BLOCKED_IP = '203.0.113.7';
const SIZES = { burned: 1234, deleted: 2000, expired: 10, corrupted: 4096 };

/** `<!-- jq-recipe: id -->` followed by a fenced sh block: id → command. */
function recipesOf(markdown: string): Map<string, string> {
  const recipes = new Map<string, string>();
  for (const match of markdown.matchAll(/<!-- jq-recipe: ([a-z0-9-]+) -->\n```sh\n([\s\S]*?)```/g)) {
    const [, id, command] = match as unknown as [string, string, string];
    if (recipes.has(id)) throw new Error(`recipe ${id} twice in the doc`);
    recipes.set(id, command.trim());
  }
  return recipes;
}

interface RecipeRun {
  stdout: string;
  lines: string[];
  json: Record<string, unknown>[];
}

describe('the jq recipes of docs/OPERATIONS.md, on the logs of real processes', () => {
  let stack: Stack;
  let root: string;
  let recipes: Map<string, string>;

  /** Runs a recipe as an operator would: sh, in the directory that holds logs/, with the real jq. */
  const run = (id: string, env: Record<string, string> = {}): RecipeRun => {
    const command = recipes.get(id);
    if (command === undefined) throw new Error(`no recipe ${id} in docs/OPERATIONS.md`);
    const result = spawnSync('sh', ['-c', command], { cwd: root, env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });
    expect(result.stderr, `${id} wrote to stderr`).toBe('');
    expect(result.status, `${id} exit status`).toBe(0);
    const lines = result.stdout.split('\n').filter(Boolean);
    const json = lines.every((l) => l.startsWith('{')) ? lines.map((l) => JSON.parse(l) as Record<string, unknown>) : [];
    return { stdout: result.stdout, lines, json };
  };

  beforeAll(async () => {
    try {
      execFileSync('jq', ['--version']);
    } catch {
      throw new Error('jq is not installed (apt-get install -y jq): these recipes need the real one');
    }
    recipes = recipesOf(await readFile(path.join(ROOT, 'docs/OPERATIONS.md'), 'utf8'));
    root = await mkdtemp(path.join(os.tmpdir(), 'cbx-jq-'));
    // No resume window: a burned file's blob is shredded as soon as its download ends.
    stack = await startStack({
      env: {
        LOG_DIR: path.join(root, 'logs'),
        TRUST_PROXY: 'loopback',
        DOWNLOAD_FAIL_LIMIT: '3',
        MIN_EXPIRY_MINUTES: '0.01',
        RESUME_WINDOW_SECONDS: '0',
      },
    });
    const { url, worker } = stack;
    const put = async (body: BodyInit, query = '', headers: Record<string, string> = {}) => {
      const res = await fetch(`${url}/upload/f.bin${query}`, { method: 'PUT', body, headers: { Accept: 'application/json', ...headers } });
      expect(res.status).toBe(201);
      return (await res.json()) as { key: string; delete_token: string };
    };
    const storage = path.join(stack.dir, 'uploads');

    // A file burned by its one download, then shredded.
    let since = worker.mark();
    const burned = await put(randomBytes(SIZES.burned), '', { 'X-Request-ID': UPLOAD_REQUEST_ID });
    expect((await fetch(`${url}/download/${burned.key}`)).status).toBe(200);
    await worker.waitForEvent('blob_shredded', 20_000, { since });

    // A file deleted by its sender, then shredded.
    since = worker.mark();
    const deleted = await put(randomBytes(SIZES.deleted));
    expect(
      (await fetch(`${url}/files/${deleted.key}`, { method: 'DELETE', headers: { 'X-Delete-Token': deleted.delete_token } })).status,
    ).toBe(204);
    await worker.waitForEvent('blob_shredded', 20_000, { since, where: (l) => l.reason === 'deleted' });

    // A file that expires after about a second.
    since = worker.mark();
    await put(randomBytes(SIZES.expired), '?expiry=0.02');
    await worker.waitForEvent('file_expired', 20_000, { since });

    // A client blocked after DOWNLOAD_FAIL_LIMIT unknown keys (through the trusted loopback proxy).
    for (let i = 0; i < 3; i += 1)
      expect((await fetch(`${url}/status/not-a-wordlist-key`, { headers: { 'X-Forwarded-For': BLOCKED_IP } })).status).toBe(404);

    // A stored blob with one byte flipped: its download fails authentication before the first byte.
    const before = new Set(await readdir(storage));
    const corrupted = await put(randomBytes(SIZES.corrupted));
    const [blob] = (await readdir(storage)).filter((n) => !before.has(n));
    const bytes = await readFile(path.join(storage, blob!));
    bytes.writeUInt8(bytes.readUInt8(200) ^ 0xff, 200);
    await writeFile(path.join(storage, blob!), bytes);
    expect((await fetch(`${url}/download/${corrupted.key}`)).status).toBe(500);

    // A job that can never succeed, and a manual sweep.
    const redis = createWorkerRedis(inject('redisUrl'));
    const janitor = createJanitorQueue(redis, redisKeys(stack.prefix).queuePrefix());
    try {
      since = worker.mark();
      await janitor.queue.add('shred', { blobId: 'not a blob id', reason: 'burned' });
      await worker.waitForEvent('job_failed', 20_000, { since });
      await janitor.enqueue('sweep', { trigger: 'manual', requestedAt: Date.now() });
      await worker.waitForEvent('orphan_swept', 20_000, { since, where: (l) => l.trigger === 'manual' });
    } finally {
      await janitor.close();
      redis.disconnect();
    }
    // Both processes stop cleanly, so every line is in the files.
    await stack.stop({ keepDir: true });
  });
  afterAll(async () => {
    await stack?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  const CHECKS: Record<string, () => void> = {
    errors: () => {
      const { json } = run('errors');
      expect(json.every((l) => l.level === 'error' || l.level === 'warn')).toBe(true);
      const events = json.map((l) => l.event);
      for (const event of ['ip_blocked', 'integrity_check_failed', 'job_failed']) expect(events).toContain(event);
      const times = json.map((l) => String(l.timestamp));
      expect(times).toEqual([...times].sort());
      expect(new Set(json.map((l) => l.service))).toEqual(new Set(['api', 'worker']));
    },
    request: () => {
      const { json } = run('request', { REQUEST_ID: UPLOAD_REQUEST_ID });
      expect(json.length).toBeGreaterThanOrEqual(1);
      expect(json.every((l) => l.request_id === UPLOAD_REQUEST_ID)).toBe(true);
      expect(json.find((l) => l.event === 'request_completed')).toMatchObject({
        method: 'PUT',
        route: '/upload/:filename',
        status_code: 201,
      });
    },
    'status-by-route': () => {
      const { lines } = run('status-by-route');
      const counts = new Map(lines.map((l) => [l.trim().replace(/^\d+ /, ''), Number(/^\s*(\d+)/.exec(l)?.[1])]));
      expect(counts.get('201 PUT /upload/:filename')).toBe(4);
      expect(counts.get('204 DELETE /files/:key')).toBe(1);
      expect(counts.get('404 GET /status/:key')).toBe(3);
      expect(counts.get('500 GET /download/:key')).toBe(1);
      expect(counts.get('200 GET /download/:key')).toBe(1);
    },
    'server-errors': () => {
      const { json } = run('server-errors');
      expect(json).toEqual([
        {
          timestamp: expect.any(String),
          request_id: expect.any(String),
          method: 'GET',
          route: '/download/:key',
          status_code: 500,
          error_code: 'INTEGRITY_CHECK_FAILED',
        },
      ]);
    },
    slow: () => {
      const all = run('slow', { SLOW_MS: '0' }).json;
      expect(all.length).toBe(10); // every request: 4 uploads, 2 downloads, 1 delete, 3 lookups
      for (const line of all) expect(Object.keys(line)).toEqual(['timestamp', 'request_id', 'route', 'status_code', 'duration_ms']);
      expect(run('slow', { SLOW_MS: '600000' }).lines).toEqual([]);
    },
    latency: () => {
      const { lines } = run('latency');
      const byRoute = new Map(lines.map((l) => [l.split(' ')[0], l]));
      expect([...byRoute.keys()].sort()).toEqual(['/download/:key', '/files/:key', '/status/:key', '/upload/:filename']);
      expect(byRoute.get('/upload/:filename')).toMatch(/^\/upload\/:filename n=4 p50=[\d.]+ p95=[\d.]+$/);
      expect(byRoute.get('/status/:key')).toMatch(/ n=3 /);
    },
    'uploads-per-minute': () => {
      const { lines } = run('uploads-per-minute');
      expect(lines.every((l) => /^\s*\d+ \d{4}-\d\d-\d\dT\d\d:\d\d$/.test(l))).toBe(true);
      expect(lines.reduce((n, l) => n + Number(/^\s*(\d+)/.exec(l)![1]), 0)).toBe(4);
    },
    bytes: () => {
      const { json } = run('bytes');
      expect(json).toEqual([{ uploaded: SIZES.burned + SIZES.deleted + SIZES.expired + SIZES.corrupted, downloaded: SIZES.burned }]);
    },
    blocks: () => {
      const { json } = run('blocks');
      expect(json).toEqual([
        {
          timestamp: expect.any(String),
          client: clientIdOf(TEST_SECRET, BLOCKED_IP),
          scope: 'client',
          block_seconds: 1800,
          request_id: expect.any(String),
        },
      ]);
    },
    integrity: () => {
      const { json } = run('integrity');
      expect(json).toHaveLength(1);
      expect(json[0]).toMatchObject({ level: 'error', service: 'api', event: 'integrity_check_failed' });
    },
    shreds: () => {
      const { lines } = run('shreds');
      const counts = new Map(lines.map((l) => [l.trim().replace(/^\d+ /, ''), Number(/^\s*(\d+)/.exec(l)?.[1])]));
      expect(counts.get('deleted blob')).toBe(1);
      expect(counts.get('expired blob')).toBe(1);
      // The burned file's bytes went with the burn's shred or the one its download's end queued: once
      // (a lock per blob keeps two jobs of one blob from destroying it side by side).
      const burned = (counts.get('burned blob') ?? 0) + (counts.get('released blob') ?? 0);
      expect(burned).toBe(1);
      expect([...counts.keys()].every((k) => /^(burned|released|deleted|expired) blob$/.test(k))).toBe(true);
    },
    sweeps: () => {
      const { json } = run('sweeps');
      const manual = json.find((l) => l.trigger === 'manual');
      expect(manual).toMatchObject({ event: 'orphan_swept', job_id: expect.stringMatching(/^sweep-manual-\d+$/), failed: 0 });
      expect(Object.keys(manual!)).toEqual([
        'timestamp',
        'event',
        'trigger',
        'job_id',
        'scanned',
        'shredded',
        'failed',
        'kept_live',
        'kept_leased',
        'kept_young',
      ]);
      expect(json.some((l) => l.trigger === 'startup')).toBe(true);
    },
    'job-failures': () => {
      const { json } = run('job-failures');
      expect(json).toEqual([
        {
          timestamp: expect.any(String),
          level: 'error',
          job: 'shred',
          attempt: expect.any(Number),
          attempts: expect.any(Number),
          will_retry: false,
          reason: expect.stringContaining('invalid payload'),
        },
      ]);
    },
    timeline: () => {
      const { lines } = run('timeline');
      expect(lines.length).toBeGreaterThan(15); // this short run has fewer than the 40 kept
      expect(lines.length).toBeLessThanOrEqual(40);
      const times = lines.map((l) => l.split(' ')[0]!);
      expect(times).toEqual([...times].sort());
      expect(lines.every((l) => /^\S+Z (api|worker) (debug|info|warn|error) [a-z_]+$/.test(l))).toBe(true);
      expect(lines.some((l) => l.includes(' worker ')) && lines.some((l) => l.includes(' api '))).toBe(true);
      expect(lines.at(-1)).toMatch(/shutdown_completed$/);
    },
  };

  it('has a check here for every recipe in the doc, and a recipe for every check', () => {
    expect([...recipes.keys()].sort()).toEqual(Object.keys(CHECKS).sort());
  });

  for (const [id, check] of Object.entries(CHECKS)) it(`recipe ${id}`, check);
});
