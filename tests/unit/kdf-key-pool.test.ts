import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import type { DerivedKeys } from '../../app/crypto/keys.js';
import type { Wordlist } from '../../app/diceware/wordlist.js';
import { createKdf, type DeriveKeys } from '../../app/kdf/kdf.js';
import { createKeyPool, DEFAULT_KEY_POOL_MAX_AGE_MS, DEFAULT_KEY_POOL_SIZE, type ScheduleTimer } from '../../app/kdf/key-pool.js';

// The KDF, the clock and the timer are all the test's: nothing here waits on time.
vi.setConfig({ testTimeout: 5_000 });

const WORDS = ['acorn', 'bison', 'cobalt', 'dune', 'ember', 'fjord', 'garnet', 'harbor'];
const wordlist: Wordlist = { words: WORDS, has: (word) => WORDS.includes(word) };
const MAX_AGE = 300_000;

/** Every pending promise callback runs before the event loop's next turn; no time passes. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Call {
  passphrase: string;
  keys: DerivedKeys;
  /** A started derivation can no longer be withdrawn, as in the scheduler. */
  started: boolean;
  finish(): void;
  fail(error: unknown): void;
}

/** A background KDF whose derivations finish when the test says; an abort withdraws one not yet started. */
function fakeKdf() {
  const calls: Call[] = [];
  let outstanding = 0;
  let maxOutstanding = 0;
  let waiters: { count: number; resolve: () => void }[] = [];
  const kdf = {
    deriveInBackground(passphrase: string, { signal }: { signal?: AbortSignal } = {}): Promise<DerivedKeys> {
      return new Promise((resolve, reject) => {
        outstanding += 1;
        maxOutstanding = Math.max(maxOutstanding, outstanding);
        let settled = false;
        const settle = (action: () => void) => {
          if (settled) return;
          settled = true;
          outstanding -= 1;
          action();
        };
        const call: Call = {
          passphrase,
          keys: { lookupId: randomBytes(32).toString('hex'), kek: randomBytes(32) },
          started: false,
          finish: () => settle(() => resolve(call.keys)),
          fail: (error) => settle(() => reject(error)),
        };
        signal?.addEventListener('abort', () => {
          if (!call.started) settle(() => reject(signal.reason));
        });
        calls.push(call);
        const ready = waiters.filter((w) => calls.length >= w.count);
        waiters = waiters.filter((w) => calls.length < w.count);
        for (const w of ready) w.resolve();
      });
    },
  };
  return {
    kdf,
    calls,
    get outstanding() {
      return outstanding;
    },
    get maxOutstanding() {
      return maxOutstanding;
    },
    untilCalls(count: number): Promise<void> {
      if (calls.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    /** Finishes derivations one by one until `count` have been asked for and finished. */
    async finishUntil(count: number): Promise<void> {
      for (let i = 0; i < count; i += 1) {
        await this.untilCalls(i + 1);
        calls[i]!.finish();
      }
      await nextTurn();
    },
  };
}

function fakeTimers() {
  const timers: { callback: () => void; delayMs: number; cancelled: boolean }[] = [];
  const schedule: ScheduleTimer = (callback, delayMs) => {
    const timer = { callback, delayMs, cancelled: false };
    timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  };
  return { timers, schedule, live: () => timers.filter((t) => !t.cancelled) };
}

function setup(options: { size?: number; maxAgeMs?: number; quietMs?: number } = {}) {
  const fake = fakeKdf();
  const timers = fakeTimers();
  const clock = { t: 1_000_000 };
  const pool = createKeyPool({
    kdf: fake.kdf,
    wordlist,
    words: 4,
    size: options.size ?? 3,
    maxAgeMs: options.maxAgeMs ?? MAX_AGE,
    quietMs: options.quietMs ?? 0,
    now: () => new Date(clock.t),
    scheduleTimer: timers.schedule,
  });
  return { fake, timers, clock, pool };
}

describe('the key pool: filling', () => {
  it('does nothing before start', async () => {
    const { fake, pool } = setup();
    await nextTurn();
    expect(fake.calls).toHaveLength(0);
    expect(pool.take()).toBeNull();
    expect(fake.calls).toHaveLength(0);
  });

  it('fills to its size one background derivation at a time and records when it became full', async () => {
    const { fake, clock, pool } = setup({ size: 3 });
    const startedAt = clock.t;
    pool.start();
    expect(fake.calls).toHaveLength(1);
    expect(pool.stats()).toMatchObject({ size: 0, refilling: true, lastFullAt: null });
    for (let i = 0; i < 3; i += 1) {
      await fake.untilCalls(i + 1);
      clock.t += 40;
      fake.calls[i]!.finish();
    }
    await nextTurn();
    expect(fake.calls).toHaveLength(3);
    expect(fake.maxOutstanding).toBe(1);
    expect(pool.stats()).toMatchObject({
      size: 3,
      capacity: 3,
      refilling: false,
      lastFullAt: clock.t,
      lastRefillFromEmptyMs: clock.t - startedAt,
    });
    for (const call of fake.calls) {
      const words = call.passphrase.split('-');
      expect(words).toHaveLength(4);
      for (const word of words) expect(WORDS).toContain(word);
    }
  });

  it('uses the KDF only when no lookup waits, with the real fair scheduler', async () => {
    const derivations: { passphrase: string; finish(): void }[] = [];
    const derive: DeriveKeys = ({ passphrase }) =>
      new Promise((resolve) =>
        derivations.push({ passphrase, finish: () => resolve({ lookupId: 'x'.repeat(64), kek: Buffer.alloc(32, 1) }) }),
      );
    const kdf = createKdf({ secret: 'pool-test-secret-0123456789abcdef', concurrency: 1, maxQueue: 8, deriveKeys: derive });
    const alice = { aggregate: '192.0.2.0/24', client: '192.0.2.7' };
    const first = kdf.derive('lookup-one', alice);
    const second = kdf.derive('lookup-two', alice);
    const pool = createKeyPool({ kdf, wordlist, words: 4, size: 1, now: () => new Date(0), scheduleTimer: fakeTimers().schedule });
    pool.start();
    expect(derivations.map((d) => d.passphrase)).toEqual(['lookup-one']);
    derivations[0]!.finish();
    await first;
    expect(derivations.map((d) => d.passphrase)).toEqual(['lookup-one', 'lookup-two']);
    derivations[1]!.finish();
    await second;
    expect(derivations).toHaveLength(3); // now the pool's turn
    expect(kdf.stats()).toMatchObject({ activeBackground: 1 });
    derivations[2]!.finish();
    await nextTurn();
    expect(pool.stats().size).toBe(1);
    pool.stop();
  });

  it('never derives with size 0', async () => {
    const { fake, pool } = setup({ size: 0 });
    pool.start();
    await nextTurn();
    expect(pool.take()).toBeNull();
    expect(fake.calls).toHaveLength(0);
  });
});

describe('the key pool: taking', () => {
  it('hands each entry out once, oldest first, then misses, and refills after a take', async () => {
    const { fake, pool } = setup({ size: 2 });
    pool.start();
    await fake.finishUntil(2);
    const [firstCall, secondCall] = fake.calls;
    const first = pool.take();
    expect(first).toEqual({ passphrase: firstCall!.passphrase, lookupId: firstCall!.keys.lookupId, kek: firstCall!.keys.kek });
    expect(fake.calls).toHaveLength(3); // the take started a refill
    expect(pool.take()?.passphrase).toBe(secondCall!.passphrase);
    expect(pool.take()).toBeNull();
    expect(pool.stats()).toMatchObject({ size: 0, hits: 2, misses: 1, dropped: 0 });
    expect(fake.calls).toHaveLength(3); // still one derivation at a time
    // The KEK handed out is the caller's: the pool never zeroes it afterwards.
    expect(first!.kek.equals(Buffer.alloc(32))).toBe(false);
  });

  it('waits until uploads stop taking entries before it refills, so a burst keeps both cores', async () => {
    const { fake, timers, clock, pool } = setup({ size: 2, quietMs: 500 });
    pool.start();
    await fake.finishUntil(2);
    pool.take();
    clock.t += 100;
    pool.take();
    await nextTurn();
    expect(fake.calls).toHaveLength(2); // no refill during the burst
    const quiet = timers.live().filter((t) => t.delayMs === 500);
    expect(quiet).toHaveLength(1); // the first take's timer was replaced by the second's
    clock.t += 500;
    quiet[0]!.callback();
    await fake.untilCalls(3);
    expect(fake.calls).toHaveLength(3);
  });

  it('measures a refill from empty from the moment the last entry was taken', async () => {
    const { fake, clock, pool } = setup({ size: 2 });
    pool.start();
    await fake.finishUntil(2);
    pool.take();
    clock.t += 1_000;
    pool.take();
    const emptiedAt = clock.t;
    clock.t += 250;
    await fake.finishUntil(4);
    expect(pool.stats()).toMatchObject({ size: 2, lastFullAt: emptiedAt + 250, lastRefillFromEmptyMs: 250 });
  });
});

describe('the key pool: age', () => {
  it('never hands out an entry as old as maxAge, and zeroes the KEK of every one it drops', async () => {
    const { fake, clock, pool } = setup({ size: 2 });
    pool.start();
    await fake.untilCalls(1);
    fake.calls[0]!.finish();
    await fake.untilCalls(2);
    clock.t += 100;
    fake.calls[1]!.finish();
    await nextTurn();
    clock.t += MAX_AGE - 100; // the first is exactly maxAge old, the second 100 ms younger
    const taken = pool.take();
    expect(taken?.passphrase).toBe(fake.calls[1]!.passphrase);
    expect(fake.calls[0]!.keys.kek.equals(Buffer.alloc(32))).toBe(true);
    expect(pool.stats()).toMatchObject({ hits: 1, dropped: 1 });
  });

  it('renews itself while idle: at the oldest entry’s expiry a timer drops it and refills', async () => {
    const { fake, timers, clock, pool } = setup({ size: 2 });
    pool.start();
    await fake.finishUntil(2);
    const [timer] = timers.live();
    expect(timers.live()).toHaveLength(1);
    expect(timer!.delayMs).toBe(MAX_AGE);
    clock.t += MAX_AGE;
    timer!.callback();
    expect(pool.stats()).toMatchObject({ size: 0, dropped: 2, refilling: true });
    expect(fake.calls[0]!.keys.kek.equals(Buffer.alloc(32))).toBe(true);
    expect(fake.calls[1]!.keys.kek.equals(Buffer.alloc(32))).toBe(true);
    clock.t += 80;
    await fake.finishUntil(4);
    expect(pool.stats()).toMatchObject({ size: 2, lastRefillFromEmptyMs: 80 });
    // The next timer is set for the new oldest entry.
    expect(timers.live().at(-1)!.delayMs).toBe(MAX_AGE);
  });

  it('does not count stale entries in its size even before anything drops them', async () => {
    const { fake, clock, pool } = setup({ size: 1 });
    pool.start();
    await fake.finishUntil(1);
    expect(pool.stats().size).toBe(1);
    clock.t += MAX_AGE;
    expect(pool.stats().size).toBe(0);
  });
});

describe('the key pool: stopping and failures', () => {
  it('stop withdraws the waiting derivation, cancels its timer, zeroes its entries and refills no more', async () => {
    const { fake, timers, pool } = setup({ size: 3 });
    pool.start();
    await fake.untilCalls(1);
    fake.calls[0]!.finish();
    await fake.untilCalls(2);
    expect(fake.outstanding).toBe(1);
    pool.stop();
    await nextTurn();
    expect(fake.outstanding).toBe(0);
    expect(timers.live()).toHaveLength(0);
    expect(fake.calls[0]!.keys.kek.equals(Buffer.alloc(32))).toBe(true);
    expect(pool.take()).toBeNull();
    await nextTurn();
    expect(fake.calls).toHaveLength(2);
    expect(pool.stats()).toMatchObject({ size: 0, failures: 0, refilling: false });
    expect(() => pool.start()).toThrow('stopped');
  });

  it('throws away a derivation that finishes after stop', async () => {
    const { fake, pool } = setup({ size: 2 });
    pool.start();
    await fake.untilCalls(1);
    fake.calls[0]!.started = true; // already running: an abort cannot withdraw it
    pool.stop();
    fake.calls[0]!.finish();
    await nextTurn();
    expect(fake.calls[0]!.keys.kek.equals(Buffer.alloc(32))).toBe(true);
    expect(pool.stats().size).toBe(0);
    expect(fake.calls).toHaveLength(1);
  });

  it('leaves no timer behind with the default timer once stopped, and never holds the process open', async () => {
    const maxAgeMs = 123_457; // tells the pool's timer apart from any other
    const created: NodeJS.Timeout[] = [];
    const realSetTimeout = globalThis.setTimeout;
    const setSpy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((callback: () => void, delay?: number) => {
      const handle = realSetTimeout(callback, delay);
      if (delay === maxAgeMs) created.push(handle);
      return handle;
    }) as typeof setTimeout);
    const clearSpy = vi.spyOn(globalThis, 'clearTimeout');
    try {
      const fake = fakeKdf();
      const pool = createKeyPool({ kdf: fake.kdf, wordlist, words: 4, size: 1, maxAgeMs, now: () => new Date(0) });
      pool.start();
      await fake.finishUntil(1);
      expect(created).toHaveLength(1);
      expect(created[0]!.hasRef()).toBe(false);
      pool.stop();
      expect(clearSpy).toHaveBeenCalledWith(created[0]);
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
    }
  });

  it('pauses after a failed derivation and tries again at the next take, without a busy loop', async () => {
    const { fake, pool } = setup({ size: 2 });
    pool.start();
    await fake.untilCalls(1);
    fake.calls[0]!.fail(new Error('kdf refused'));
    await nextTurn();
    expect(fake.calls).toHaveLength(1);
    expect(pool.stats()).toMatchObject({ failures: 1, refilling: false });
    expect(pool.take()).toBeNull();
    expect(fake.calls).toHaveLength(2);
  });

  it('never shows an entry in its stats', async () => {
    const { fake, pool } = setup({ size: 2 });
    pool.start();
    await fake.finishUntil(2);
    const text = JSON.stringify(pool.stats());
    for (const call of fake.calls) {
      expect(text).not.toContain(call.passphrase);
      expect(text).not.toContain(call.keys.lookupId);
      expect(text).not.toContain(call.keys.kek.toString('hex'));
    }
  });

  it('has the documented defaults and refuses options that cannot work', () => {
    expect(DEFAULT_KEY_POOL_SIZE).toBe(32);
    expect(DEFAULT_KEY_POOL_MAX_AGE_MS).toBe(300_000);
    const base = { kdf: fakeKdf().kdf, wordlist, words: 4, now: () => new Date() };
    expect(createKeyPool(base).stats()).toMatchObject({ capacity: 32, size: 0 });
    expect(() => createKeyPool({ ...base, size: -1 })).toThrow(RangeError);
    expect(() => createKeyPool({ ...base, size: 1.5 })).toThrow(RangeError);
    expect(() => createKeyPool({ ...base, maxAgeMs: 0 })).toThrow(RangeError);
    expect(() => createKeyPool({ ...base, words: 0 })).toThrow(RangeError);
  });
});
