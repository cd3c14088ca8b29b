import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { opensslScryptAsync, releaseScryptMemory, scrypt, scryptEngine, scryptMemoryStats } from '../../app/crypto/scrypt.js';
import { deriveKeys } from '../../app/crypto/keys.js';
import { createKdf } from '../../app/kdf/kdf.js';

const who = { client: 'test', aggregate: 'test' };

describe('scrypt (native/scrypt.c)', () => {
  // `npm run build` compiles it wherever a C compiler is; the README's test command installs one.
  it('is the native engine here', () => {
    expect(scryptEngine).toBe('native');
  });

  it("gives RFC 7914 §12's first vector (empty password and salt, N = 16, r = 1, p = 1)", async () => {
    const key = await scrypt('', Buffer.alloc(0), { costLog2: 4, r: 1, length: 64 });
    expect(key.toString('hex')).toBe(
      '77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442' +
        'fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906',
    );
  });

  it('gives RFC 7914 §12 vector for N = 16384, r = 8, p = 1', async () => {
    const key = await scrypt('pleaseletmein', Buffer.from('SodiumChloride'), { costLog2: 14, r: 8, length: 64 });
    expect(key.toString('hex')).toBe(
      '7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2' +
        'd5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887',
    );
  });

  it("gives node:crypto's keys for other passwords, salts, costs and block sizes", async () => {
    const cases = [
      { password: 'abacus-abdomen-abdominal-ablaze', costLog2: 10, r: 8, length: 32 },
      { password: 'ünïcödé-パスワード-🔥-word', costLog2: 11, r: 8, length: 32 },
      { password: 'x', costLog2: 1, r: 1, length: 16 },
      { password: 'a'.repeat(300), costLog2: 12, r: 3, length: 100 },
      { password: 'tiger-cloud-ember-river', costLog2: 14, r: 8, length: 32 },
    ];
    for (const { password, ...params } of cases) {
      const salt = randomBytes(32);
      expect((await scrypt(password, salt, params)).toString('hex'), password).toBe(
        (await opensslScryptAsync(password, salt, params)).toString('hex'),
      );
    }
  });

  it('refuses parameters outside its bounds, with a RangeError, before either engine runs', async () => {
    for (const params of [
      { costLog2: 21, r: 8, length: 32 },
      { costLog2: 0, r: 8, length: 32 },
      { costLog2: 10.5, r: 8, length: 32 },
      { costLog2: 10, r: 17, length: 32 },
      { costLog2: 16, r: 1, length: 32 }, // N must be below 2^(16·r) (RFC 7914 §2)
      { costLog2: 10, r: 8, length: 0 },
    ])
      await expect(scrypt('pw', Buffer.from('salt'), params), JSON.stringify(params)).rejects.toThrow(RangeError);
  });

  it('checks its own arguments too, and writes no result into memory its block no longer owns', async () => {
    const addon = createRequire(import.meta.url)('../../build/scrypt.node') as {
      romix(block: unknown, log2N: unknown, r: unknown): Promise<void>;
    };
    expect(() => addon.romix(new Float64Array(16), 4, 1)).toThrow(RangeError);
    expect(() => addon.romix(new Uint8Array(128), 4.5, 1)).toThrow(RangeError);
    expect(() => addon.romix(new Uint8Array(128), 2 ** 32 + 4, 1)).toThrow(RangeError);
    expect(() => addon.romix(new Uint8Array(128), 16, 1)).toThrow(RangeError);
    expect(() => addon.romix(new Uint8Array(127), 4, 1)).toThrow(RangeError);
    // The caller gives its block's memory away while the job runs: the job mixed its own copy and
    // refuses to write back, instead of writing into memory that now belongs to someone else.
    const block = new Uint8Array(128 * 8).fill(7);
    const running = addon.romix(block, 14, 8);
    const moved = structuredClone(block.buffer, { transfer: [block.buffer] });
    await expect(running).rejects.toThrow('changed');
    expect(new Uint8Array(moved).every((byte) => byte === 7)).toBe(true);
  });

  it('reuses one mapping across a queue of derivations and unmaps it when the KDF idles', async () => {
    releaseScryptMemory();
    const before = scryptMemoryStats();
    const kdf = createKdf({ secret: 'a-test-secret-of-at-least-32-characters', costLog2: 12, concurrency: 1, maxPerClient: 5 });
    const released: number[] = [];
    await Promise.all(Array.from({ length: 5 }, (_, i) => kdf.derive(`queued-${i}`, who)));
    // Five derivations one after another: one new mapping, kept until the queue emptied…
    expect(scryptMemoryStats().mapped - before.mapped).toBe(1);
    // …and given back after the callbacks of the last one.
    await new Promise((resolve) => setImmediate(resolve));
    expect(scryptMemoryStats()).toMatchObject({ kept: 0, inUse: 0 });
    released.push(releaseScryptMemory());
    expect(released).toEqual([0]);
  });

  it('keeps the keys deriveKeys made with node:crypto', async () => {
    const options = { passphrase: 'quiet-harbor-velvet-moss', secret: 'a-test-secret-of-at-least-32-characters', costLog2: 10 };
    const keys = await deriveKeys(options);
    expect(keys.lookupId).toMatch(/^[0-9a-f]{64}$/);
    expect((await deriveKeys(options)).kek.equals(keys.kek)).toBe(true);
  });
});
