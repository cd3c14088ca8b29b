/**
 * The README's terminal examples, run as written (only the address changes to the test server's):
 * the quick start, and the resume line after a download that lost its tail.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, truncate } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/processes.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

const run = promisify(execFile);

/** The fenced `sh` blocks of a README section, in order. */
async function shellBlocks(heading: string): Promise<string[]> {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`## ${heading}`);
  expect(start, `README section ${heading}`).toBeGreaterThan(-1);
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

describe('the README, from a terminal', () => {
  let app: TestApp;
  let work: string;
  beforeAll(async () => {
    app = await startTestApp();
    work = await mkdtemp(path.join(os.tmpdir(), 'cbx-readme-'));
  });
  afterAll(async () => {
    await app.close();
    await rm(work, { recursive: true, force: true });
  });

  const sh = (script: string) =>
    run('/bin/bash', ['-euo', 'pipefail', '-c', script.replaceAll('http://127.0.0.1:8000', app.url)], { cwd: work });

  it('uploads, shows the status, downloads under the original name; the resume line finishes a cut download; then 410', async () => {
    const [quickStart, resume] = await shellBlocks('From a terminal');
    expect(quickStart).toBeDefined();
    expect(resume).toBeDefined();

    const { stdout } = await sh(`${quickStart}\necho "KEY=$KEY"`);
    const key = /KEY=([a-z-]+)/.exec(stdout)![1]!;
    expect(stdout).toContain('"status":"active"');
    const received = path.join(work, 'received', 'hello.txt');
    expect(await readFile(received, 'utf8')).toBe('hello from cinderbox\n');

    // The connection dropped after 5 bytes: the resume line (same shell: KEY set, in received/) finishes the file.
    await truncate(received, 5);
    await sh(`cd received\nKEY=${key}\n${resume}`);
    expect(await readFile(received, 'utf8')).toBe('hello from cinderbox\n');

    // A new download finds the one use spent.
    const again = await sh(`curl -s -o /dev/null -w '%{http_code}' -H "X-Key: ${key}" http://127.0.0.1:8000/download`);
    expect(again.stdout).toBe('410');
  });
});

describe('the README test command', () => {
  it('is what CI runs, verbatim', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const command = /\*\*Test\*\*[^\n]*\n\n```sh\n([^\n]+)\n```/.exec(readme)?.[1];
    expect(command).toMatch(/&& npm ci && npm test$/);
    const ci = await readFile(path.join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci.split('\n')).toContain(command);
  });
});
