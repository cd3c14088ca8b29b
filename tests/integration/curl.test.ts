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

  it('curl -T uploads; curl -fOJ of the printed download line saves the original name and bytes; a second download fails', async () => {
    const content = randomBytes(150_000);
    const source = path.join(work, 'quarterly report.bin');
    await writeFile(source, content);
    const { stdout } = await run(CURL, ['-sS', '-T', source, `${app.url}/upload/`]);
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/d#[a-z]+(-[a-z]+){3}$/);
    const downloadLine = lines.find((l) => l.startsWith('download:'));
    expect(downloadLine).toBeDefined();
    const command = downloadLine!.replace(/^download:\s*/, '').split(/\s+/);
    expect(command.slice(0, 2)).toEqual(['curl', '-fOJ']);
    const url = command[2]!;
    expect(url).toBe(`${app.url}/download/${lines[0]!.split('#')[1]}`);

    const target = await mkdtemp(path.join(work, 'dl-'));
    await run(CURL, ['-sS', ...command.slice(1)], { cwd: target });
    expect(await readdir(target)).toEqual(['quarterly report.bin']);
    expect((await readFile(path.join(target, 'quarterly report.bin'))).equals(content)).toBe(true);

    const again = await run(CURL, ['-sS', '-f', '-o', '/dev/null', url], { cwd: target }).then(
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
    const status = JSON.parse((await run(CURL, ['-sS', '-f', `${app.url}/status/${key}`])).stdout) as { filename: string; remaining_uses: number };
    expect(status).toMatchObject({ filename: 'notes.txt', remaining_uses: 2 });
    const deleteLine = stdout.split('\n').find((l) => l.startsWith('delete:'))!;
    const token = /X-Delete-Token: ([^']+)'/.exec(deleteLine)![1]!;
    const del = await run(CURL, ['-sS', '-f', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'DELETE', '-H', `X-Delete-Token: ${token}`, `${app.url}/files/${key}`]);
    expect(del.stdout).toBe('204');
  });
});
