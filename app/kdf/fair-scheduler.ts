/**
 * Fair admission to a small number of slots (the KDF's scrypt slots, SPEC §10.4).
 *
 * Foreground tasks queue FIFO per client, clients round-robin within their aggregate, aggregates
 * round-robin among themselves. The first task of an aggregate with nothing queued starts after at
 * most one task of each other aggregate with queued work, however many clients or tasks those
 * hold, so 200 addresses of one /48 or /24 get one turn between them, not 200. Work-conserving: a
 * slot never idles while a task waits, and a lone client may use every slot.
 *
 * Caps (a refusal is immediate, with `kdfBusy()`; nothing is queued):
 * - per client, queued + in flight (`maxPerClient`): the client itself is over its share;
 * - per aggregate, queued (`maxQueuedPerAggregate`): the /24 or /48 as a whole is;
 * - global, queued (`maxQueue`): memory and worst-case wait stay bounded.
 * A full aggregate or global queue does not simply refuse a light newcomer because heavier ones
 * filled it: a request displaces the newest queued task of the heaviest member (the client with
 * the most queued in a full aggregate; the aggregate with the most queued in a full global queue)
 * when its own side holds at least two fewer, so the heavy side is refused instead. Within one
 * aggregate a refusal is therefore never caused by a lighter client, and across aggregates never
 * by another aggregate's flood unless every aggregate with queued work is as light as this one.
 *
 * Defaults, for 2 slots at ~40 ms (50 derivations/s) against the target of 200 clients of one /48
 * or /24 polling at 1/s (4× capacity) while one client elsewhere must see p95 < 2 s and no 503:
 * - `maxPerClient` = 2 × concurrency (4): a lone client fills every slot and keeps one waiting per
 *   slot, and a few users behind one NAT address are not refused while the KDF is merely busy;
 *   still 1/64 of the global queue, and the LOOKUP rate limit bounds its rate anyway.
 * - `maxQueuedPerAggregate` = maxQueue / 4 (64 with KDF_MAX_QUEUE = 256): ~1.3 s of the whole
 *   KDF, so the flooding /48 holds at most 64 waiting tasks and its 67th..200th poll gets a cheap
 *   503 at once; at least four saturated aggregates are needed to reach the global bound. The
 *   legitimate client's lookup starts after at most one flood task, so it takes about two to three
 *   derivation times (~80–120 ms) instead of the 4–5 s a global FIFO of 256 gives it.
 * - `maxQueue` = KDF_MAX_QUEUE (256): ~5 s of work at the worst (256 single-task aggregates).
 *
 * A **background** class (the key pool's refills) runs only when no foreground task waits and a
 * slot is free, one at a time, so a foreground task waits for at most the one background task
 * already running. Background tasks wait as long as foreground work keeps coming, by design.
 */
import { kdfBusy } from '../crypto/crypto.errors.js';

/** Who asks, as `clientIdentity` (app/abuse/client.models.ts) returns it; any strings work. */
export interface Requester {
  client: string;
  aggregate: string;
}

type RefusalReason = 'client' | 'aggregate' | 'global';

export interface FairSchedulerOptions {
  /** Tasks running at once, foreground and background together. */
  concurrency: number;
  /** Foreground tasks waiting, all clients together. */
  maxQueue: number;
  /** Foreground tasks queued or running for one client. Default 2 × concurrency. */
  maxPerClient?: number;
  /** Foreground tasks queued for one aggregate. Default ceil(maxQueue / 4), at least 1. */
  maxQueuedPerAggregate?: number;
  /** Background tasks waiting; beyond it `runInBackground` refuses. Default 4 (the key pool needs 1). */
  maxBackgroundQueue?: number;
}

/** Counters only: no client or aggregate is ever named (they are IP addresses). */
export interface FairSchedulerStats {
  concurrency: number;
  active: number;
  activeForeground: number;
  activeBackground: number;
  queued: number;
  queuedBackground: number;
  /** Clients with a task queued or running. */
  clients: number;
  /** Aggregates with a task queued or running. */
  aggregates: number;
  started: { foreground: number; background: number };
  /** Requests refused at admission, by the cap that refused them; `background` is runInBackground's own bound. */
  refused: Record<RefusalReason | 'background', number>;
  /** Queued foreground tasks refused later to make room for a lighter client or aggregate. */
  displaced: number;
}

export interface FairScheduler {
  /** Runs `task` in its fair turn; rejects at once with kdfBusy() when `who` is over a cap. */
  run<T>(who: Requester, task: () => Promise<T>): Promise<T>;
  /** Runs `task` only when the slots would otherwise idle; an abort removes it while it still waits. */
  runInBackground<T>(task: () => Promise<T>, options?: { signal?: AbortSignal }): Promise<T>;
  stats(): FairSchedulerStats;
}

const DEFAULT_MAX_BACKGROUND_QUEUE = 4;

export function defaultMaxPerClient(concurrency: number): number {
  return 2 * concurrency;
}

export function defaultMaxQueuedPerAggregate(maxQueue: number): number {
  return Math.max(1, Math.ceil(maxQueue / 4));
}

/** A queued foreground task: start it in its turn, or refuse it when it is displaced. */
interface Job {
  start(): void;
  refuse(error: Error): void;
}

interface ClientState {
  key: string;
  aggregate: AggregateState;
  queue: Job[];
  inFlight: number;
}

interface AggregateState {
  key: string;
  clients: Map<string, ClientState>;
  /** Clients with queued jobs, in turn order: exactly those whose queue is non-empty. */
  ring: ClientState[];
  queued: number;
}

type Decision = { kind: 'run' } | { kind: 'queue'; displace: ClientState | null } | { kind: 'refuse'; reason: RefusalReason };

function positiveInteger(name: string, value: number, minimum: number): number {
  if (!Number.isInteger(value) || value < minimum) throw new RangeError(`${name} must be an integer ≥ ${minimum}`);
  return value;
}

function remove<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index !== -1) list.splice(index, 1);
}

/** The member with the most queued; on a tie the one furthest from its turn (latest in the ring). */
function heaviest<T>(ring: T[], weight: (member: T) => number): T | null {
  let best: T | null = null;
  for (const member of ring) if (best === null || weight(member) >= weight(best)) best = member;
  return best;
}

export function createFairScheduler(options: FairSchedulerOptions): FairScheduler {
  const concurrency = positiveInteger('concurrency', options.concurrency, 1);
  const maxQueue = positiveInteger('maxQueue', options.maxQueue, 0);
  const maxPerClient = positiveInteger('maxPerClient', options.maxPerClient ?? defaultMaxPerClient(concurrency), 1);
  const maxQueuedPerAggregate = positiveInteger(
    'maxQueuedPerAggregate',
    options.maxQueuedPerAggregate ?? defaultMaxQueuedPerAggregate(maxQueue),
    0,
  );
  const maxBackgroundQueue = positiveInteger('maxBackgroundQueue', options.maxBackgroundQueue ?? DEFAULT_MAX_BACKGROUND_QUEUE, 0);

  const aggregates = new Map<string, AggregateState>();
  /** Aggregates with queued jobs, in turn order: exactly those with `queued > 0`. */
  const ring: AggregateState[] = [];
  /** Starters of waiting background tasks, FIFO. */
  const background: (() => void)[] = [];
  let queued = 0;
  let activeForeground = 0;
  let activeBackground = 0;
  const started = { foreground: 0, background: 0 };
  const refused = { client: 0, aggregate: 0, global: 0, background: 0 };
  let displaced = 0;

  const freeSlots = () => concurrency - activeForeground - activeBackground;

  function decide(who: Requester): Decision {
    const aggregate = aggregates.get(who.aggregate);
    const client = aggregate?.clients.get(who.client);
    const mine = client?.queue.length ?? 0;
    if (mine + (client?.inFlight ?? 0) >= maxPerClient) return { kind: 'refuse', reason: 'client' };
    // Nothing waits only when a slot is free: dispatching is eager, so this is the idle case.
    if (queued === 0 && freeSlots() > 0) return { kind: 'run' };
    const ours = aggregate?.queued ?? 0;
    if (ours >= maxQueuedPerAggregate) {
      const victim = aggregate ? heaviest(aggregate.ring, (c) => c.queue.length) : null;
      // Two fewer, so a displacement never just swaps which of two equals is refused.
      return victim && mine + 1 < victim.queue.length ? { kind: 'queue', displace: victim } : { kind: 'refuse', reason: 'aggregate' };
    }
    if (queued >= maxQueue) {
      const victimAggregate = heaviest(ring, (a) => a.queued);
      if (!victimAggregate || ours + 1 >= victimAggregate.queued) return { kind: 'refuse', reason: 'global' };
      return { kind: 'queue', displace: heaviest(victimAggregate.ring, (c) => c.queue.length) };
    }
    return { kind: 'queue', displace: null };
  }

  function stateOf(who: Requester): ClientState {
    let aggregate = aggregates.get(who.aggregate);
    if (!aggregate) {
      aggregate = { key: who.aggregate, clients: new Map(), ring: [], queued: 0 };
      aggregates.set(who.aggregate, aggregate);
    }
    let client = aggregate.clients.get(who.client);
    if (!client) {
      client = { key: who.client, aggregate, queue: [], inFlight: 0 };
      aggregate.clients.set(who.client, client);
    }
    return client;
  }

  /** Forget a client with nothing queued or running, and an aggregate with no clients left. */
  function forgetIfIdle(client: ClientState): void {
    if (client.queue.length > 0 || client.inFlight > 0) return;
    const { aggregate } = client;
    aggregate.clients.delete(client.key);
    if (aggregate.clients.size === 0) aggregates.delete(aggregate.key);
  }

  function enqueue(client: ClientState, job: Job): void {
    const { aggregate } = client;
    client.queue.push(job);
    aggregate.queued += 1;
    queued += 1;
    // A newcomer takes its turn after everyone already waiting, at both levels.
    if (client.queue.length === 1) aggregate.ring.push(client);
    if (aggregate.queued === 1) ring.push(aggregate);
  }

  function displaceNewest(client: ClientState): void {
    const { aggregate } = client;
    const job = client.queue.pop();
    if (!job) return;
    aggregate.queued -= 1;
    queued -= 1;
    if (client.queue.length === 0) remove(aggregate.ring, client);
    if (aggregate.queued === 0) remove(ring, aggregate);
    displaced += 1;
    forgetIfIdle(client);
    job.refuse(kdfBusy());
  }

  function pump(): void {
    while (freeSlots() > 0 && ring.length > 0) {
      const aggregate = ring.shift()!;
      const client = aggregate.ring.shift()!;
      const job = client.queue.shift()!;
      aggregate.queued -= 1;
      queued -= 1;
      if (client.queue.length > 0) aggregate.ring.push(client);
      if (aggregate.queued > 0) ring.push(aggregate);
      client.inFlight += 1;
      activeForeground += 1;
      started.foreground += 1;
      job.start();
    }
    if (freeSlots() > 0 && queued === 0 && activeBackground === 0) {
      const start = background.shift();
      if (start) {
        activeBackground += 1;
        started.background += 1;
        start();
      }
    }
  }

  /** Calls the task and settles the caller's promise after releasing the slot, so the next task starts first. */
  function execute<T>(task: () => Promise<T>, release: () => void, resolve: (value: T) => void, reject: (error: unknown) => void): void {
    let result: Promise<T>;
    try {
      result = task();
    } catch (error) {
      result = Promise.reject(error);
    }
    void Promise.resolve(result).then(
      (value) => {
        release();
        resolve(value);
      },
      (error: unknown) => {
        release();
        reject(error);
      },
    );
  }

  return {
    run<T>(who: Requester, task: () => Promise<T>): Promise<T> {
      const decision = decide(who);
      if (decision.kind === 'refuse') {
        refused[decision.reason] += 1;
        return Promise.reject(kdfBusy());
      }
      const client = stateOf(who);
      return new Promise<T>((resolve, reject) => {
        const release = () => {
          client.inFlight -= 1;
          activeForeground -= 1;
          forgetIfIdle(client);
          pump();
        };
        const job: Job = { start: () => execute(task, release, resolve, reject), refuse: reject };
        if (decision.kind === 'run') {
          client.inFlight += 1;
          activeForeground += 1;
          started.foreground += 1;
          job.start();
          return;
        }
        if (decision.displace) displaceNewest(decision.displace);
        enqueue(client, job);
      });
    },

    runInBackground<T>(task: () => Promise<T>, { signal }: { signal?: AbortSignal } = {}): Promise<T> {
      if (signal?.aborted) return Promise.reject(signal.reason as Error);
      if (background.length >= maxBackgroundQueue) {
        refused.background += 1;
        return Promise.reject(kdfBusy());
      }
      return new Promise<T>((resolve, reject) => {
        const onAbort = () => {
          // Only a task still waiting is withdrawn; a running one finishes and its caller decides.
          remove(background, start);
          reject(signal?.reason);
        };
        const release = () => {
          activeBackground -= 1;
          pump();
        };
        const start = () => {
          signal?.removeEventListener('abort', onAbort);
          execute(task, release, resolve, reject);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        background.push(start);
        pump();
      });
    },

    stats() {
      let clients = 0;
      for (const aggregate of aggregates.values()) clients += aggregate.clients.size;
      return {
        concurrency,
        active: activeForeground + activeBackground,
        activeForeground,
        activeBackground,
        queued,
        queuedBackground: background.length,
        clients,
        aggregates: aggregates.size,
        started: { ...started },
        refused: { ...refused },
        displaced,
      };
    },
  };
}
