import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateLocalSecret } from '../../app/shared/secret.js';

describe('the local secret of `npm start` (outside production)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-secret-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is created once, 0600, and the same for processes that start together', async () => {
    const file = path.join(dir, 'var', 'cinderbox-secret');
    const secrets = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateLocalSecret(file)));
    expect(new Set(secrets).size).toBe(1);
    expect(secrets[0]!.length).toBeGreaterThanOrEqual(64);
    expect((await readFile(file, 'utf8')).trim()).toBe(secrets[0]);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(path.dirname(file))).toEqual(['cinderbox-secret']); // nothing left aside
    expect(await loadOrCreateLocalSecret(file)).toBe(secrets[0]);
  });

  it('refuses a file cut short, saying what to do, instead of running with it', async () => {
    const file = path.join(dir, 'short-secret');
    for (const content of ['', 'abc\n']) {
      await writeFile(file, content);
      await expect(loadOrCreateLocalSecret(file)).rejects.toThrow(/too few for a secret .*delete it/);
    }
  });
});
