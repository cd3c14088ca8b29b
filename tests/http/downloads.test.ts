import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { expectError, uploadOk, waitFor, type UploadAnswer } from '../helpers/files.js';

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/** A multipart body built by hand, the name sent as RFC 5987 `filename*` so any character (CR, LF, quotes) arrives as is. */
async function uploadRawName(app: TestApp, filename: string, content: string): Promise<UploadAnswer> {
  const boundary = `----cbx${randomBytes(8).toString('hex')}`;
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8''${encoded}\r\nContent-Type: application/octet-stream\r\n\r\n`,
    ),
    Buffer.from(content),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const res = await fetch(`${app.url}/upload`, {
    method: 'POST',
    body,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  });
  const text = await res.text();
  expect(res.status, text).toBe(201);
  return JSON.parse(text) as UploadAnswer;
}

/** GET with node:http so repeated headers stay visible (fetch joins them). */
function rawGet(url: string): Promise<{ status: number; rawHeaders: string[]; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** The blob an upload created: the one new blob in the app's store. */
async function newBlob(app: TestApp, before: string[]): Promise<string> {
  const added = (await app.storage.blobIds()).filter((id) => !before.includes(id));
  expect(added).toHaveLength(1);
  return added[0]!;
}

describe('downloads (SPEC §3)', () => {
  let app: TestApp;
  beforeAll(async () => {
    // Enough KDF slots and queue for 50 parallel lookups: the default sheds the excess with 503 by design.
    app = await startTestApp({ env: { KDF_CONCURRENCY: '3', KDF_MAX_PER_CLIENT: '64' } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('sends the bytes with every header of the spec', async () => {
    const content = randomBytes(100_000);
    const up = await uploadOk(app, content, 'report.bin', { uses: '2' });
    const res = await fetch(up.download_url);
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.equals(content)).toBe(true);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-length')).toBe('100000');
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="report.bin"');
    expect(res.headers.get('x-sha256')).toBe(sha256(bytes));
    expect(res.headers.get('x-remaining-uses')).toBe('1');
    expect(res.headers.get('cache-control')).toBe('no-store, no-transform');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    const second = await fetch(up.download_url);
    expect(second.headers.get('x-remaining-uses')).toBe('0');
    expect(Buffer.from(await second.arrayBuffer()).equals(content)).toBe(true);
  });

  it.each([
    ['HTML', '<!DOCTYPE html><html><body><script>alert(1)</script></body></html>', 'page.html'],
    ['HTML without a doctype', '  <html><script>alert(document.cookie)</script></html>', 'x.htm'],
    ['SVG', '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 'x.svg'],
    ['XML', '<?xml version="1.0"?><root/>', 'x.xml'],
  ])('serves an active type (%s) as application/octet-stream', async (_name, content, filename) => {
    const up = await uploadOk(app, content, filename);
    const res = await fetch(up.download_url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment;/);
    expect(await res.text()).toBe(content);
  });

  // `curl -OJ` (the README's download line) saves under the ASCII `filename=` fallback, not filename*:
  // look-alikes that become `.` or `/` in ASCII must not make a hidden file or another name there.
  it.each([
    ['a one-dot leader (U+2024) before the name', '\u2024bashrc', 'bashrc'],
    ['a fullwidth full stop (U+FF0E)', '\uFF0Eenvrc', 'envrc'],
    ['a fullwidth solidus (U+FF0F) inside the name', 'invoice.pdf\uFF0Fx.sh', 'invoice.pdf_x.sh'],
  ])('saves a name with %s under curl -OJ as that name, never a dotfile or another name', async (_what, raw, saved) => {
    const up = await uploadRawName(app, raw, 'look-alike');
    expect(up.filename).toBe(raw);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-curl-oj-'));
    try {
      // Not execFileSync: the app answers from this very process.
      await promisify(execFile)('curl', ['-fsSOJ', up.download_url], { cwd: dir });
      expect(await readdir(dir)).toEqual([saved]);
      expect(await readFile(path.join(dir, saved), 'utf8')).toBe('look-alike');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe('filenames: one safe attachment header with the right name', () => {
    const cases: [string, string, string][] = [
      ['Unicode', '報告.pdf', '報告.pdf'],
      ['quotes', 'a"b.txt', 'a"b.txt'],
      ['CR/LF header injection', 'a\r\nSet-Cookie: x.txt', 'aSet-Cookie: x.txt'],
      ['bidi override', '\u202Egnp.exe', 'gnp.exe'],
      ['path traversal', '../../etc/passwd', 'passwd'],
      ['windows path', '..\\..\\boot.ini', 'boot.ini'],
      ['300 characters', `${'é'.repeat(296)}.txt`, `${'é'.repeat(251)}.txt`],
    ];
    it.each(cases)('%s', async (_name, raw, expected) => {
      expect(expected.length).toBeLessThanOrEqual(255);
      const up = await uploadRawName(app, raw, 'content');
      expect(up.filename).toBe(expected);
      const res = await rawGet(up.download_url);
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('content');
      const names = res.rawHeaders.filter((_v, i) => i % 2 === 0).map((h) => h.toLowerCase());
      expect(names.filter((n) => n === 'content-disposition')).toHaveLength(1);
      expect(names).not.toContain('set-cookie');
      const header = res.rawHeaders[res.rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'content-disposition') + 1]!;
      expect(header).not.toMatch(/[\r\n]/);
      expect(header).toMatch(/^[\x20-\x7e]+$/);
      expect(header).toMatch(/^attachment; filename="/);
      const star = /filename\*=UTF-8''([^;\s]+)/.exec(header);
      if (/^[\x20-\x7e]*$/.test(expected)) {
        // An ASCII name needs no filename*: the quoted form carries it exactly.
        const quoted = /filename="((?:[^"\\]|\\.)*)"/.exec(header)![1]!.replace(/\\(.)/g, '$1');
        expect(star ? decodeURIComponent(star[1]!) : quoted).toBe(expected);
      } else {
        expect(star).not.toBeNull();
        expect(decodeURIComponent(star![1]!)).toBe(expected);
      }
    });
  });

  it('50 parallel downloads of a uses=1 file: exactly one 200', async () => {
    const up = await uploadOk(app, 'only once', 'once.txt', { uses: '1' });
    const results = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const res = await fetch(up.download_url);
        return { status: res.status, body: await res.text() };
      }),
    );
    expect(results.filter((r) => r.status === 200)).toEqual([{ status: 200, body: 'only once' }]);
    expect(results.filter((r) => r.status === 410)).toHaveLength(49);
  });

  it('50 parallel downloads of a uses=3 file: exactly three 200', async () => {
    const up = await uploadOk(app, 'thrice', 'thrice.txt', { uses: '3' });
    const results = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const res = await fetch(up.download_url);
        return { status: res.status, body: await res.text(), remaining: res.headers.get('x-remaining-uses') };
      }),
    );
    const ok = results.filter((r) => r.status === 200);
    expect(ok).toHaveLength(3);
    expect(ok.map((r) => r.remaining).sort()).toEqual(['0', '1', '2']);
    expect(ok.every((r) => r.body === 'thrice')).toBe(true);
    expect(results.filter((r) => r.status !== 200 && r.status !== 410)).toEqual([]);
    expect(results.filter((r) => r.status === 410)).toHaveLength(47);
  });

  describe('integrity', () => {
    it('a corrupted first chunk answers 500 INTEGRITY_CHECK_FAILED and refunds the use', async () => {
      for (const uses of ['1', '2']) {
        const before = await app.storage.blobIds();
        const up = await uploadOk(app, randomBytes(1000), 'corrupt.bin', { uses });
        await app.storage.corrupt(await newBlob(app, before), 500);
        const body = await expectError(await fetch(up.download_url), 500, 'INTEGRITY_CHECK_FAILED');
        expect(JSON.stringify(body)).not.toMatch(/\/tmp|storage|uploads/);
        const status = await fetch(up.status_url);
        expect(status.status).toBe(200);
        expect(((await status.json()) as { remaining_uses: number }).remaining_uses).toBe(Number(uses));
        // Refunded again on a second failure: the file is never spent by a server-side failure.
        await expectError(await fetch(up.download_url), 500, 'INTEGRITY_CHECK_FAILED');
        expect(((await (await fetch(up.status_url)).json()) as { remaining_uses: number }).remaining_uses).toBe(Number(uses));
      }
    });

    const readAll = async (res: Response) => {
      const reader = res.body!.getReader();
      const state = { received: 0 };
      const read = async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          state.received += value.byteLength;
        }
      };
      return { state, read };
    };

    it('a corrupted second chunk of a 200 KiB file: the client never gets all the bytes', async () => {
      const size = 200 * 1024;
      const before = await app.storage.blobIds();
      const up = await uploadOk(app, randomBytes(size), 'mid.bin', { uses: '2' });
      await app.storage.corrupt(await newBlob(app, before), 100_000);
      const res = await fetch(up.download_url);
      // The blob is read 256 KiB at a time, so the bad chunk may fail before the first byte (500,
      // refunded) or after it (aborted). Either way no complete-looking file reaches the client.
      if (res.status === 500) {
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INTEGRITY_CHECK_FAILED');
        return;
      }
      expect(res.status).toBe(200);
      const { state, read } = await readAll(res);
      await expect(read()).rejects.toThrow();
      expect(state.received).toBeLessThan(size);
    });

    it('a corrupted later chunk after the first byte aborts the connection, spends the use, sends only verified chunks', async () => {
      const size = 1024 * 1024;
      const before = await app.storage.blobIds();
      const up = await uploadOk(app, randomBytes(size), 'big.bin', { uses: '2' });
      await app.storage.corrupt(await newBlob(app, before), 900_000);
      const res = await fetch(up.download_url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe(String(size));
      const { state, read } = await readAll(res);
      await expect(read()).rejects.toThrow();
      expect(state.received).toBeLessThan(size);
      // Only verified chunks were released, all before the corrupted one (chunk 14 of 16).
      expect(state.received).toBeLessThan(900_000);
      // The use was spent (the first byte went out), not refunded.
      expect(((await (await fetch(up.status_url)).json()) as { remaining_uses: number }).remaining_uses).toBe(1);
      expect(app.logs.some((l) => l.event === 'integrity_check_failed')).toBe(true);
    });
  });
});

describe('downloads: what a crafted name or a vanished client cannot do (SPEC §10.1)', () => {
  let app: TestApp;
  beforeAll(async () => {
    // A slow KDF (2^16), so a client can hang up while its key is still being derived.
    app = await startTestApp({ env: { KDF_COST: '16' } });
  });
  afterAll(async () => {
    await app.close();
  });

  it('stores a 255+-unit name ending in emoji cut at a character boundary, and downloads it', async () => {
    const name = `${'a'.repeat(250)}${'\u{1F525}'.repeat(10)}`; // 270 UTF-16 units, 260 characters
    const up = await uploadRawName(app, name, 'burning');
    const kept = `${'a'.repeat(250)}${'\u{1F525}'.repeat(2)}`; // 254 units: a third pair would make 256
    expect(up.filename).toBe(kept);
    expect(up.filename.isWellFormed()).toBe(true);

    const res = await rawGet(up.download_url);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('burning');
    const disposition = res.rawHeaders[res.rawHeaders.findIndex((h) => h.toLowerCase() === 'content-disposition') + 1]!;
    expect(decodeURIComponent(/filename\*=UTF-8''([^;]+)/.exec(disposition)![1]!)).toBe(kept);
  });

  it('claims nothing for a client that hangs up before its download is claimed', async () => {
    const up = await uploadOk(app, 'still here', 'kept.txt', { uses: '1' });
    // Before its lookup slot is reserved (no KDF work at all) or while its key is derived (the claim
    // is skipped; tests/unit/usecases.test.ts pins that step): either way one line, and nothing spent.
    const unclaimed = () => app.logs.filter((l) => l.event === 'download_not_claimed' || l.event === 'lookup_not_started');

    await new Promise<void>((resolve) => {
      const req = http.get(up.download_url, { headers: { Accept: 'application/octet-stream' } });
      req.once('error', () => resolve());
      req.once('finish', () => {
        req.destroy();
        resolve();
      });
    });
    const [line] = await waitFor(
      async () => unclaimed(),
      (lines) => lines.length === 1,
      10_000,
      'the download to give up',
    );
    expect(line).toMatchObject({ level: 'info', reason: 'client_gone' });

    const status = await fetch(up.status_url);
    expect(status.status).toBe(200);
    expect(((await status.json()) as { remaining_uses: number }).remaining_uses).toBe(1);
  });
});
