import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { kdfBusy } from '../../app/crypto/crypto.errors.js';
import type { DerivedKeys } from '../../app/crypto/keys.js';
import { createKdf, type DeriveKeys } from '../../app/kdf/kdf.js';

// A fake derive that finishes only when the test says so: nothing here waits on time.
vi.setConfig({ testTimeout: 5_000 });

interface Call {
  passphrase: string;
  secret: Buffer | string;
  costLog2: number;
  finish(): void;
  fail(error: unknown): void;
}

function fakeDerive() {
  const calls: Call[] = [];
  const derive: DeriveKeys = (options) =>
    new Promise<DerivedKeys>((resolve, reject) => {
      calls.push({
        ...options,
        finish: () => resolve({ lookupId: `id:${options.passphrase}`, kek: Buffer.alloc(32, 7) }),
        fail: reject,
      });
    });
  return { calls, derive };
}

const SECRET = 'a-test-secret-of-at-least-32-characters';
const PASSPHRASE = 'quiet-harbor-velvet-moss';
const alice = { aggregate: '192.0.2.0/24', client: '192.0.2.7' };
const bob = { aggregate: '2001:db8:1::/48', client: '2001:db8:1:2::/64' };

describe('createKdf', () => {
  it('derives with the secret and cost it was built with', async () => {
    const { calls, derive } = fakeDerive();
    const kdf = createKdf({ secret: SECRET, costLog2: 12, deriveKeys: derive });
    const result = kdf.derive(PASSPHRASE, alice);
    expect(calls.map(({ passphrase, secret, costLog2 }) => ({ passphrase, secret, costLog2 }))).toEqual([
      { passphrase: PASSPHRASE, secret: SECRET, costLog2: 12 },
    ]);
    calls[0]!.finish();
    await expect(result).resolves.toEqual({ lookupId: `id:${PASSPHRASE}`, kek: Buffer.alloc(32, 7) });
  });

  it('gives the real scrypt the committed vector result by default', async () => {
    const vectors = JSON.parse(readFileSync(new URL('../vectors/keys.json', import.meta.url), 'utf8')) as {
      kdf: { passphrase: string; secret: string; costLog2: number; lookupId: string; kekHex: string };
    };
    const { passphrase, secret, costLog2, lookupId, kekHex } = vectors.kdf;
    const kdf = createKdf({ secret, costLog2 });
    const keys = await kdf.derive(passphrase, alice);
    expect(keys.lookupId).toBe(lookupId);
    expect(keys.kek.toString('hex')).toBe(kekHex);
    const background = await kdf.deriveInBackground(passphrase);
    expect(background.lookupId).toBe(lookupId);
  });

  it('serves clients in fair turns and refuses one over its cap at once', async () => {
    const { calls, derive } = fakeDerive();
    const kdf = createKdf({ secret: SECRET, concurrency: 1, maxQueue: 8, maxPerClient: 3, deriveKeys: derive });
    const finish = async (passphrase: string, result: Promise<DerivedKeys>) => {
      calls.find((c) => c.passphrase === passphrase)!.finish();
      await result;
    };
    const one = kdf.derive('alice-one', alice);
    const two = kdf.derive('alice-two', alice);
    const three = kdf.derive('alice-three', alice);
    await expect(kdf.derive(PASSPHRASE, alice)).rejects.toThrow(kdfBusy().message);
    const bobs = kdf.derive('bob-one', bob);
    await finish('alice-one', one);
    await finish('alice-two', two);
    await finish('bob-one', bobs);
    await finish('alice-three', three);
    // Bob came last but waited for one of Alice's requests, not for both.
    expect(calls.map((c) => c.passphrase)).toEqual(['alice-one', 'alice-two', 'bob-one', 'alice-three']);
    expect(kdf.stats()).toMatchObject({ costLog2: 14, concurrency: 1, refused: { client: 1 }, started: { foreground: 4 } });
  });

  it('says nothing secret when it refuses or counts', async () => {
    const { derive } = fakeDerive();
    const kdf = createKdf({ secret: SECRET, concurrency: 1, maxQueue: 0, deriveKeys: derive });
    void kdf.derive('running-one-here', alice);
    const error = await kdf.derive(PASSPHRASE, bob).catch((e: unknown) => e);
    const text = JSON.stringify({
      error,
      message: (error as Error).message,
      stack: (error as Error).stack,
      cause: String((error as Error).cause),
      stats: kdf.stats(),
    });
    expect(text).not.toContain(PASSPHRASE);
    expect(text).not.toContain(SECRET);
    expect(text).not.toMatch(/192\.0\.2|2001:db8/);
  });

  it('runs background derivations only when no lookup waits', async () => {
    const { calls, derive } = fakeDerive();
    const kdf = createKdf({ secret: SECRET, concurrency: 1, maxQueue: 8, deriveKeys: derive });
    const lookup = kdf.derive('lookup-one', alice);
    const background = kdf.deriveInBackground('pool-entry');
    const waiting = kdf.derive('lookup-two', bob);
    calls[0]!.finish();
    await lookup;
    expect(calls.map((c) => c.passphrase)).toEqual(['lookup-one', 'lookup-two']);
    calls[1]!.finish();
    await waiting;
    expect(calls.map((c) => c.passphrase)).toEqual(['lookup-one', 'lookup-two', 'pool-entry']);
    calls[2]!.finish();
    await expect(background).resolves.toMatchObject({ lookupId: 'id:pool-entry' });
  });

  it('passes a derivation failure to its caller and frees the slot', async () => {
    const { calls, derive } = fakeDerive();
    const kdf = createKdf({ secret: SECRET, concurrency: 1, maxQueue: 8, deriveKeys: derive });
    const failing = kdf.derive('fails', alice);
    const next = kdf.derive('next', bob);
    const failure = new Error('scrypt failed');
    calls[0]!.fail(failure);
    await expect(failing).rejects.toBe(failure);
    calls[1]!.finish();
    await expect(next).resolves.toMatchObject({ lookupId: 'id:next' });
  });

  it('refuses an empty passphrase without taking a slot', async () => {
    const { calls, derive } = fakeDerive();
    const kdf = createKdf({ secret: SECRET, deriveKeys: derive });
    await expect(kdf.derive('', alice)).rejects.toThrow(RangeError);
    await expect(kdf.deriveInBackground('')).rejects.toThrow(RangeError);
    expect(calls).toHaveLength(0);
    expect(kdf.stats()).toMatchObject({ active: 0, queued: 0, started: { foreground: 0, background: 0 } });
  });

  it('refuses a configuration that cannot work when it is built, not at the first lookup', () => {
    expect(() => createKdf({ secret: '' })).toThrow(RangeError);
    expect(() => createKdf({ secret: SECRET, costLog2: 9 })).toThrow(RangeError);
    expect(() => createKdf({ secret: SECRET, costLog2: 21 })).toThrow(RangeError);
    expect(() => createKdf({ secret: SECRET, costLog2: 14.5 })).toThrow(RangeError);
    expect(() => createKdf({ secret: SECRET, concurrency: 0 })).toThrow(RangeError);
  });

  it("gives scrypt's memory back only when no derivation runs or waits, not between queued ones", async () => {
    const { calls, derive } = fakeDerive();
    let releases = 0;
    const kdf = createKdf({ secret: SECRET, concurrency: 1, maxPerClient: 3, deriveKeys: derive, releaseMemory: () => (releases += 1) });
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const results = ['a', 'b', 'c'].map((p) => kdf.derive(`${PASSPHRASE}-${p}`, alice));
    calls[0]!.finish();
    await results[0];
    await turn();
    expect(calls).toHaveLength(2);
    expect(releases).toBe(0);
    calls[1]!.fail(new Error('boom'));
    await expect(results[1]).rejects.toThrow('boom');
    await turn();
    expect(releases).toBe(0);
    calls[2]!.finish();
    await results[2];
    await turn();
    expect(releases).toBe(1);
    const lone = kdf.derive(PASSPHRASE, bob);
    calls[3]!.finish();
    await lone;
    await turn();
    expect(releases).toBe(2);
  });
});
