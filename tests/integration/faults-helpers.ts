import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { expect } from 'vitest';

// Shared "nothing lost, nothing leaked" checks for the fault suite (tests/integration/faults-*.test.ts).

export interface Places {
  storagePath: string;
  tempPath: string;
  redis: Redis;
  prefix: string;
}

/** Plaintext that is easy to find on disk if it ever lands there: a random marker, repeated. */
export function markedPlaintext(bytes: number): { body: Buffer; marker: Buffer } {
  const marker = Buffer.from(`CBX-PLAINTEXT-${randomBytes(8).toString('hex')}-`);
  const body = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += marker.length) marker.copy(body, at);
  return { body, marker };
}

export async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).map((n) => path.join(dir, n));
}

export const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

async function scan(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...batch);
  } while (cursor !== '0');
  return found;
}

/** Every file record under the prefix must point at a blob that exists in STORAGE_PATH. */
export async function expectNoRecordWithoutBlob(places: Places): Promise<number> {
  const records = await scan(places.redis, `${places.prefix}:file:*`);
  for (const key of records) {
    const blob = await places.redis.hget(key, 'blob');
    expect(blob, `record ${key} has no blob id`).toEqual(expect.any(String));
    expect(await exists(path.join(places.storagePath, blob!)), `record ${key} points at a missing blob`).toBe(true);
  }
  return records.length;
}

export async function expectTempEmpty(places: Pick<Places, 'tempPath'>): Promise<void> {
  expect(await filesIn(places.tempPath)).toEqual([]);
}

/** No file in STORAGE_PATH or TEMP_PATH holds the plaintext marker. */
export async function expectNoPlaintext(places: Pick<Places, 'storagePath' | 'tempPath'>, marker: Buffer): Promise<void> {
  for (const file of [...(await filesIn(places.storagePath)), ...(await filesIn(places.tempPath))]) {
    const content = await readFile(file).catch(() => Buffer.alloc(0));
    expect(content.includes(marker), `plaintext found in ${file}`).toBe(false);
  }
}

/** Times a request: resolves with the response and how long it took. */
export async function timed(run: () => Promise<Response>): Promise<{ res: Response; ms: number }> {
  const started = Date.now();
  const res = await run();
  return { res, ms: Date.now() - started };
}
