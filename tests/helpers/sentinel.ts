import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { confirmingReplicas } from '../../app/shared/redis.js';
import { EPHEMERAL_REDIS_ARGS, findExecutable, freePort, waitForRedisPing } from '../../scripts/redis-server.js';

/**
 * Real redis-server processes for replication and Sentinel tests, all on loopback: a node is
 * started with no persistence and diskless replication both ways (as docs/OPERATIONS.md tells
 * operators), a cluster is a primary, a replica and three sentinels. Everything a helper starts is
 * killed by `destroy()`, by a failed start, and, as a last resort, when the test process exits.
 */

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function redisBinary(): string {
  const binary = findExecutable(['redis-server', 'valkey-server']);
  if (!binary) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  return binary;
}

function launch(args: string[]): ChildProcess {
  const child = spawn(redisBinary(), args, { stdio: 'ignore' });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    // A paused process cannot act on SIGTERM: let it run first.
    child.kill('SIGCONT');
    child.kill(signal);
  });
}

/** Polls `probe` until it returns true; throws with `describe()` when the deadline passes. */
export async function until(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  describe: () => Promise<string> = async () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms. ${await describe().catch(() => '')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface RedisNode {
  port: number;
  pid: number;
  /** A redis:// URL with the password, for REDIS_URL. */
  url: string;
  /** A short-lived admin connection; the caller disconnects it. */
  client(): Redis;
  /** SIGKILL (or another signal) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the process keeps its sockets but answers nothing, like a hung host. */
  pause(): void;
  resume(): void;
  log(): Promise<string>;
}

export interface RedisNodeOptions {
  dir: string;
  password?: string;
  replicaOf?: number;
  args?: string[];
}

/** One redis-server on loopback: no persistence, noeviction, diskless replication both ways. */
export async function startRedisNode(options: RedisNodeOptions): Promise<RedisNode> {
  const port = await freePort();
  const dir = path.join(options.dir, `node-${port}`);
  await mkdir(dir, { recursive: true });
  const logfile = path.join(dir, 'redis.log');
  const auth = options.password !== undefined ? ['--requirepass', options.password, '--masterauth', options.password] : [];
  const child = launch([
    '--bind',
    '127.0.0.1',
    '--port',
    String(port),
    '--dir',
    dir,
    '--logfile',
    logfile,
    ...EPHEMERAL_REDIS_ARGS,
    // No 5 s wait for more replicas before a full sync: tests attach one.
    '--repl-diskless-sync',
    'yes',
    '--repl-diskless-sync-delay',
    '0',
    '--repl-diskless-load',
    'on-empty-db',
    ...auth,
    ...(options.replicaOf !== undefined ? ['--replicaof', '127.0.0.1', String(options.replicaOf)] : []),
    ...(options.args ?? []),
  ]);
  try {
    // With requirepass, an unauthenticated PING answers -NOAUTH: ask with the password then.
    if (options.password === undefined) await waitForRedisPing(port, 10_000);
    else
      await until(
        `redis-server on ${port}`,
        async () => (await withClient(port, options.password, (c) => c.ping())) === 'PONG',
        10_000,
        () => readFile(logfile, 'utf8'),
      );
  } catch (error) {
    await stopChild(child, 'SIGKILL');
    throw error;
  }
  const userinfo = options.password !== undefined ? `:${encodeURIComponent(options.password)}@` : '';
  return {
    port,
    pid: child.pid!,
    url: `redis://${userinfo}127.0.0.1:${port}`,
    client: () => adminClient(port, options.password),
    kill: (signal = 'SIGKILL') => stopChild(child, signal),
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    log: () => readFile(logfile, 'utf8').catch(() => ''),
  };
}

function adminClient(port: number, password: string | undefined): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    ...(password !== undefined ? { password } : {}),
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
    commandTimeout: 2_000,
  });
  client.on('error', () => undefined);
  return client;
}

async function withClient<T>(port: number, password: string | undefined, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = adminClient(port, password);
  try {
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/**
 * Resolves once `replica` has finished its sync and confirms writes: a WAIT on its primary
 * answers. (Right after a diskless full sync, Redis 7.0 counts the replica online for about a
 * second before it answers WAIT; see docs/OPERATIONS.md.)
 */
export async function waitForReplicaSync(
  primary: RedisNode,
  replica: RedisNode,
  password: string | undefined,
  timeoutMs = 10_000,
): Promise<void> {
  await until(
    `replica ${replica.port} in sync`,
    () => withClient(replica.port, password, async (c) => /master_link_status:up/.test(await c.info('replication'))),
    timeoutMs,
    replica.log,
  );
  await until(
    `replica ${replica.port} confirming writes`,
    () =>
      withClient(
        primary.port,
        password,
        async (c) => (
          await c.set('cbx-test:replication-probe', Date.now()),
          (await c.wait(1, 100)) >= 1 && confirmingReplicas(await c.info('replication')) >= 1
        ),
      ),
    timeoutMs,
    primary.log,
  );
}

export interface SentinelCluster {
  name: string;
  password: string;
  sentinelPassword: string;
  primary: RedisNode;
  replica: RedisNode;
  sentinelPorts: number[];
  /** For REDIS_SENTINELS. */
  sentinels: string;
  /** An admin connection to the i-th sentinel; the caller disconnects it. */
  sentinelClient(index: number): Redis;
  /** The primary's port as each sentinel reports it now. */
  primaryPorts(): Promise<(number | null)[]>;
  /** Resolves once every sentinel names `port` as the primary. */
  waitForPrimary(port: number, timeoutMs: number): Promise<void>;
  logs(): Promise<string>;
  destroy(): Promise<void>;
}

export interface SentinelClusterOptions {
  name?: string;
  /** How long a silent primary takes to be judged down; the failover follows. */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
}

/**
 * A primary, a replica in sync with it, and three sentinels (quorum 2) that all know the primary,
 * its replica and each other. Nodes and sentinels have passwords, so the tests exercise both.
 */
export async function startSentinelCluster(options: SentinelClusterOptions = {}): Promise<SentinelCluster> {
  const name = options.name ?? 'cbx-primary';
  const password = `node-pw-${Math.random().toString(36).slice(2)}`;
  const sentinelPassword = `sentinel-pw-${Math.random().toString(36).slice(2)}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-sentinel-'));
  const started: { kill(signal?: NodeJS.Signals): Promise<void> }[] = [];
  const sentinelChildren: ChildProcess[] = [];
  const sentinelPorts: number[] = [];

  const destroy = async () => {
    await Promise.all(started.map((s) => s.kill('SIGKILL')));
    await rm(dir, { recursive: true, force: true });
  };

  const logs = async () => {
    const files = await Promise.all(
      [...sentinelPorts.map((p) => path.join(dir, `sentinel-${p}.log`))].map(
        async (f) => `--- ${path.basename(f)}\n${(await readFile(f, 'utf8').catch(() => '')).slice(-1500)}`,
      ),
    );
    return files.join('\n');
  };

  const sentinelCall = (port: number, ...args: string[]) => withClient(port, sentinelPassword, (c) => c.call('SENTINEL', ...args));

  const primaryPorts = () =>
    Promise.all(
      sentinelPorts.map(async (port) => {
        const reply = (await sentinelCall(port, 'get-master-addr-by-name', name).catch(() => null)) as [string, string] | null;
        return reply ? Number(reply[1]) : null;
      }),
    );

  try {
    const primary = await startRedisNode({ dir, password });
    started.push(primary);
    const replica = await startRedisNode({ dir, password, replicaOf: primary.port });
    started.push(replica);
    await waitForReplicaSync(primary, replica, password);

    for (let i = 0; i < 3; i += 1) {
      const port = await freePort();
      const conf = path.join(dir, `sentinel-${port}.conf`);
      await writeFile(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `logfile ${path.join(dir, `sentinel-${port}.log`)}`,
          `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1_000}`,
          `sentinel failover-timeout ${name} ${options.failoverTimeoutMs ?? 4_000}`,
          `sentinel parallel-syncs ${name} 1`,
          `sentinel auth-pass ${name} ${password}`,
          `requirepass ${sentinelPassword}`,
          `sentinel sentinel-pass ${sentinelPassword}`,
          '',
        ].join('\n'),
      );
      const child = launch([conf, '--sentinel']);
      sentinelChildren.push(child);
      started.push({ kill: (signal = 'SIGKILL') => stopChild(child, signal) });
      sentinelPorts.push(port);
    }

    // Agreement: every sentinel names the primary, sees its replica and the two other sentinels.
    await until(
      'sentinels agree on the primary',
      async () => {
        const views = await Promise.all(
          sentinelPorts.map(async (port) => {
            const flat = (await sentinelCall(port, 'master', name)) as string[];
            const view = new Map<string, string>();
            for (let i = 0; i + 1 < flat.length; i += 2) view.set(flat[i]!, flat[i + 1]!);
            return view;
          }),
        );
        return views.every(
          (v) =>
            v.get('port') === String(primary.port) &&
            v.get('flags') === 'master' &&
            v.get('num-slaves') === '1' &&
            v.get('num-other-sentinels') === '2',
        );
      },
      20_000,
      logs,
    );

    return {
      name,
      password,
      sentinelPassword,
      primary,
      replica,
      sentinelPorts,
      sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
      sentinelClient: (index) => adminClient(sentinelPorts[index]!, sentinelPassword),
      primaryPorts,
      waitForPrimary: (port, timeoutMs) =>
        until(`every sentinel names ${port} the primary`, async () => (await primaryPorts()).every((p) => p === port), timeoutMs, logs),
      logs,
      destroy,
    };
  } catch (error) {
    await destroy();
    throw error;
  }
}
