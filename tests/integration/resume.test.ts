/**
 * Resumable one-time downloads (SPEC §10.2, issue 17): a uses=1 download cut at several offsets and
 * finished by the real `curl -C -` with If-Range; what a Range without the right capability gets;
 * ranges against the plaintext; HEAD and link-preview agents spend nothing.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CHUNK_SIZE } from '../../app/crypto/stream.js';
import { jobIds, type JobPayload } from '../../app/jobs/catalogue.js';
import { startTestApp, testEnv, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/files.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function uploadBytes(app: TestApp, bytes: Buffer, name = 'big.bin', uses = 1): Promise<{ key: string }> {
  const res = await fetch(`${app.url}/upload/${name}?uses=${uses}`, {
    method: 'PUT',
    body: new Uint8Array(bytes),
    headers: { Accept: 'application/json' },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { key: string };
}

/** A download that the client cuts after exactly `keep` body bytes: what a dropped connection leaves. */
function cutDownload(
  url: string,
  keep: number,
): Promise<{ status: number; etag: string | undefined; acceptRanges: string | undefined; kept: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'application/octet-stream' } }, (res) => {
      const parts: Buffer[] = [];
      let have = 0;
      res.on('data', (chunk: Buffer) => {
        const room = keep - have;
        if (room <= 0) return;
        parts.push(chunk.subarray(0, room));
        have += Math.min(room, chunk.length);
        if (have >= keep) {
          res.destroy();
          resolve({
            status: res.statusCode ?? 0,
            etag: res.headers.etag,
            acceptRanges: res.headers['accept-ranges'],
            kept: Buffer.concat(parts),
          });
        }
      });
    });
    req.on('error', (error) => (error.message === 'aborted' ? undefined : reject(error)));
  });
}

describe('resumable one-time downloads', () => {
  let app: TestApp;
  let work: string;
  beforeAll(async () => {
    app = await startTestApp({ env: { MAX_FILE_SIZE: String(80 * MiB) } });
    work = await mkdtemp(path.join(os.tmpdir(), 'cbx-resume-'));
  });
  afterAll(async () => {
    await app.close();
    await rm(work, { recursive: true, force: true });
  });

  const size = 64 * MiB;
  const offsets = [
    ['inside a chunk', 3 * CHUNK_SIZE + 12_345],
    ['on a chunk boundary', 100 * CHUNK_SIZE],
    ['in the last chunk', size - 1_000],
  ] as const;

  it.each(offsets)('finishes a uses=1 64 MiB download cut %s with curl -C - and If-Range, byte for byte', async (_where, offset) => {
    const bytes = randomBytes(size);
    const { key } = await uploadBytes(app, bytes);
    const cut = await cutDownload(`${app.url}/download/${key}`, offset);
    expect(cut.status).toBe(200);
    expect(cut.acceptRanges).toBe('bytes');
    expect(cut.etag).toMatch(/^"r1\.[A-Za-z0-9_-]{43}"$/);
    const file = path.join(work, `resumed-${offset}.bin`);
    await writeFile(file, cut.kept);

    // The README's resume line: the key in a header, the saved ETag in If-Range.
    await run('curl', ['-sS', '-f', '-C', '-', '-o', file, '-H', `If-Range: ${cut.etag}`, '-H', `X-Key: ${key}`, `${app.url}/download`]);

    expect(sha256(await readFile(file))).toBe(sha256(bytes));
    const status = await fetch(`${app.url}/status/${key}`);
    expect(status.status).toBe(410);
    expect(await status.json()).toMatchObject({ error: { reason: 'burned' } });
  });

  it('serves exactly the bytes of any range, sampled at random and at every chunk edge', async () => {
    const bytes = randomBytes(3 * CHUNK_SIZE + 777);
    const { key } = await uploadBytes(app, bytes, 'ranges.bin');
    const { etag } = await cutDownload(`${app.url}/download/${key}`, 1);
    const edges = [
      0,
      1,
      CHUNK_SIZE - 1,
      CHUNK_SIZE,
      CHUNK_SIZE + 1,
      2 * CHUNK_SIZE,
      3 * CHUNK_SIZE - 1,
      3 * CHUNK_SIZE,
      bytes.length - 2,
      bytes.length - 1,
    ];
    const pairs: [number, number][] = [];
    for (const a of edges) for (const b of edges) if (a <= b) pairs.push([a, b]);
    for (let i = 0; i < 40; i++) {
      const a = randomInt(bytes.length);
      pairs.push([a, a + randomInt(bytes.length - a)]);
    }
    for (const [start, end] of pairs) {
      const res = await fetch(`${app.url}/download/${key}`, {
        headers: { Accept: 'application/octet-stream', Range: `bytes=${start}-${end}`, 'If-Range': etag! },
      });
      expect(res.status, `bytes=${start}-${end}`).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${bytes.length}`);
      expect(res.headers.get('content-length')).toBe(String(end - start + 1));
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(start, end + 1)), `bytes=${start}-${end}`).toBe(true);
    }
    const suffix = await fetch(`${app.url}/download/${key}`, { headers: { Accept: '*/*', Range: 'bytes=-100', 'If-Range': etag! } });
    expect(suffix.status).toBe(206);
    expect(Buffer.from(await suffix.arrayBuffer()).equals(bytes.subarray(-100))).toBe(true);
    const past = await fetch(`${app.url}/download/${key}`, {
      headers: { Accept: '*/*', Range: `bytes=${bytes.length}-`, 'If-Range': etag! },
    });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${bytes.length}`);
  });

  it('gives no byte of a burned file to a Range without If-Range, a wrong If-Range, or another file capability', async () => {
    const secret = randomBytes(200_000);
    const { key } = await uploadBytes(app, secret, 'secret.bin');
    const { etag } = await cutDownload(`${app.url}/download/${key}`, 10);
    const other = await uploadBytes(app, randomBytes(100_000), 'other.bin', 2);
    const { etag: otherEtag } = await cutDownload(`${app.url}/download/${other.key}`, 10);
    expect(otherEtag).not.toBe(etag);

    const attempts: Record<string, string>[] = [
      { Range: 'bytes=10-' },
      { Range: 'bytes=10-', 'If-Range': '"r1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"' },
      { Range: 'bytes=10-', 'If-Range': `W/${etag!}` },
      { Range: 'bytes=10-', 'If-Range': otherEtag! },
    ];
    for (const headers of attempts) {
      const res = await fetch(`${app.url}/download/${key}`, { headers: { Accept: 'application/octet-stream', ...headers } });
      expect(res.status, JSON.stringify(headers)).toBe(410);
      expect(await res.json()).toMatchObject({ error: { code: 'FILE_GONE', reason: 'burned' } });
    }
    // The other file's own capability still finishes its own download, and spent nothing more.
    const own = await fetch(`${app.url}/download/${other.key}`, { headers: { Accept: '*/*', Range: 'bytes=10-', 'If-Range': otherEtag! } });
    expect(own.status).toBe(206);
    await own.arrayBuffer();
    expect(((await (await fetch(`${app.url}/status/${other.key}`)).json()) as { remaining_uses: number }).remaining_uses).toBe(1);
  });

  it("does not let a passphrase download's capability through a ticket's address, which asks for no passphrase", async () => {
    const secret = randomBytes(200_000);
    const { key } = await uploadBytes(app, secret, 'secret.bin');
    const { etag } = await cutDownload(`${app.url}/download/${key}`, 10);
    // The ETag is "r1.<token>" and a ticket's address is /download/t/<token>: the same token, asked
    // for as a ticket's resume with the whole file as its range.
    const token = etag!.slice('"r1.'.length, -1);
    const res = await fetch(`${app.url}/download/t/${token}`, { headers: { Range: 'bytes=0-', 'If-Range': etag! } });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'FILE_NOT_FOUND' } });
    // With its passphrase, the same capability still finishes the download.
    const own = await fetch(`${app.url}/download`, { headers: { 'X-Key': key, Range: 'bytes=10-', 'If-Range': etag! } });
    expect(own.status).toBe(206);
    expect(Buffer.from(await own.arrayBuffer()).equals(secret.subarray(10))).toBe(true);
  });

  it('refuses to resume a file its sender deleted', async () => {
    const res = await fetch(`${app.url}/upload/deleted.bin?uses=2`, {
      method: 'PUT',
      body: randomBytes(200_000),
      headers: { Accept: 'application/json' },
    });
    const { key, delete_token: token } = (await res.json()) as { key: string; delete_token: string };
    const { etag } = await cutDownload(`${app.url}/download/${key}`, 10);
    expect((await fetch(`${app.url}/files`, { method: 'DELETE', headers: { 'X-Key': key, 'X-Delete-Token': token } })).status).toBe(204);
    const resumed = await fetch(`${app.url}/download/${key}`, { headers: { Accept: '*/*', Range: 'bytes=10-', 'If-Range': etag! } });
    expect(resumed.status).toBe(410);
    expect(await resumed.json()).toMatchObject({ error: { reason: 'deleted' } });
  });

  it('spends nothing on HEAD, and answers link-preview agents with the page whatever they accept', async () => {
    const { key } = await uploadBytes(app, randomBytes(5_000), 'previewed.bin', 2);
    const head = await fetch(`${app.url}/download/${key}`, { method: 'HEAD', headers: { Accept: '*/*' } });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('5000');
    expect((await fetch(`${app.url}/preview/${key}`, { method: 'HEAD' })).status).toBe(200);
    const agents = [
      'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)',
      'Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)',
      'MicrosoftPreview/2.0 +https://aka.ms/MicrosoftPreview', // Teams and Outlook link previews
      'WhatsApp/2.23.20.0 A',
      'TelegramBot (like TwitterBot)',
      'Twitterbot/1.0',
      'facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)',
      'LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)',
      'Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5',
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0',
      'Mozilla/4.0 (compatible; ms-office; MSOffice 16)',
      'Mozilla/5.0 (compatible; Proofpoint URL Defense)',
    ];
    for (const agent of agents) {
      const res = await fetch(`${app.url}/download/${key}`, { redirect: 'manual', headers: { Accept: '*/*', 'User-Agent': agent } });
      expect(res.status, agent).toBe(303);
      expect(res.headers.get('location')).toBe(`/d#${key}`);
    }
    const status = (await (await fetch(`${app.url}/status/${key}`)).json()) as { remaining_uses: number };
    expect(status.remaining_uses).toBe(2);
    // The preview was not used up by HEAD either.
    expect((await fetch(`${app.url}/preview/${key}`)).status).toBe(200);
  });
});

describe('after the resume window', () => {
  let app: TestApp;
  let worker: RunningProcess;
  beforeAll(async () => {
    const env = { RESUME_WINDOW_SECONDS: '1' };
    app = await startTestApp({ env });
    worker = runTs('workers/main.ts', testEnv(app.dir, app.config.redisPrefix, inject('redisUrl'), { ...env, LOG_LEVEL: 'debug' }));
    await worker.waitForEvent('worker_started');
  });
  afterAll(async () => {
    worker.child.kill('SIGTERM');
    await worker.exited;
    await app.close();
  });

  it('serves nothing of a burned file again: the resume becomes a new download, which finds the file gone', async () => {
    const bytes = randomBytes(300_000);
    const { key } = await uploadBytes(app, bytes);
    const { etag } = await cutDownload(`${app.url}/download/${key}`, 1_000);
    const resume = () => fetch(`${app.url}/download/${key}`, { headers: { Accept: '*/*', Range: 'bytes=1000-', 'If-Range': etag! } });
    const within = await resume();
    expect(within.status).toBe(206);
    await within.arrayBuffer();

    const after = await waitFor(
      async () => (await resume()).status,
      (status) => status !== 206,
      5_000,
      'the window to end',
    );
    expect(after).toBe(410);
  });

  it('shreds the bytes of a burned file when its window is over; the janitor is not woken before', async () => {
    const before = new Set(await app.storage.blobIds());
    const { key } = await uploadBytes(app, randomBytes(300_000));
    const [blobId] = (await app.storage.blobIds()).filter((id) => !before.has(id));
    const since = worker.mark();
    const res = await fetch(`${app.url}/download/${key}`, { headers: { Accept: '*/*' } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();

    await waitFor(
      () => app.storage.has(blobId!),
      (present) => !present,
      15_000,
      'the blob to be shredded',
    );
    await worker.waitForEvent('blob_shredded', 5_000, { since, where: (line) => line.reason === 'burned' && line.kind === 'blob' });
    // Queued at the burn, due after the window (1 s) and the resume record's margin (1 s); the worker
    // first took it then, so it never ran only to put itself back.
    // The line is logged inside the job; it is marked completed just after.
    const [job] = await waitFor(
      async () => (await app.deps.queue.getJobs(['completed'])).filter((j) => j.name === 'shred' && j.data.blobId === blobId),
      (jobs) => jobs.length === 1,
      5_000,
      'the shred job to be completed',
    );
    expect(job?.data).toEqual({ blobId, reason: 'burned', burn: expect.any(String) });
    expect(job?.id).toBe(jobIds.shred(job!.data as JobPayload<'shred'>));
    expect({ state: await job?.getState(), delay: job?.opts.delay, attempts: job?.attemptsStarted }).toEqual({
      state: 'completed',
      delay: 2_000,
      attempts: 1,
    });
    expect(job!.processedOn! - job!.timestamp).toBeGreaterThanOrEqual(2_000);
    // Every job that ran meanwhile (this one, and the previous test's burn) found nothing to wait for.
    expect(
      worker
        .events()
        .slice(since)
        .filter((line) => line.event === 'destroy_deferred'),
    ).toEqual([]);
  });
});

describe('a file that expired with a resume window open', () => {
  let offset = 0;
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ now: () => new Date(Date.now() + offset) });
  });
  afterAll(async () => {
    await app.close();
  });

  // Its window keeps the bytes, and any holder of the download's capability could fetch them: the
  // sender's delete still ends that, as it does for a burned file.
  it("is still its sender's to delete: the window ends and the capability opens nothing", async () => {
    const res = await fetch(`${app.url}/upload/expiring.bin?uses=2&expiry=1`, {
      method: 'PUT',
      body: randomBytes(200_000),
      headers: { Accept: 'application/json' },
    });
    const { key, delete_token: token } = (await res.json()) as { key: string; delete_token: string };
    const { etag } = await cutDownload(`${app.url}/download/${key}`, 10);
    offset = 61_000; // the file's minute is over

    const wrong = await fetch(`${app.url}/files`, { method: 'DELETE', headers: { 'X-Key': key, 'X-Delete-Token': 'x'.repeat(43) } });
    expect(wrong.status).toBe(410);
    expect(await wrong.json()).toMatchObject({ error: { reason: 'expired' } });
    expect((await fetch(`${app.url}/files`, { method: 'DELETE', headers: { 'X-Key': key, 'X-Delete-Token': token } })).status).toBe(204);
    const resumed = await fetch(`${app.url}/download/${key}`, { headers: { Accept: '*/*', Range: 'bytes=10-', 'If-Range': etag! } });
    expect(resumed.status).toBe(410);
    expect(await resumed.json()).toMatchObject({ error: { reason: 'deleted' } });
  });
});
