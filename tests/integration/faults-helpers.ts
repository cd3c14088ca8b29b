import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import type { StorageView } from '../helpers/engine.js';

// Shared "nothing lost, nothing leaked" checks for the fault suite (tests/integration/faults-*.test.ts),
// on whichever storage engine the project runs.

export interface Places {
  storage: StorageView;
  redis: Redis;
  prefix: string;
}

/** Plaintext that is easy to find in storage if it ever lands there: a random marker, repeated. */
export function markedPlaintext(bytes: number): { body: Buffer; marker: Buffer } {
  const marker = Buffer.from(`CBX-PLAINTEXT-${randomBytes(8).toString('hex')}-`);
  const body = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += marker.length) marker.copy(body, at);
  return { body, marker };
}

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

/** Every file record under the prefix must point at a blob that exists in the store. */
export async function expectNoRecordWithoutBlob(places: Places): Promise<number> {
  const records = await scan(places.redis, `${places.prefix}:file:*`);
  for (const key of records) {
    const blob = await places.redis.hget(key, 'blob');
    expect(blob, `record ${key} has no blob id`).toEqual(expect.any(String));
    expect(await places.storage.has(blob!), `record ${key} points at a missing blob`).toBe(true);
  }
  return records.length;
}

/** No unfinished upload is left (fs: TEMP_PATH is empty; s3: no multipart upload, as far as the medium shows). */
export async function expectNoPartial(places: Pick<Places, 'storage'>): Promise<void> {
  expect(await places.storage.partials()).toEqual([]);
}

/** Nothing the store holds (blobs, partials, multipart parts) contains the plaintext marker. */
export async function expectNoPlaintext(places: Pick<Places, 'storage'>, marker: Buffer): Promise<void> {
  for (const { name, data } of await places.storage.raw()) {
    expect(data.includes(marker), `plaintext found in ${name}`).toBe(false);
  }
}

/** Times a request: resolves with the response and how long it took. */
export async function timed(run: () => Promise<Response>): Promise<{ res: Response; ms: number }> {
  const started = Date.now();
  const res = await run();
  return { res, ms: Date.now() - started };
}
