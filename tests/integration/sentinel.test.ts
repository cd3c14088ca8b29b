import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEASE_TTL_MS } from '../../app/blobs/lease.js';
import { loadConfig } from '../../app/config.js';
import { createApiRedis, createWorkerRedis } from '../../app/shared/redis.js';
import { redisKeys } from '../../app/shared/redis-keys.js';
import { testEnv, uniquePrefix } from '../helpers/app.js';
import { runTs, type RunningProcess } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { startSentinelCluster, until, type SentinelCluster } from '../helpers/sentinel.js';

/**
 * SPEC §10.3 with real processes: an API and a worker connected through three sentinels to a
 * primary and its replica. With uploads and downloads running, the primary is killed (-9): the
 * API answers 503, quickly, only while there is no primary, then serves again with no restart;
 * nothing acknowledged is lost; the worker comes back with its heartbeat and schedule.
 */

interface Outcome {
  op: 'upload' | 'download';
  /** HTTP status; 0 = no answer (network error or our 5 s client timeout). */
  status: number;
  code?: string;
  started: number;
  ended: number;
}

interface Acknowledged {
  key: string;
  body: Buffer;
  at: number;
}

type LogLine = Record<string, unknown> & { event: string; timestamp: string };

function lines(proc: RunningProcess): LogLine[] {
  return proc
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** Waits for a log line of `proc` with this event, logged at or after `since`, that satisfies `match`. */
async function logged(
  proc: RunningProcess,
  event: string,
  since: number,
  timeoutMs: number,
  match: (l: LogLine) => boolean = () => true,
): Promise<LogLine> {
  let found: LogLine | undefined;
  await until(
    `${event} after ${new Date(since).toISOString()}`,
    async () => {
      found = lines(proc).find((l) => l.event === event && Date.parse(l.timestamp) >= since && match(l));
      return found !== undefined;
    },
    timeoutMs,
    async () => proc.stdout().slice(-3_000),
  );
  return found!;
}

describe('clients built from the config follow the primary through Sentinel', () => {
  let cluster: SentinelCluster;
  const clients: { role: string; redis: Redis }[] = [];

  beforeAll(async () => {
    // A short failover-timeout: Sentinel waits twice that before it fails the same primary over again.
    cluster = await startSentinelCluster({ failoverTimeoutMs: 2_000 });
    const target = loadConfig({
      REDIS_SENTINELS: cluster.sentinels,
      REDIS_SENTINEL_NAME: cluster.name,
      REDIS_SENTINEL_PASSWORD: cluster.sentinelPassword,
      REDIS_PASSWORD: cluster.password,
    });
    for (let i = 0; i < 3; i += 1) {
      const api = createApiRedis(target);
      const worker = createWorkerRedis(target);
      // What BullMQ does for a Worker's blocking connection.
      const blocking = worker.duplicate({ connectionName: 'blocking' });
      clients.push({ role: 'api', redis: api }, { role: 'worker', redis: worker }, { role: 'duplicate', redis: blocking });
    }
    for (const { redis } of clients) redis.on('error', () => undefined);
    await everyClientWritesTo(cluster.primary.port);
  });

  afterAll(async () => {
    for (const { redis } of clients) redis.disconnect();
    await cluster?.destroy();
  });

  async function everyClientWritesTo(port: number, which: (role: string) => boolean = () => true): Promise<void> {
    await until(
      `every client writes to the primary on ${port}`,
      async () => {
        for (const { redis } of clients.filter((c) => which(c.role))) {
          if ((redis.stream as Socket | undefined)?.remotePort !== port) return false;
          await redis.set('cbx-test:probe', String(port));
        }
        return true;
      },
      15_000,
      async () =>
        clients.map(({ role, redis }) => `${role}:${redis.status}:${(redis.stream as Socket | undefined)?.remotePort ?? '-'}`).join(' '),
    );
  }

  it('a manual failover, the old primary alive: the API and worker clients move at once, before Sentinel demotes it; none is left closed', async () => {
    const sentinel = cluster.sentinelClient(0);
    await sentinel.call('SENTINEL', 'FAILOVER', cluster.name);
    sentinel.disconnect();
    await cluster.waitForPrimary(cluster.replica.port, 15_000);
    // Sentinel reconverts the old primary only ~8 s after the switch; until then it still takes
    // writes (lost afterwards). Our clients must not wait for that.
    await everyClientWritesTo(cluster.replica.port, (role) => role !== 'duplicate');
    const roleOfOld = async () => {
      const old = cluster.primary.client();
      try {
        return ((await old.call('ROLE')) as unknown[])[0];
      } finally {
        old.disconnect();
      }
    };
    expect(await roleOfOld()).toBe('master');
    // BullMQ's blocking duplicate only waits for job markers there; it follows when Sentinel
    // demotes the old primary and disconnects its clients.
    await everyClientWritesTo(cluster.replica.port);
    expect(await roleOfOld()).toBe('slave');
    expect(clients.filter(({ redis }) => redis.status === 'end')).toEqual([]);
  });

  it('a kill -9 of the primary: every client moves to the promoted replica, none is left closed', async () => {
    await cluster.replica.kill('SIGKILL');
    await cluster.waitForPrimary(cluster.primary.port, 20_000);
    await everyClientWritesTo(cluster.primary.port);
    expect(clients.filter(({ redis }) => redis.status === 'end')).toEqual([]);
  });
});

describe('Valkey/Redis through Sentinel: the primary is killed with traffic running', () => {
  let cluster: SentinelCluster;
  let dir: string;
  let api: RunningProcess;
  let worker: RunningProcess;
  let url: string;
  let prefix: string;
  const outcomes: Outcome[] = [];
  const acknowledged: Acknowledged[] = [];
  const measured = { killedAt: 0, failoverMs: 0, unavailableMs: 0 };

  beforeAll(async () => {
    cluster = await startSentinelCluster();
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-sentinel-app-'));
    prefix = uniquePrefix();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const env = {
      ...testEnv(dir, prefix, 'unused'),
      REDIS_URL: undefined,
      REDIS_SENTINELS: cluster.sentinels,
      REDIS_SENTINEL_NAME: cluster.name,
      REDIS_SENTINEL_PASSWORD: cluster.sentinelPassword,
      REDIS_PASSWORD: cluster.password,
      PORT: String(port),
      HOST: '127.0.0.1',
      // A scheduled sweep every 3 s, so one runs soon after the failover.
      CLEANUP_INTERVAL_MINUTES: '0.05',
      // No resume window: a burned blob is shredded as soon as its download ends.
      RESUME_WINDOW_SECONDS: '0',
    };
    api = runTs('app/main.ts', env);
    worker = runTs('workers/main.ts', env);
    await Promise.all([api.waitForEvent('api_started'), worker.waitForEvent('worker_started')]);
  });

  afterAll(async () => {
    for (const proc of [api, worker]) {
      if (proc && proc.child.exitCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    }
    await cluster?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const health = async () => (await (await fetch(`${url}/health`)).json()) as { status: string; services: Record<string, string> };

  it('starts both processes through Sentinel; the worker finds no node that writes to disk', async () => {
    const checked = await logged(worker, 'redis_persistence_checked', 0, 10_000);
    expect(checked).toMatchObject({ nodes: 2, warnings: 0 });
    expect(lines(worker).filter((l) => l.event === 'redis_persistence_on')).toEqual([]);
    await until('health healthy', async () => (await health()).status === 'healthy', 10_000);
  });

  it('answers only 503, each within a couple of seconds, while there is no primary, then serves again with no restart', async () => {
    let running = true;
    const record = (outcome: Outcome) => outcomes.push(outcome);
    const loop = async () => {
      while (running) {
        const body = randomBytes(1_024 + Math.floor(Math.random() * 4_096));
        const started = Date.now();
        const res = await fetch(`${url}/upload/traffic.bin?uses=3`, {
          method: 'PUT',
          body,
          headers: { Accept: 'application/json' },
          signal: AbortSignal.timeout(5_000),
        }).catch(() => null);
        const answer = res ? ((await res.json().catch(() => ({}))) as { key?: string; error?: { code: string } }) : {};
        record({
          op: 'upload',
          status: res?.status ?? 0,
          started,
          ended: Date.now(),
          ...(answer.error ? { code: answer.error.code } : {}),
        });
        if (res?.status === 201 && answer.key) {
          acknowledged.push({ key: answer.key, body, at: Date.now() });
          const downloadStarted = Date.now();
          const dl = await fetch(`${url}/download/${answer.key}`, { signal: AbortSignal.timeout(5_000) }).catch(() => null);
          const bytes = dl ? Buffer.from(await dl.arrayBuffer().catch(() => new ArrayBuffer(0))) : Buffer.alloc(0);
          const code =
            dl && dl.status !== 200 ? (JSON.parse(bytes.toString() || '{}') as { error?: { code: string } }).error?.code : undefined;
          record({ op: 'download', status: dl?.status ?? 0, started: downloadStarted, ended: Date.now(), ...(code ? { code } : {}) });
          if (dl?.status === 200) expect(bytes.equals(body)).toBe(true);
        } else {
          // Pace the retries of a failing client; a 503 comes back at once.
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const loops = [loop(), loop()];
    try {
      await until('six uploads acknowledged', async () => acknowledged.length >= 6, 15_000);
      // For the next test: the replica (the primary to be) now keeps an append-only file.
      const replica = cluster.replica.client();
      await replica.config('SET', 'appendonly', 'yes');
      replica.disconnect();

      measured.killedAt = Date.now();
      await cluster.primary.kill('SIGKILL');
      await cluster.waitForPrimary(cluster.replica.port, 20_000);
      measured.failoverMs = Date.now() - measured.killedAt;
      await until(
        'uploads succeed again',
        async () => outcomes.some((o) => o.op === 'upload' && o.status === 201 && o.started > measured.killedAt + measured.failoverMs),
        15_000,
      );
      const recoveredAt = Date.now();
      await until('five more uploads after the recovery', async () => acknowledged.filter((a) => a.at > recoveredAt).length >= 5, 15_000);
    } finally {
      running = false;
      await Promise.all(loops);
    }

    const failures = outcomes.filter((o) => o.status !== 200 && o.status !== 201);
    expect(failures.length).toBeGreaterThan(0); // the kill was felt
    expect(
      JSON.stringify(
        failures
          .filter((o) => o.status !== 503 || o.code !== 'SERVICE_UNAVAILABLE')
          .map((o) => ({ ...o, started: o.started - measured.killedAt, ended: o.ended - measured.killedAt })),
      ),
    ).toBe('[]');
    expect(outcomes.filter((o) => o.ended - o.started > 2_000)).toEqual([]);
    // 503s only from the kill until the new primary was found, plus the clients' reconnect delay.
    expect(failures.every((o) => o.ended >= measured.killedAt)).toBe(true);
    measured.unavailableMs = Math.max(...failures.map((o) => o.ended)) - measured.killedAt;
    expect(measured.unavailableMs).toBeLessThan(measured.failoverMs + 2_000);
    const lastFailure = Math.max(...failures.map((o) => o.ended));
    expect(outcomes.filter((o) => o.started > lastFailure).every((o) => o.status === 200 || o.status === 201)).toBe(true);
    // Same processes: recovered by themselves.
    expect(api.child.exitCode).toBeNull();
    expect(worker.child.exitCode).toBeNull();
    const requests = outcomes.length;
    process.stdout.write(
      `sentinel failover: sentinels agreed after ${measured.failoverMs} ms; 503s for ${measured.unavailableMs} ms after the kill; ${failures.length} of ${requests} requests answered 503\n`,
    );
  });

  it('loses no acknowledged upload: each one downloads byte-identical after the failover', async () => {
    const beforeKill = acknowledged.filter((a) => a.at < measured.killedAt);
    expect(beforeKill.length).toBeGreaterThanOrEqual(6);
    for (const { key, body } of acknowledged) {
      const res = await fetch(`${url}/download/${key}`);
      expect(res.status, key).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    }
  });

  it('brings the worker back: heartbeat, schedule reinstalled, a sweep and a shred after the failover', async () => {
    // Remove the heartbeat the replica inherited, so "online" can only come from a beat after the failover.
    const primary = cluster.replica.client();
    await primary.del(redisKeys(prefix).heartbeat());
    primary.disconnect();
    await until('health says the scheduler is online', async () => (await health()).services.scheduler === 'online', 15_000);
    await logged(worker, 'schedule_installed', measured.killedAt, 15_000);
    await logged(worker, 'orphan_swept', measured.killedAt, 15_000);

    // A burn after the failover: the worker takes the shred job from the new primary.
    const res = await fetch(`${url}/upload/burn.txt`, { method: 'PUT', body: 'burn me', headers: { Accept: 'application/json' } });
    expect(res.status).toBe(201);
    const { key } = (await res.json()) as { key: string };
    const burnedAt = Date.now();
    expect(await (await fetch(`${url}/download/${key}`)).text()).toBe('burn me');
    // After each reconnect the worker destroys nothing for one lease TTL (leaseGrace, JANITOR.md), so
    // a download cut off by the failover can renew its lease first: the shred waits out that grace,
    // which the failover's reconnect (or a later one of the worker's client) started moments ago.
    await logged(worker, 'blob_shredded', burnedAt, LEASE_TTL_MS + 15_000, (l) => l.reason === 'burned');
  }, 120_000);

  it('warns when a node it can see keeps an append-only file (the promoted replica), naming the node', async () => {
    const warning = await logged(worker, 'redis_persistence_on', measured.killedAt, 15_000);
    expect(warning).toMatchObject({
      level: 'warn',
      node: `127.0.0.1:${cluster.replica.port}`,
      role: 'primary',
      settings: ['appendonly yes'],
    });
  });

  it('never writes a password to a log', () => {
    for (const output of [api.stdout(), api.stderr(), worker.stdout(), worker.stderr()]) {
      expect(output).not.toContain(cluster.password);
      expect(output).not.toContain(cluster.sentinelPassword);
    }
  });
});
