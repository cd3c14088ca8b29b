import { describe, expect, it, vi } from 'vitest';
import { kdfBusy } from '../../app/crypto/crypto.errors.js';
import { cryptoErrorToAppError } from '../../app/http/error-handler.js';
import {
  createFairScheduler,
  defaultMaxPerClient,
  defaultMaxQueuedPerAggregate,
  type FairScheduler,
  type FairSchedulerOptions,
  type Requester,
} from '../../app/kdf/fair-scheduler.js';

// Every task finishes only when the test says so: dispatch order is observed, never timed.
// Nothing here waits on time, so a wait that hangs is a bug: fail in seconds, not in a minute.
vi.setConfig({ testTimeout: 5_000 });
interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Outcome<T> {
  state: 'pending' | 'fulfilled' | 'rejected';
  value?: T;
  error?: unknown;
  /** Settles when the promise does, never rejects. */
  settled: Promise<void>;
}

/** Watches a promise from the start, so a rejection is observed, never unhandled. */
function watch<T>(promise: Promise<T>): Outcome<T> {
  const outcome: Outcome<T> = { state: 'pending', settled: Promise.resolve() };
  outcome.settled = promise.then(
    (value) => {
      outcome.state = 'fulfilled';
      outcome.value = value;
    },
    (error: unknown) => {
      outcome.state = 'rejected';
      outcome.error = error;
    },
  );
  return outcome;
}

const who = (aggregate: string, client: string): Requester => ({ aggregate, client });

/**
 * Drives a scheduler with labelled tasks: `started` is the dispatch order, `finish(label)` ends a
 * running task, and `untilStarted(n)` waits for the n-th dispatch (an event, not a sleep).
 */
function driver(scheduler: FairScheduler) {
  const started: string[] = [];
  const running = new Map<string, Deferred<string>>();
  let waiters: { count: number; resolve: () => void }[] = [];

  const notify = () => {
    const ready = waiters.filter((w) => started.length >= w.count);
    waiters = waiters.filter((w) => started.length < w.count);
    for (const w of ready) w.resolve();
  };

  const task = (label: string) => () => {
    started.push(label);
    const done = deferred<string>();
    running.set(label, done);
    notify();
    return done.promise;
  };

  return {
    started,
    running,
    submit(requester: Requester, label: string): Outcome<string> {
      return watch(scheduler.run(requester, task(label)));
    },
    background(label: string, signal?: AbortSignal): Outcome<string> {
      return watch(scheduler.runInBackground(task(label), { signal }));
    },
    finish(label: string): void {
      const done = running.get(label);
      if (!done) throw new Error(`task ${label} is not running`);
      running.delete(label);
      done.resolve(label);
    },
    fail(label: string, error: unknown): void {
      const done = running.get(label);
      if (!done) throw new Error(`task ${label} is not running`);
      running.delete(label);
      done.reject(error);
    },
    untilStarted(count: number): Promise<void> {
      if (started.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    /** Finishes running tasks one at a time, oldest first, until `count` tasks have started. */
    async drainUntilStarted(count: number): Promise<void> {
      while (started.length < count) {
        const [oldest] = running.keys();
        if (oldest === undefined) throw new Error(`nothing running and only ${started.length} of ${count} started`);
        const before = started.length;
        this.finish(oldest);
        await this.untilStarted(before + 1);
      }
    },
  };
}

/** Lets pending promise callbacks run (a settled task releases its slot in a then-callback). */
async function settle(outcomes: Outcome<unknown>[]): Promise<void> {
  await Promise.all(outcomes.map((o) => o.settled));
}

const BUSY = kdfBusy();
/** kdfBusy() whatever its class: compared with a fresh one, so a change of its shape keeps the tests honest. */
function isBusy(error: unknown): boolean {
  return (
    error instanceof Error &&
    error.constructor === BUSY.constructor &&
    error.message === BUSY.message &&
    (error as { code?: unknown }).code === (BUSY as { code?: unknown }).code
  );
}

function create(options: FairSchedulerOptions) {
  const scheduler = createFairScheduler(options);
  return { scheduler, d: driver(scheduler) };
}

/** mulberry32: a seeded generator, so a failing random walk can be replayed. */
function random(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('the fair scheduler: dispatch order', () => {
  it('lets a lone client use every slot and queues the rest first in, first out', async () => {
    const { scheduler, d } = create({ concurrency: 2, maxQueue: 8 });
    const a = who('A', 'a1');
    const outcomes = ['1', '2', '3', '4'].map((label) => d.submit(a, label));
    expect(d.started).toEqual(['1', '2']);
    expect(scheduler.stats()).toMatchObject({ active: 2, activeForeground: 2, queued: 2 });
    d.finish('2');
    await d.untilStarted(3);
    d.finish('1');
    await d.untilStarted(4);
    expect(d.started).toEqual(['1', '2', '3', '4']);
    d.finish('3');
    d.finish('4');
    await settle(outcomes);
    expect(outcomes.map((o) => o.value)).toEqual(['1', '2', '3', '4']);
    expect(scheduler.stats()).toMatchObject({ active: 0, queued: 0, clients: 0, aggregates: 0 });
  });

  it('takes turns across aggregates, one task each, in the order they first queued', async () => {
    const { d } = create({ concurrency: 1, maxQueue: 16, maxPerClient: 8, maxQueuedPerAggregate: 8 });
    d.submit(who('X', 'x'), 'x');
    for (const label of ['a1', 'a2', 'a3']) d.submit(who('A', 'a'), label);
    for (const label of ['b1', 'b2']) d.submit(who('B', 'b'), label);
    d.submit(who('C', 'c'), 'c1');
    await d.drainUntilStarted(7);
    expect(d.started).toEqual(['x', 'a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
  });

  it('takes turns across the clients of one aggregate, first in, first out within each client', async () => {
    const { d } = create({ concurrency: 1, maxQueue: 16, maxPerClient: 8, maxQueuedPerAggregate: 8 });
    d.submit(who('X', 'x'), 'x');
    for (const label of ['p1', 'p2', 'p3']) d.submit(who('A', 'p'), label);
    d.submit(who('A', 'q'), 'q1');
    for (const label of ['r1', 'r2']) d.submit(who('A', 'r'), label);
    for (const label of ['b1', 'b2', 'b3']) d.submit(who('B', 'b'), label);
    await d.drainUntilStarted(10);
    // Aggregates alternate A, B; inside A the clients rotate p, q, r.
    expect(d.started).toEqual(['x', 'p1', 'b1', 'q1', 'b2', 'r1', 'b3', 'p2', 'r2', 'p3']);
  });

  it('puts an aggregate that starts queuing behind every aggregate already waiting', async () => {
    const { d } = create({ concurrency: 1, maxQueue: 16, maxPerClient: 8, maxQueuedPerAggregate: 8 });
    d.submit(who('X', 'x'), 'x');
    for (const label of ['a1', 'a2', 'a3']) d.submit(who('A', 'a'), label);
    d.submit(who('B', 'b'), 'b1');
    await d.drainUntilStarted(2); // a1 runs; A goes to the back: B, A
    d.submit(who('C', 'c'), 'c1');
    await d.drainUntilStarted(5);
    expect(d.started).toEqual(['x', 'a1', 'b1', 'a2', 'c1']);
  });
});

describe('the fair scheduler under a flood from one aggregate', () => {
  const legitimate = who('198.51.100.0/24', '198.51.100.7');
  const flooder = (i: number) => who('2001:db8:5::/48', `2001:db8:5:${(0x4200 + i).toString(16)}::/64`);

  for (const [clients, perClient] of [
    [1, 1],
    [10, 4],
    [200, 1],
    [200, 4],
  ] as const) {
    it(`dispatches the legitimate client's task within 2 dispatches against ${clients} flooding clients × ${perClient} requests each`, async () => {
      const { scheduler, d } = create({ concurrency: 2, maxQueue: 256 });
      const owner = new Map<string, Requester>();
      let n = 0;
      const flood = (requester: Requester) => {
        const label = `f${(n += 1)}`;
        owner.set(label, requester);
        d.submit(requester, label);
      };
      for (let i = 0; i < clients; i += 1) for (let k = 0; k < perClient; k += 1) flood(flooder(i));
      const floodQueued = scheduler.stats().queued;
      expect(floodQueued).toBe(Math.max(0, Math.min(64, clients * perClient - 2)));

      const waits: number[] = [];
      for (let round = 0; round < 20; round += 1) {
        const label = `L${round}`;
        const submittedAt = d.started.length;
        const outcome = d.submit(legitimate, label);
        expect(outcome.state).toBe('pending');
        // Oldest first, and a flooder polls again as soon as it has its answer: the flood never lets up.
        while (!d.started.includes(label)) {
          // Only promises resolve here, so a starved task would loop forever past any timeout: bound it.
          if (d.started.length - submittedAt > 1_000) throw new Error(`${label} not dispatched after 1,000 dispatches`);
          const [oldest] = d.running.keys();
          const before = d.started.length;
          d.finish(oldest!);
          await d.untilStarted(before + 1);
          const requester = owner.get(oldest!);
          if (requester) flood(requester);
        }
        waits.push(d.started.indexOf(label) - submittedAt + 1);
        // The flood's waiting line is as long as ever: one flood task runs beside the legitimate one.
        expect(scheduler.stats().queued).toBe(Math.max(0, Math.min(64, clients * perClient - 1)));
        d.finish(label);
        await outcome.settled;
        expect(outcome.state).toBe('fulfilled');
      }
      expect(Math.max(...waits)).toBeLessThanOrEqual(2);
      if (clients * perClient > 66) expect(scheduler.stats().refused.aggregate).toBeGreaterThan(0);
      expect(scheduler.stats().refused.global).toBe(0);
    });
  }

  it('without fairness the same flood would put the legitimate task behind the whole queue (the test can fail)', async () => {
    // One aggregate for everyone is a global FIFO: the legitimate task waits behind every earlier flood task.
    const { d } = create({ concurrency: 2, maxQueue: 256, maxQueuedPerAggregate: 256 });
    for (let i = 0; i < 200; i += 1) d.submit(who('all', flooder(i).client), `f${i}`);
    const submittedAt = d.started.length;
    d.submit(who('all', legitimate.client), 'L');
    await d.drainUntilStarted(201);
    expect(d.started.indexOf('L') - submittedAt + 1).toBeGreaterThan(100);
  });
});

describe('the fair scheduler: caps', () => {
  it('refuses only the client over its own cap, at once, with kdfBusy', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 16, maxPerClient: 2, maxQueuedPerAggregate: 8 });
    const a1 = who('A', 'a1');
    d.submit(a1, 'a1-1');
    d.submit(a1, 'a1-2');
    const over = d.submit(a1, 'a1-3');
    await over.settled;
    expect(isBusy(over.error)).toBe(true);
    expect(cryptoErrorToAppError(over.error)?.status).toBe(503);
    const a2 = d.submit(who('A', 'a2'), 'a2-1');
    const b1 = d.submit(who('B', 'b1'), 'b1-1');
    expect(scheduler.stats().refused).toEqual({ client: 1, aggregate: 0, global: 0, background: 0 });
    d.finish('a1-1');
    await d.untilStarted(2);
    // Its first task done, the client is under its cap again.
    const again = d.submit(a1, 'a1-4');
    expect(scheduler.stats().refused.client).toBe(1);
    await d.drainUntilStarted(5);
    expect(d.started).toEqual(['a1-1', 'a1-2', 'b1-1', 'a2-1', 'a1-4']);
    expect([a2.state, b1.state, again.state]).not.toContain('rejected');
  });

  it("counts a client's running tasks against its cap, not only the queued ones", async () => {
    const { scheduler, d } = create({ concurrency: 2, maxQueue: 16, maxPerClient: 2 });
    d.submit(who('A', 'a1'), '1');
    d.submit(who('A', 'a1'), '2');
    expect(scheduler.stats()).toMatchObject({ active: 2, queued: 0 });
    const over = d.submit(who('A', 'a1'), '3');
    await over.settled;
    expect(isBusy(over.error)).toBe(true);
  });

  it("refuses a newcomer when its aggregate's queue is full of equals, and admits other aggregates", async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 16, maxPerClient: 4, maxQueuedPerAggregate: 3 });
    d.submit(who('X', 'x'), 'x');
    for (const c of ['a1', 'a2', 'a3']) d.submit(who('A', c), c);
    const refused = d.submit(who('A', 'a4'), 'a4');
    await refused.settled;
    expect(isBusy(refused.error)).toBe(true);
    expect(scheduler.stats().refused.aggregate).toBe(1);
    d.submit(who('B', 'b1'), 'b1');
    expect(scheduler.stats()).toMatchObject({ queued: 4, displaced: 0, refused: { aggregate: 1 } });
  });

  it('lets a light client of a full aggregate displace the newest task of its heaviest client', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 16, maxPerClient: 4, maxQueuedPerAggregate: 3 });
    d.submit(who('X', 'x'), 'x');
    const heavy = ['h1', 'h2', 'h3'].map((label) => d.submit(who('A', 'heavy'), label));
    const light = d.submit(who('A', 'light'), 'l1');
    await heavy[2]!.settled;
    expect(isBusy(heavy[2]!.error)).toBe(true);
    expect(scheduler.stats()).toMatchObject({ queued: 3, displaced: 1 });
    // Now heavy holds 2 and light 1: one more from light would only swap who is heavier, so it is refused.
    const swap = d.submit(who('A', 'light'), 'l2');
    await swap.settled;
    expect(isBusy(swap.error)).toBe(true);
    expect(scheduler.stats()).toMatchObject({ queued: 3, displaced: 1, refused: { aggregate: 1 } });
    await d.drainUntilStarted(4);
    expect(d.started).toEqual(['x', 'h1', 'l1', 'h2']);
    d.finish('h2');
    await settle([light, heavy[0]!, heavy[1]!]);
    expect([light.state, heavy[0]!.state, heavy[1]!.state]).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  });

  it('refuses at the global bound when no aggregate holds two more than the newcomer would', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 3, maxPerClient: 4, maxQueuedPerAggregate: 3 });
    d.submit(who('X', 'x'), 'x');
    for (const a of ['A', 'B', 'C']) d.submit(who(a, a), a);
    const refused = d.submit(who('D', 'd'), 'd');
    await refused.settled;
    expect(isBusy(refused.error)).toBe(true);
    expect(scheduler.stats().refused).toMatchObject({ client: 0, aggregate: 0, global: 1 });
  });

  it('lets a light aggregate displace the newest task of the heaviest aggregate at the global bound', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 4, maxPerClient: 4, maxQueuedPerAggregate: 4 });
    d.submit(who('X', 'x'), 'x');
    const heavy = ['a1', 'a2', 'a3'].map((label) => d.submit(who('A', 'a'), label));
    d.submit(who('B', 'b'), 'b1');
    d.submit(who('C', 'c'), 'c1');
    await heavy[2]!.settled;
    expect(isBusy(heavy[2]!.error)).toBe(true);
    expect(scheduler.stats()).toMatchObject({ queued: 4, displaced: 1 });
    // B (1 queued) against A (2 queued) is not two lighter: refused, not displacing.
    const notLighter = d.submit(who('B', 'b'), 'b2');
    await notLighter.settled;
    expect(isBusy(notLighter.error)).toBe(true);
    expect(scheduler.stats()).toMatchObject({ queued: 4, displaced: 1, refused: { global: 1 } });
    await d.drainUntilStarted(5);
    expect(d.started).toEqual(['x', 'a1', 'b1', 'c1', 'a2']);
  });

  it('keeps every cap and the work-conserving rule, and refuses only for a reason of the requester, over a random walk', async () => {
    const options = { concurrency: 2, maxQueue: 12, maxPerClient: 3, maxQueuedPerAggregate: 5 };
    const { scheduler, d } = create(options);
    const next = random(0xc1de);
    const requesters = ['A', 'B', 'C', 'D'].flatMap((a) => ['1', '2', '3', '4'].map((c) => who(a, a + c)));
    const outstanding = new Map<string, Requester>(); // label → requester, admitted and not settled
    const outcomes = new Map<string, Outcome<string>>();
    const refusedTotal = () => Object.values(scheduler.stats().refused).reduce((x, y) => x + y, 0);
    const queuedOf = (filter: (r: Requester) => boolean) =>
      [...outstanding].filter(([label, r]) => filter(r) && !d.running.has(label)).length;
    const reasons = { client: 0, aggregate: 0, global: 0 };

    for (let step = 0; step < 3_000; step += 1) {
      if (next() < 0.55 || d.running.size === 0) {
        const requester = requesters[Math.floor(next() * requesters.length)]!;
        const label = `t${step}`;
        const before = { ...scheduler.stats().refused };
        const clientQueued = queuedOf((r) => r.client === requester.client);
        const aggregateQueued = queuedOf((r) => r.aggregate === requester.aggregate);
        const heaviestClient = Math.max(
          0,
          ...requesters.filter((r) => r.aggregate === requester.aggregate).map((r) => queuedOf((o) => o.client === r.client)),
        );
        const heaviestAggregate = Math.max(0, ...['A', 'B', 'C', 'D'].map((a) => queuedOf((o) => o.aggregate === a)));
        const totalBefore = refusedTotal();
        const outcome = d.submit(requester, label);
        outcomes.set(label, outcome);
        const after = scheduler.stats().refused;
        if (refusedTotal() === totalBefore) outstanding.set(label, requester);
        // A refusal is the requester's own doing: its own cap, or its own side as heavy as the heaviest.
        if (after.client > before.client) {
          reasons.client += 1;
          expect([...outstanding.values()].filter((r) => r.client === requester.client)).toHaveLength(options.maxPerClient);
        }
        if (after.aggregate > before.aggregate) {
          reasons.aggregate += 1;
          expect(aggregateQueued).toBe(options.maxQueuedPerAggregate);
          expect(clientQueued + 1).toBeGreaterThanOrEqual(heaviestClient);
        }
        if (after.global > before.global) {
          reasons.global += 1;
          expect(queuedOf(() => true)).toBe(options.maxQueue);
          expect(aggregateQueued + 1).toBeGreaterThanOrEqual(heaviestAggregate);
        }
      } else {
        const labels = [...d.running.keys()];
        const label = labels[Math.floor(next() * labels.length)]!;
        d.finish(label);
        await outcomes.get(label)!.settled;
      }
      // Displaced tasks reject synchronously; let their watchers record it.
      await Promise.resolve();
      for (const [label, outcome] of outcomes) if (outcome.state !== 'pending') outstanding.delete(label);
      const stats = scheduler.stats();
      expect(stats.active).toBeLessThanOrEqual(options.concurrency);
      expect(stats.active).toBe(d.running.size);
      expect(stats.queued).toBe(outstanding.size - d.running.size);
      expect(stats.queued).toBeLessThanOrEqual(options.maxQueue);
      if (stats.queued > 0) expect(stats.active).toBe(options.concurrency);
      for (const a of ['A', 'B', 'C', 'D']) expect(queuedOf((r) => r.aggregate === a)).toBeLessThanOrEqual(options.maxQueuedPerAggregate);
      for (const r of requesters)
        expect([...outstanding.values()].filter((o) => o.client === r.client).length).toBeLessThanOrEqual(options.maxPerClient);
    }
    // The walk reached every cap and displaced tasks, so the checks above were exercised.
    expect(reasons.client).toBeGreaterThan(0);
    expect(reasons.aggregate).toBeGreaterThan(0);
    expect(reasons.global).toBeGreaterThan(0);
    expect(scheduler.stats().displaced).toBeGreaterThan(0);
  });
});

describe('the fair scheduler: background work', () => {
  it('starts a background task only when a slot is free and no foreground task waits', async () => {
    const { scheduler, d } = create({ concurrency: 2, maxQueue: 8 });
    d.submit(who('A', 'a'), 'f1');
    d.submit(who('A', 'a'), 'f2');
    const bg = d.background('g');
    d.submit(who('B', 'b'), 'f3');
    expect(scheduler.stats()).toMatchObject({ queued: 1, queuedBackground: 1 });
    d.finish('f1');
    await d.untilStarted(3);
    expect(d.started).toEqual(['f1', 'f2', 'f3']);
    d.finish('f2');
    await d.untilStarted(4);
    expect(d.started[3]).toBe('g');
    expect(scheduler.stats()).toMatchObject({ activeBackground: 1, activeForeground: 1, started: { foreground: 3, background: 1 } });
    d.finish('g');
    await bg.settled;
    expect(bg.value).toBe('g');
  });

  it('runs one background task at a time, even with slots free', async () => {
    const { scheduler, d } = create({ concurrency: 4, maxQueue: 8 });
    d.background('g1');
    d.background('g2');
    expect(d.started).toEqual(['g1']);
    expect(scheduler.stats()).toMatchObject({ active: 1, queuedBackground: 1 });
    d.finish('g1');
    await d.untilStarted(2);
    expect(d.started).toEqual(['g1', 'g2']);
  });

  it('delays a foreground task by at most the background task already running', async () => {
    const { d } = create({ concurrency: 1, maxQueue: 8 });
    d.background('g1');
    d.background('g2');
    d.submit(who('A', 'a'), 'f1');
    d.finish('g1');
    await d.untilStarted(2);
    expect(d.started).toEqual(['g1', 'f1']); // f1 waited for g1 only; g2 waits for the foreground
    d.submit(who('A', 'a'), 'f2');
    d.finish('f1');
    await d.untilStarted(3);
    d.finish('f2');
    await d.untilStarted(4);
    expect(d.started).toEqual(['g1', 'f1', 'f2', 'g2']);
  });

  it('starts a foreground task at once beside a running background task when a slot is free', () => {
    const { d } = create({ concurrency: 2, maxQueue: 8 });
    d.background('g');
    d.submit(who('A', 'a'), 'f');
    expect(d.started).toEqual(['g', 'f']);
  });

  it('leaves background work waiting as long as foreground work keeps the slots busy', async () => {
    const { d } = create({ concurrency: 1, maxQueue: 8 });
    d.submit(who('A', 'a'), 'f0');
    d.background('g');
    for (let i = 1; i <= 50; i += 1) {
      d.submit(who('A', 'a'), `f${i}`);
      d.finish(`f${i - 1}`);
      await d.untilStarted(i + 1);
    }
    expect(d.started).not.toContain('g');
    d.finish('f50');
    await d.untilStarted(52);
    expect(d.started.at(-1)).toBe('g');
  });

  it('withdraws a waiting background task when its signal aborts, and lets a running one finish', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 8 });
    d.submit(who('A', 'a'), 'f');
    const waiting = new AbortController();
    const withdrawn = d.background('g1', waiting.signal);
    waiting.abort();
    await withdrawn.settled;
    expect((withdrawn.error as Error).name).toBe('AbortError');
    expect(scheduler.stats().queuedBackground).toBe(0);
    d.finish('f');
    await Promise.resolve();
    expect(d.started).toEqual(['f']);

    const running = new AbortController();
    const kept = d.background('g2', running.signal);
    expect(d.started).toEqual(['f', 'g2']);
    running.abort();
    d.finish('g2');
    await kept.settled;
    expect(kept.value).toBe('g2');

    const early = d.background('g3', AbortSignal.abort());
    await early.settled;
    expect(early.state).toBe('rejected');
    expect(d.started).toEqual(['f', 'g2']);
  });

  it('refuses background work beyond its own bound', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 8, maxBackgroundQueue: 1 });
    d.submit(who('A', 'a'), 'f');
    d.background('g1');
    const refused = d.background('g2');
    await refused.settled;
    expect(isBusy(refused.error)).toBe(true);
    expect(scheduler.stats().refused.background).toBe(1);
  });
});

describe('the fair scheduler: failures, bookkeeping and options', () => {
  it('releases the slot when a task rejects or throws before returning a promise', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 8 });
    const boom = new Error('boom');
    const failed = d.submit(who('A', 'a'), 'f1');
    const thrown = watch(
      scheduler.run(who('B', 'b'), () => {
        throw boom;
      }),
    );
    const last = d.submit(who('C', 'c'), 'f2');
    d.fail('f1', boom);
    await settle([failed, thrown]);
    expect([failed.error, thrown.error]).toEqual([boom, boom]);
    await d.untilStarted(2);
    expect(d.started).toEqual(['f1', 'f2']);
    d.finish('f2');
    await last.settled;
    expect(scheduler.stats()).toMatchObject({ active: 0, queued: 0, clients: 0, aggregates: 0 });
  });

  it('counts in its stats without naming any client or aggregate', async () => {
    const { scheduler, d } = create({ concurrency: 1, maxQueue: 8, maxPerClient: 1 });
    const a = who('192.0.2.0/24', '192.0.2.7');
    const b = who('2001:db8:1::/48', '2001:db8:1:2::/64');
    d.submit(a, 'f1');
    d.submit(b, 'f2');
    await d.submit(a, 'f3').settled;
    const stats = scheduler.stats();
    expect(stats).toEqual({
      concurrency: 1,
      active: 1,
      activeForeground: 1,
      activeBackground: 0,
      queued: 1,
      queuedBackground: 0,
      clients: 2,
      aggregates: 2,
      started: { foreground: 1, background: 0 },
      refused: { client: 1, aggregate: 0, global: 0, background: 0 },
      displaced: 0,
    });
    expect(JSON.stringify(stats)).not.toMatch(/192\.0\.2|2001:db8/);
  });

  it('rejects options that cannot work', () => {
    expect(() => createFairScheduler({ concurrency: 0, maxQueue: 8 })).toThrow(RangeError);
    expect(() => createFairScheduler({ concurrency: 1.5, maxQueue: 8 })).toThrow(RangeError);
    expect(() => createFairScheduler({ concurrency: 1, maxQueue: -1 })).toThrow(RangeError);
    expect(() => createFairScheduler({ concurrency: 1, maxQueue: 8, maxPerClient: 0 })).toThrow(RangeError);
    expect(() => createFairScheduler({ concurrency: 1, maxQueue: 8, maxQueuedPerAggregate: Number.NaN })).toThrow(RangeError);
  });

  it('derives its default caps from the slots and the global bound', () => {
    expect(defaultMaxPerClient(2)).toBe(4);
    expect(defaultMaxQueuedPerAggregate(256)).toBe(64);
    expect(defaultMaxQueuedPerAggregate(1)).toBe(1);
  });
});
