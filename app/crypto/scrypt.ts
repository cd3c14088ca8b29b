/**
 * scrypt (RFC 7914) for the KDF, with the same keys as node:crypto's `scrypt`: PBKDF2-HMAC-SHA256
 * here, around ROMix from the native addon (native/scrypt.c), which reuses its memory while the KDF
 * is busy instead of mapping and zero-filling 16 MiB per derivation (docs/DECISIONS.md). Where the
 * addon was not built (no C compiler), node:crypto's scrypt; `scryptEngine` says which.
 */
import { pbkdf2Sync, scrypt as opensslScrypt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ScryptParams {
  /** log2 N. */
  costLog2: number;
  r: number;
  /** Bytes of output. */
  length: number;
}

interface NativeScrypt {
  romix(block: Buffer, costLog2: number, r: number): Promise<void>;
  release(): number;
  stats(): { kept: number; inUse: number; mapped: number };
}

/**
 * build/scrypt.node at the package's root (the directory with package.json): two levels above this
 * module in the sources (app/crypto/), three in the compiled code (dist/app/crypto/). An addon that
 * is there but does not load (built for another machine) leaves the fallback and says why.
 */
function loadNative(): { native: NativeScrypt | null; problem: string | null } {
  const require = createRequire(import.meta.url);
  for (const up of ['../../', '../../../']) {
    const root = fileURLToPath(new URL(up, import.meta.url));
    const file = path.join(root, 'build', 'scrypt.node');
    if (!existsSync(path.join(root, 'package.json')) || !existsSync(file)) continue;
    try {
      return { native: require(file) as NativeScrypt, problem: null };
    } catch (error) {
      return { native: null, problem: error instanceof Error ? error.message : String(error) };
    }
  }
  return { native: null, problem: null };
}

const { native, problem } = loadNative();

/** `native` (native/scrypt.c) or `openssl` (node:crypto); the API's start line names it. */
export const scryptEngine: 'native' | 'openssl' = native ? 'native' : 'openssl';
/** Why build/scrypt.node did not load where it exists (the API logs it); null otherwise. */
export const scryptEngineProblem: string | null = problem;

const whole = (n: number, low: number, high: number) => Number.isInteger(n) && n >= low && n <= high;

/**
 * scrypt with p = 1, on libuv's pool. The password is used as UTF-8, as node:crypto does. Both
 * engines take the same parameters: log2 N 1..20 and below 16·r (RFC 7914 §2), r 1..16.
 */
export async function scrypt(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const { costLog2, r, length } = params;
  if (!whole(costLog2, 1, 20) || !whole(r, 1, 16) || costLog2 >= 16 * r || !whole(length, 1, 1024)) {
    throw new RangeError('scrypt: log2 N must be a whole number 1..20 below 16·r, r 1..16, length 1..1024');
  }
  if (!native) return opensslScryptAsync(password, salt, params);
  // B = PBKDF2(P, S, 1, 128·r); B = ROMix(B); DK = PBKDF2(P, B, 1, dkLen). The PBKDF2s are a few
  // dozen microseconds on this thread; the block is the whole state, so it is wiped after.
  const block = pbkdf2Sync(password, salt, 1, 128 * r, 'sha256');
  try {
    await native.romix(block, costLog2, r);
    return pbkdf2Sync(password, block, 1, length, 'sha256');
  } finally {
    block.fill(0);
  }
}

/** node:crypto's scrypt with the same parameters: the fallback, and what tests and the bench compare with. */
export function opensslScryptAsync(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const { costLog2, r, length } = params;
  const N = 2 ** costLog2;
  // scrypt needs 128·N·r bytes and a little more; Node's default maxmem (32 MiB) refuses N ≥ 2^15 at r = 8.
  const maxmem = Math.max(32 * 1024 * 1024, 2 * 128 * N * r);
  return new Promise((resolve, reject) => {
    opensslScrypt(password, salt, length, { N, r, p: 1, maxmem }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/**
 * Unmaps the memory the addon keeps between derivations (none are kept by node:crypto's). The KDF
 * calls it whenever it idles: a busy KDF reuses its memory, an idle one holds none.
 */
export function releaseScryptMemory(): number {
  return native ? native.release() : 0;
}

/** The addon's mappings: on its free list, held by running derivations, made so far (tests, the bench). */
export function scryptMemoryStats(): { kept: number; inUse: number; mapped: number } {
  return native ? native.stats() : { kept: 0, inUse: 0, mapped: 0 };
}
