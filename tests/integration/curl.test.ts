import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/app.js';

const run = promisify(execFile);
const CURL = '/usr/bin/curl';

describe('the real curl binary (README quick start)', () => {
  let app: TestApp;
  let work: string;
  beforeAll(async () => {
    app = await startTestApp();
    work = await mkdtemp(path.join(os.tmpdir(), 'cbx-curl-'));
  });
  afterAll(async () => {
    await app.close();
    await rm(work, { recursive: true, force: true });
  });

  /** Runs a line the server printed exactly as a person would paste it into a shell. */
  const paste = (line: string, cwd: string) => run('/bin/sh', ['-c', line], { cwd });

  it('curl -T uploads; the printed download line saves the original name and bytes, with the key out of the URL; a second download fails', async () => {
    const content = randomBytes(150_000);
    const source = path.join(work, 'quarterly report.bin');
    await writeFile(source, content);
    const { stdout } = await run(CURL, ['-sS', '-T', source, `${app.url}/upload/`]);
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/d#[a-z]+(-[a-z]+){3}$/);
    const key = lines[0]!.split('#')[1]!;
    const downloadLine = lines.find((l) => l.startsWith('download:'))!.replace(/^download:\s*/, '');
    expect(downloadLine).toBe(`curl -fOJ --etag-save cinderbox.etag -H 'X-Key: ${key}' ${app.url}/download`);

    const target = await mkdtemp(path.join(work, 'dl-'));
    await paste(downloadLine, target);
    expect((await readdir(target)).sort()).toEqual(['cinderbox.etag', 'quarterly report.bin']);
    expect(await readFile(path.join(target, 'cinderbox.etag'), 'utf8')).toMatch(/^"r1\.[A-Za-z0-9_-]{43}"\n?$/);
    expect((await readFile(path.join(target, 'quarterly report.bin'))).equals(content)).toBe(true);
    expect(app.logs.filter((l) => l.event === 'request_completed').map((l) => String(l.route))).toContain('/download');
    expect(app.logs.filter((l) => l.event === 'request_completed').map((l) => String(l.route))).not.toContain('/download/:key');

    const again = await paste(`${downloadLine} -o /dev/null`, target).then(
      () => 0,
      (error: { code?: number }) => error.code,
    );
    expect(again).toBe(22);
  });

  it('status and delete work as the printed curl lines say', async () => {
    const source = path.join(work, 'notes.txt');
    await writeFile(source, 'some notes\n');
    const { stdout } = await run(CURL, ['-sS', '-T', source, `${app.url}/upload/?uses=2`]);
    const key = stdout.split('\n')[0]!.split('#')[1]!;
    const status = JSON.parse((await run(CURL, ['-sS', '-f', `${app.url}/status/${key}`])).stdout) as {
      filename: string;
      remaining_uses: number;
    };
    expect(status).toMatchObject({ filename: 'notes.txt', remaining_uses: 2 });
    const deleteLine = stdout
      .split('\n')
      .find((l) => l.startsWith('delete:'))!
      .replace(/^delete:\s*/, '');
    expect(deleteLine).not.toContain(`/files/${key}`);
    const del = await paste(`${deleteLine} -sS -f -o /dev/null -w '%{http_code}'`, work);
    expect(del.stdout).toBe('204');
    expect((await run(CURL, ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-d', `key=${key}`, `${app.url}/status`])).stdout).toBe('410');
  });

  it('deletes with the key in a JSON body, and keeps DELETE /files/:key for Raven Zero clients', async () => {
    for (const how of ['body', 'path'] as const) {
      const source = path.join(work, `${how}.txt`);
      await writeFile(source, how);
      const up = JSON.parse((await run(CURL, ['-sS', '-H', 'Accept: application/json', '-T', source, `${app.url}/upload/`])).stdout) as {
        key: string;
        delete_token: string;
      };
      const args =
        how === 'body'
          ? ['-H', 'Content-Type: application/json', '-d', JSON.stringify({ key: up.key }), `${app.url}/files`]
          : [`${app.url}/files/${up.key}`];
      const del = await run(CURL, [
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-X',
        'DELETE',
        '-H',
        `X-Delete-Token: ${up.delete_token}`,
        ...args,
      ]);
      expect(del.stdout).toBe('204');
    }
  });
});
