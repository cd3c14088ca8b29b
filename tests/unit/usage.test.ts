import { describe, expect, it } from 'vitest';
import { createUsage } from '../../app/blobs/usage.js';

/** A usage whose counts the test answers by hand, on a clock it moves. */
function controlled() {
  let clock = 0;
  const counts: { resolve: (sizes: Map<string, number>) => void }[] = [];
  const usage = createUsage({
    now: () => clock,
    maxAgeMs: 1_000,
    list: () => new Promise((resolve) => counts.push({ resolve })),
    onRefreshFailed: () => undefined,
  });
  return {
    usage,
    counts,
    tick: (ms: number) => (clock += ms),
    /** Answers the running count and lets its figure settle. */
    answer: async (sizes: Record<string, number>) => {
      counts.shift()!.resolve(new Map(Object.entries(sizes)));
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

describe('the storage usage for MAX_STORAGE_BYTES', () => {
  it('counts once, then adds its own commits and removals at once', async () => {
    const { usage, answer } = controlled();
    const first = usage.get();
    await answer({ a: 100, b: 50 });
    expect(await first).toBe(150);
    usage.add(30, 'c');
    usage.add(-50, 'b');
    expect(await usage.get()).toBe(130);
  });

  it('counts each own change made during a count as it is now, whether or not the count saw it', async () => {
    const { usage, answer, tick, counts } = controlled();
    const first = usage.get();
    await answer({ old: 100, gone: 40, seen: 10 });
    expect(await first).toBe(150);

    tick(1_000);
    expect(await usage.get()).toBe(150); // stale while the next count runs
    expect(counts).toHaveLength(1);
    usage.add(20, 'new-seen'); // committed during the count, which saw it
    usage.add(70, 'new-unseen'); // committed during the count, after it looked
    usage.add(-40, 'gone'); // removed before the count looked: it did not see it
    usage.add(-10, 'seen'); // removed after the count saw it
    expect(await usage.get()).toBe(150 + 20 + 70 - 40 - 10);
    await answer({ old: 100, seen: 10, 'new-seen': 20 });
    // Neither counted twice nor lost: old 100, new-seen 20, new-unseen 70.
    expect(await usage.get()).toBe(190);
  });

  it('takes what changed before a count began from the count itself', async () => {
    const { usage, answer, tick } = controlled();
    const first = usage.get();
    await answer({ a: 100 });
    await first;
    usage.add(25, 'b');
    tick(1_000);
    expect(await usage.get()).toBe(125);
    await answer({ a: 100, b: 25, other: 5 }); // another process added 5
    expect(await usage.get()).toBe(130);
  });
});
