import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../helpers/redis-server.js';
import { isAlive, runTs } from '../helpers/processes.js';

function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

/** The TCP ports a process listens on (IPv4 and IPv6), from its socket inodes and /proc/net. */
async function tcpListeners(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode) inodes.add(inode);
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (await readFile(table, 'utf8')).split('\n').slice(1)) {
      // local_address ("ADDR:PORT" in hex), st (0A = LISTEN), inode.
      const [, local = '', , state, , , , , , inode = ''] = line.trim().split(/\s+/);
      if (state === '0A' && inodes.has(inode)) ports.push(parseInt(local.split(':')[1] ?? '', 16));
    }
  }
  return ports;
}

/** What connecting to a unix socket as another user gives: 'connected' or the error's code. */
function connectAs(uid: number, socket: string): Promise<string> {
  const script = `require('net').connect(process.argv[1]).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(0); });`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script, socket], { uid, gid: uid, cwd: '/' }, (error, stdout) =>
      error ? reject(error) : resolve(stdout.trim()),
    );
  });
}

describe('the processes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-proc-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to start the API with a bad variable, naming it', async () => {
    const api = runTs('app/main.ts', { MAX_FILE_SIZE: 'lots', REDIS_URL: 'redis://127.0.0.1:1' });
    const { code } = await api.exited;
    expect(code).not.toBe(0);
    expect(api.stderr()).toContain('MAX_FILE_SIZE: expected a positive integer, got "lots"');
  });

  it('stops both processes with one line naming STORAGE_PATH when it cannot be used', async () => {
    for (const entry of ['app/main.ts', 'workers/main.ts']) {
      // A directory under a regular file can never be made (root ignores permissions; this it cannot).
      const proc = runTs(entry, { REDIS_URL: 'redis://127.0.0.1:1', STORAGE_PATH: '/etc/hostname/uploads', LOG_DIR: '' });
      expect((await proc.exited).code).toBe(73);
      expect(proc.stderr()).toMatch(/^cinderbox (api|worker): STORAGE_PATH: cannot use directory \/etc\/hostname\/uploads \(ENOTDIR\)/);
      expect(proc.stderr().trim().split('\n')).toHaveLength(1);
    }
  });

  it('stops the API with one startup_failed line when its port is taken, and warns of a /metrics open to all in production', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const api = runTs('app/main.ts', {
        REDIS_URL: inject('redisUrl'),
        REDIS_PREFIX: `cbx-port-${process.pid}`,
        NODE_ENV: 'production',
        CINDERBOX_SECRET: 'x'.repeat(64),
        METRICS_ENABLED: 'true',
        HOST: '127.0.0.1',
        PORT: String((taken.address() as net.AddressInfo).port),
        STORAGE_PATH: path.join(dir, 'port-uploads'),
        TEMP_PATH: path.join(dir, 'port-temp'),
        LOG_DIR: '',
      });
      const failed = await api.waitForEvent('startup_failed');
      expect(String(failed.reason)).toMatch(/^listen on 127\.0\.0\.1:\d+: EADDRINUSE$/);
      expect((await api.exited).code).toBe(1);
      expect(api.events().find((l) => l.event === 'metrics_unauthenticated')).toMatchObject({ level: 'warn' });
      expect(api.stderr()).not.toMatch(/at .*\(.*\.ts:\d+/); // no stack trace
    } finally {
      taken.close();
    }
  });

  it('refuses to start in production without CINDERBOX_SECRET, naming it', async () => {
    for (const entry of ['app/main.ts', 'workers/main.ts']) {
      const proc = runTs(entry, { NODE_ENV: 'production', REDIS_URL: 'redis://127.0.0.1:1' });
      const { code } = await proc.exited;
      expect(code).not.toBe(0);
      expect(proc.stderr()).toMatch(/CINDERBOX_SECRET: required when NODE_ENV=production/);
    }
  });

  it('tells how to get Redis when the launcher finds no Redis binary', async () => {
    const launcher = runTs('scripts/start.ts', { PATH: '/nonexistent', REDIS_URL: undefined });
    const { code } = await launcher.exited;
    expect(code).toBe(1);
    expect(launcher.stderr()).toContain('apt-get install -y redis-server');
    expect(launcher.stderr()).toContain('brew install valkey');
    expect(launcher.stderr()).toContain('REDIS_URL');
  });

  describe('npm start (the launcher)', () => {
    it('runs Redis, the API and the worker; health is healthy; logs are JSON; Ctrl-C leaves nothing behind', async () => {
      const port = await freePort();
      const logDir = path.join(dir, 'logs');
      const launcher = runTs('scripts/start.ts', {
        PORT: String(port),
        LOG_DIR: logDir,
        STORAGE_PATH: path.join(dir, 'uploads'),
        TEMP_PATH: path.join(dir, 'temp'),
        CINDERBOX_SECRET: 'launcher-test-secret-0123456789abcdefghij',
      });
      // The compiled API finds the addon from dist/ (the sources' tests find it from app/).
      expect((await launcher.waitForEvent('api_started')).kdf_engine).toBe('native');
      await launcher.waitForEvent('worker_started');
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({
        status: 'healthy',
        services: { redis: 'online', scheduler: 'online', storage: 'online', diceware: 'online' },
      });

      const pids = childPids(launcher.child.pid!);
      expect(pids).toHaveLength(3); // redis, api, worker

      // Its Redis has no password, so it listens on no TCP port, only on a socket in a directory
      // that no other user can enter (checked as another user where the test can become one).
      const redisPid = pids.find((pid) =>
        /redis-server|valkey-server/.test(execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' })),
      );
      expect(redisPid).toBeDefined();
      expect(await tcpListeners(redisPid!)).toEqual([]);
      const socket = /private \S+ on (\S+redis\.sock),/.exec(launcher.stderr())?.[1];
      expect(socket).toBeDefined();
      expect((await stat(path.dirname(socket!))).mode & 0o777).toBe(0o700);
      expect((await stat(socket!)).mode & 0o077).toBe(0);
      if (process.getuid?.() === 0) expect(await connectAs(65534, socket!)).toBe('EACCES');

      launcher.child.kill('SIGINT');
      const { code } = await launcher.exited;
      expect(code).toBe(0);
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
      expect(existsSync(path.dirname(socket!))).toBe(false);

      for (const service of ['api', 'worker']) {
        const lines = (await readFile(path.join(logDir, `cinderbox-${service}.log`), 'utf8')).split('\n').filter(Boolean);
        expect(lines.length).toBeGreaterThan(1);
        for (const line of lines) {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          expect(parsed).toMatchObject({
            timestamp: expect.any(String),
            level: expect.any(String),
            event: expect.stringMatching(/^[a-z_]+$/),
            service,
          });
        }
      }
    });

    it('stops the others and exits non-zero when one child dies', async () => {
      const port = await freePort();
      const launcher = runTs('scripts/start.ts', {
        PORT: String(port),
        LOG_DIR: '',
        STORAGE_PATH: path.join(dir, 'uploads2'),
        TEMP_PATH: path.join(dir, 'temp2'),
        CINDERBOX_SECRET: 'launcher-test-secret-0123456789abcdefghij',
      });
      await launcher.waitForEvent('api_started');
      await launcher.waitForEvent('worker_started');
      const pids = childPids(launcher.child.pid!);
      expect(pids).toHaveLength(3);
      const api = pids.find((pid) => execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).includes('app/main'));
      expect(api).toBeDefined();
      process.kill(api!, 'SIGKILL');
      const { code } = await launcher.exited;
      expect(code).toBe(1);
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
    });
  });
});
