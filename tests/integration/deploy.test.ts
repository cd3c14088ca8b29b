/**
 * Deployment checks that run without a Docker engine (issues 9 and 19); the real build and compose
 * run is tests/deploy (npm run test:deploy):
 *  1. `docker-compose config` accepts compose.yaml with CINDERBOX_SECRET and refuses it without;
 *  2. every variable compose and the Dockerfile set is one app/config.ts knows;
 *  3. the Dockerfile builds without a registry frontend and probes health soon after start;
 *  4. the image's runtime stage, reproduced in a clean directory (production install only, the
 *     parts of dist/ it copies, the copied data and static files), starts both roles with the
 *     image's commands, answers /health, and the HEALTHCHECK command tells up from down.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { VARIABLES } from '../../app/config.js';
import { API_MALLOC_ENV, API_NODE_FLAGS } from '../../app/shared/heap.js';
import { TEST_SECRET, uniquePrefix } from '../helpers/app.js';
import { isAlive, ROOT } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { copiesFromBuild, dockerfileInstructions, runtimeStage, shippedScripts } from '../deploy/dockerfile.js';
import yaml from 'js-yaml';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(
  command: string,
  args: string[],
  options: { cwd: string; env: Record<string, string | undefined>; timeoutMs?: number },
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 32 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const baseEnv = { PATH: process.env.PATH, HOME: process.env.HOME ?? os.tmpdir() };

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  ports?: unknown[];
  healthcheck?: { test?: string[]; disable?: boolean };
  mem_limit?: string;
  pids_limit?: number;
  read_only?: boolean;
  cap_drop?: string[];
  security_opt?: string[];
  tmpfs?: string[];
  restart?: string;
  image?: string;
  user?: string;
  volumes?: string[];
  depends_on?: Record<string, { condition?: string }>;
}

/** The compose files copied into a scratch project with the given .env, then `docker-compose config`. */
async function composeConfig(dotenv: string | null, env: Record<string, string> = {}, files = ['compose.yaml']): Promise<Run> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-compose-'));
  try {
    for (const file of [...files, 'Dockerfile']) await cp(path.join(ROOT, file), path.join(dir, file));
    if (dotenv !== null) await writeFile(path.join(dir, '.env'), dotenv);
    const args = [...files.flatMap((f) => ['-f', f]), 'config'];
    return await run('docker-compose', args, { cwd: dir, env: { ...baseEnv, ...env }, timeoutMs: 30_000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const dockerfile = () => dockerfileInstructions(ROOT);

function envNames(args: string): string[] {
  return [...args.matchAll(/(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=/g)].map((m) => m[1]!);
}

const SECRET_DOTENV = `CINDERBOX_SECRET=${TEST_SECRET}\n`;

describe('compose.s3.yaml', () => {
  const files = ['compose.yaml', 'compose.s3.yaml'];
  // What `openssl rand -base64 30` gives: `/`, `+` and `=` among letters.
  const secretKey = 'Zm9v/YmFy+YmF6=';

  it('creates the bucket with MinIO credentials from the environment, never on a command line', async () => {
    const result = await composeConfig(`${SECRET_DOTENV}S3_ACCESS_KEY_ID=cinderbox\nS3_SECRET_ACCESS_KEY=${secretKey}\n`, {}, files);
    expect(result.code, result.stderr).toBe(0);
    const init = (yaml.load(result.stdout) as { services: Record<string, ComposeService & { entrypoint?: string[] }> }).services[
      'minio-init'
    ]!;
    expect([...(init.entrypoint ?? []), ...(init.command ?? [])]).toEqual(['mc', 'mb', '--ignore-existing', 'local/cinderbox']);
    // mc's own reading of MC_HOST_<alias> (cmd/config.go, hostKeys): the key up to the first `:`, the
    // secret up to the last `@`.
    const parts = /^(https?:\/\/)(.*?):(.*)@(.*?)$/.exec(init.environment?.MC_HOST_local ?? '');
    expect(parts?.slice(1)).toEqual(['http://', 'cinderbox', secretKey, 'minio:9000']);
    for (const service of ['api', 'worker']) {
      const s = (yaml.load(result.stdout) as { services: Record<string, ComposeService> }).services[service]!;
      expect(s.environment).toMatchObject({ STORAGE_BACKEND: 's3', S3_ENDPOINT: 'http://minio:9000', S3_BUCKET: 'cinderbox' });
    }
  });

  it('refuses to start without the keys, naming them', async () => {
    const missing = await composeConfig(SECRET_DOTENV, {}, files);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/S3_ACCESS_KEY_ID|S3_SECRET_ACCESS_KEY/);
  });
});

describe('compose.yaml', () => {
  let services: Record<string, ComposeService>;

  beforeAll(async () => {
    const result = await composeConfig(SECRET_DOTENV);
    expect(result.code, result.stderr).toBe(0);
    services = (yaml.load(result.stdout) as { services: Record<string, ComposeService> }).services;
  });

  it('validates with CINDERBOX_SECRET in .env or in the environment, and refuses without it, naming it', async () => {
    const fromEnv = await composeConfig('', { CINDERBOX_SECRET: TEST_SECRET });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);

    const missing = await composeConfig('');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('CINDERBOX_SECRET');
  });

  it('runs valkey without persistence and with noeviction, and both roles from one image', () => {
    expect(Object.keys(services).sort()).toEqual(['api', 'valkey', 'worker']);
    const valkey = services.valkey!;
    expect(valkey.image).toMatch(/^valkey\/valkey:9/);
    const args = valkey.command!.join(' ');
    expect(valkey.command).toEqual(expect.arrayContaining(['--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction']));
    expect(args).toContain('--maxmemory ');
    expect(valkey.healthcheck?.test).toEqual(['CMD', 'valkey-cli', 'ping']);
    // The image declares /data a volume: a tmpfs there means no anonymous volume after `down`.
    expect(valkey.tmpfs).toEqual([expect.stringMatching(/^\/data:size=\d+[km]$/)]);

    const { api, worker } = services;
    expect(api!.image).toBe(worker!.image);
    // With the V8 flags the launcher gives both roles (app/shared/heap.ts: NODE_OPTIONS cannot carry them all).
    expect(api!.command).toEqual(['node', ...API_NODE_FLAGS, 'dist/app/main.js']);
    expect(worker!.command).toEqual(['node', ...API_NODE_FLAGS, 'dist/workers/main.js']);
    expect(api!.ports).toHaveLength(1);
    expect(worker!.ports).toBeUndefined();
    // The api keeps the image's HEALTHCHECK (one definition, in the Dockerfile); the worker serves no
    // HTTP, so its check reads the age of its heartbeat file instead.
    expect(api!.healthcheck).toBeUndefined();
    expect(worker!.healthcheck?.test).toEqual(['CMD', 'node', 'dist/scripts/healthcheck.js', '--worker']);
    // Every container bounded in memory and processes, so a fault cannot take the host down with it.
    for (const s of [api!, worker!, valkey]) {
      expect(s.mem_limit).toMatch(/^\d+[mg]$/);
      expect(s.pids_limit).toBeGreaterThanOrEqual(64);
    }
    for (const s of [api!, worker!, valkey]) {
      expect(s.read_only).toBe(true);
      expect(s.cap_drop).toEqual(['ALL']);
      // `=`: the daemon warns that the `:` separator is deprecated.
      expect(s.security_opt).toEqual(['no-new-privileges=true']);
      expect(s.restart).toBe('unless-stopped');
    }
    for (const s of [api!, worker!]) {
      expect(s.tmpfs).toEqual([expect.stringMatching(/^\/tmp:size=\d+[km]$/)]);
      expect(s.depends_on?.valkey?.condition).toBe('service_healthy');
      expect(s.environment?.REDIS_URL).toBe('redis://valkey:6379');
      expect(s.environment?.CINDERBOX_SECRET).toBe(TEST_SECRET);
      // One storage volume shared by both roles, on the path STORAGE_PATH and TEMP_PATH live under.
      expect(s.volumes).toEqual(
        expect.arrayContaining([expect.stringMatching(/^storage:\/data(:rw)?$/), expect.stringMatching(/^logs:\/app\/logs(:rw)?$/)]),
      );
    }
  });

  it('sets only variables that app/config.ts knows, and so does the Dockerfile', async () => {
    const known = new Set(Object.keys(VARIABLES));
    for (const name of ['api', 'worker']) {
      const names = Object.keys(services[name]!.environment ?? {});
      expect(names.length).toBeGreaterThan(0);
      expect(
        names.filter((n) => !known.has(n)),
        `${name} sets unknown variables`,
      ).toEqual([]);
    }
    const env = (await dockerfile()).filter((i) => i.op === 'ENV').flatMap((i) => envNames(i.args));
    expect(env).toEqual(expect.arrayContaining(['HOST', 'NODE_ENV', 'PORT', 'LOG_DIR', 'STORAGE_PATH', 'TEMP_PATH', 'WORKER_HEALTH_FILE']));
    // The worker's heartbeat file lives on the /tmp tmpfs: the root filesystem is read-only under compose.
    const healthFile = (await dockerfile())
      .filter((i) => i.op === 'ENV')
      .map((i) => /WORKER_HEALTH_FILE=(\S+)/.exec(i.args)?.[1])
      .find(Boolean);
    expect(healthFile).toMatch(/^\/tmp\/[^/]+$/);
    // Besides Cinderbox's own variables, only the documented runtime tuning of glibc and Node.
    const runtimeTuning = ['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'NODE_OPTIONS'];
    expect(
      env.filter((n) => !known.has(n) && !runtimeTuning.includes(n)),
      'Dockerfile sets unknown variables',
    ).toEqual([]);
  });
});

describe('Dockerfile', () => {
  it("gives the image the launcher's glibc settings (API_MALLOC_ENV), value for value", async () => {
    const text = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    for (const [name, value] of Object.entries(API_MALLOC_ENV)) expect(text).toContain(`${name}=${value} `);
  });

  it('builds without a registry frontend: no `# syntax=` directive', async () => {
    const text = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(text).not.toMatch(/^#\s*syntax\s*=/im);
  });

  it('probes health every 10 s at most, so `up` turns healthy soon (engines before 25 have no start interval)', async () => {
    const healthcheck = runtimeStage(await dockerfile()).find((i) => i.op === 'HEALTHCHECK')!.args;
    const seconds = (flag: string) => Number(new RegExp(`--${flag}=(\\d+)s\\b`).exec(healthcheck)?.[1]);
    expect(seconds('interval')).toBeLessThanOrEqual(10);
    expect(seconds('timeout')).toBeLessThan(seconds('interval'));
    expect(healthcheck).not.toContain('--start-interval');
  });

  it('ships the healthcheck and no local launcher, Redis starter, bench or doc generator', async () => {
    const runtime = runtimeStage(await dockerfile());
    expect(copiesFromBuild(runtime).filter((c) => c.source === '/app/dist' || c.source === '/app/dist/scripts')).toEqual([]);
    const scripts = shippedScripts(runtime);
    expect(scripts).toContain('healthcheck.js');
    for (const kept of ['start.js', 'redis-server.js', 'bench.js', 'config-docs.js', 'gen-vectors.js']) expect(scripts).not.toContain(kept);
  });
});

interface Proc {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  waitForEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function start(argv: string[], cwd: string, env: Record<string, string | undefined>): Proc {
  const [command, ...args] = argv;
  // The image says `node`; run this very node so the test does not depend on PATH order.
  const child = spawn(command === 'node' ? process.execPath : command!, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const events = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  return {
    child,
    out: () => out,
    err: () => err,
    exited,
    waitForEvent: async (event, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const found = events().find((e) => e.event === event);
        if (found) return found;
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no ${event}; exit ${child.exitCode}; stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)}`);
    },
  };
}

describe('the image, reproduced without Docker', () => {
  let dir: string;
  let buildStage: string;
  const procs: Proc[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-image-'));
    buildStage = await mkdtemp(path.join(os.tmpdir(), 'cbx-build-stage-'));
  });

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    await rm(buildStage, { recursive: true, force: true });
  });

  it(
    'installs production dependencies only, starts both roles with the image commands, and passes its HEALTHCHECK',
    { timeout: 240_000 },
    async () => {
      const instructions = await dockerfile();
      const runtime = runtimeStage(instructions);
      expect(instructions.find((i) => i.op === 'FROM')?.args).toMatch(/^node:22-bookworm-slim\b/);
      expect(runtime.find((i) => i.op === 'USER')?.args).toBe('node');
      expect(runtime.some((i) => i.op === 'ENTRYPOINT' && i.args.includes('tini'))).toBe(true);
      expect(runtime.find((i) => i.op === 'EXPOSE')?.args).toBe('8000');

      // COPY from the build context: the files git knows (tracked or new, not ignored) under each source.
      const listed = await run('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, env: baseEnv });
      expect(listed.code, listed.stderr).toBe(0);
      const files = listed.stdout.split('\n').filter((f) => f !== '' && existsSync(path.join(ROOT, f)));
      for (const copy of runtime.filter((i) => i.op === 'COPY')) {
        const parts = copy.args.split(/\s+/).filter((p) => !p.startsWith('--chown') && !p.startsWith('--chmod'));
        if (parts[0]!.startsWith('--from=')) continue; // from the build stage: below, after tsc
        const dest = parts.at(-1)!;
        for (const source of parts.slice(0, -1)) {
          const matches = files.filter((f) => f === source || f.startsWith(`${source.replace(/\/$/, '')}/`));
          expect(matches.length, `COPY ${source}`).toBeGreaterThan(0);
          for (const f of matches) {
            const target = dest.endsWith('/')
              ? path.join(dir, dest, path.relative(path.dirname(source), f))
              : path.join(dir, dest, path.relative(source, f));
            await mkdir(path.dirname(target), { recursive: true });
            await cp(path.join(ROOT, f), target);
          }
        }
      }
      expect(existsSync(path.join(dir, 'package-lock.json'))).toBe(true);
      expect(existsSync(path.join(dir, 'data', 'eff_large_wordlist.txt'))).toBe(true);

      // RUN npm ci --omit=dev --ignore-scripts … as the image does (the npm cache makes it quick).
      const install = runtime.find((i) => i.op === 'RUN' && i.args.includes('npm ci'));
      expect(install?.args).toMatch(/npm ci --omit=dev --ignore-scripts\b/);
      const ci = await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], {
        cwd: dir,
        env: baseEnv,
        timeoutMs: 180_000,
      });
      expect(ci.code, `npm ci failed:\n${ci.stderr.slice(0, 2500)}`).toBe(0);
      expect(existsSync(path.join(dir, 'node_modules', 'qrcode-generator'))).toBe(true);
      expect(existsSync(path.join(dir, 'node_modules', 'express'))).toBe(true);
      for (const dev of ['typescript', 'vitest', 'tsx', 'eslint'])
        expect(existsSync(path.join(dir, 'node_modules', dev)), `${dev} is a dev dependency`).toBe(false);

      // The build stage's `npm run build` (tsc, then the assets tsc does not copy, into /app/dist), then
      // the runtime stage's COPY --from=build lines: only those parts of dist/ reach the image.
      const buildStageDist = path.join(buildStage, 'dist');
      const tsc = await run(
        process.execPath,
        [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', buildStageDist],
        { cwd: ROOT, env: baseEnv, timeoutMs: 180_000 },
      );
      expect(tsc.code, tsc.stdout + tsc.stderr).toBe(0);
      const copied = await run(process.execPath, ['scripts/copy-assets.mjs', buildStageDist], { cwd: ROOT, env: baseEnv });
      expect(copied.code, copied.stderr).toBe(0);
      const native = await run(process.execPath, ['scripts/build-native.mjs', path.join(buildStage, 'build')], { cwd: ROOT, env: baseEnv });
      expect(native.code, native.stderr).toBe(0);
      const fromBuild = copiesFromBuild(runtime);
      expect(fromBuild.map((c) => c.source)).toEqual(
        expect.arrayContaining(['/app/dist/app', '/app/dist/workers', '/app/build/scrypt.node']),
      );
      for (const { source, target } of fromBuild) {
        expect(/^\/app\/(dist|build)\//.test(source), source).toBe(true);
        const from = path.join(buildStage, path.posix.relative('/app', source));
        expect(existsSync(from), `COPY --from=build ${source}: the build does not emit it`).toBe(true);
        await cp(from, target.endsWith('/') ? path.join(dir, target, path.basename(source)) : path.join(dir, target), { recursive: true });
      }
      expect((await readdir(path.join(dir, 'dist', 'scripts'))).sort()).toEqual(shippedScripts(runtime));
      // Files the code reads at run time that tsc does not emit (pages, Lua scripts…) must be in dist/.
      const assets = files.filter((f) => /^(app|workers)\//.test(f) && !f.endsWith('.ts'));
      expect(
        assets.filter((f) => !existsSync(path.join(dir, 'dist', f))),
        'files under app/ or workers/ missing from the image',
      ).toEqual([]);

      const cmd = JSON.parse(runtime.find((i) => i.op === 'CMD')!.args) as string[];
      const healthcheck = runtime.find((i) => i.op === 'HEALTHCHECK')!.args;
      const healthcheckArgv = JSON.parse(healthcheck.slice(healthcheck.indexOf('CMD') + 3).trim()) as string[];
      expect(cmd).toEqual(['node', 'dist/app/main.js']);
      expect(healthcheckArgv).toEqual(['node', 'dist/scripts/healthcheck.js']);

      const port = await freePort();
      const env = {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        CINDERBOX_SECRET: TEST_SECRET,
        REDIS_URL: inject('redisUrl'),
        REDIS_PREFIX: uniquePrefix(),
        HOST: '127.0.0.1',
        PORT: String(port),
        STORAGE_PATH: path.join(dir, 'state', 'uploads'),
        TEMP_PATH: path.join(dir, 'state', 'temp'),
        LOG_DIR: path.join(dir, 'state', 'logs'),
      };
      const api = start(cmd, dir, env);
      procs.push(api);
      const healthFile = path.join(dir, 'state', 'worker.beat');
      const worker = start(['node', 'dist/workers/main.js'], dir, { ...env, WORKER_HEALTH_FILE: healthFile });
      procs.push(worker);
      const started = await api.waitForEvent('api_started');
      // The addon the image copies from the build stage is found from dist/ (the native scrypt engine).
      expect(started).toMatchObject({ service: 'api', port, version: expect.any(String), kdf_engine: 'native' });
      await worker.waitForEvent('worker_started');

      // The image's HEALTHCHECK, with only PORT, against the running API.
      const up = await run(process.execPath, healthcheckArgv.slice(1), {
        cwd: dir,
        env: { PATH: process.env.PATH, PORT: String(port) },
        timeoutMs: 10_000,
      });
      expect(up.code, up.stderr).toBe(0);

      await new Promise((r) => setTimeout(r, 1_100)); // HEALTH_RATE_LIMIT is 1/second by default
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      const body = (await res.json()) as { status: string; services: Record<string, string> };
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(body).toMatchObject({
        status: 'healthy',
        services: { redis: 'online', storage: 'online', scheduler: 'online', diceware: 'online' },
      });
      const page = await fetch(`http://127.0.0.1:${port}/`);
      expect(page.status).toBe(200); // the static pages were found from dist/, back in app/pages/static

      const closed = await freePort();
      const t0 = Date.now();
      const down = await run(process.execPath, healthcheckArgv.slice(1), {
        cwd: dir,
        env: { PATH: process.env.PATH, PORT: String(closed) },
        timeoutMs: 10_000,
      });
      expect(down.code).toBe(1);
      expect(Date.now() - t0).toBeLessThan(5_000);

      // The worker's check (compose's), with only WORKER_HEALTH_FILE: healthy while the worker beats.
      const workerCheck = (file?: string) =>
        run(process.execPath, [...healthcheckArgv.slice(1), '--worker'], {
          cwd: dir,
          env: { PATH: process.env.PATH, ...(file ? { WORKER_HEALTH_FILE: file } : {}) },
          timeoutMs: 10_000,
        });
      const beating = await workerCheck(healthFile);
      expect(beating.code, beating.stderr).toBe(0);

      for (const p of [api, worker]) p.child.kill('SIGTERM');
      expect(await api.exited, api.err()).toBe(0);
      expect(await worker.exited, worker.err()).toBe(0);
      // A beat older than 20 s (a hung worker, or one cut off from Redis), none at all, or no variable: unhealthy.
      const old = new Date(Date.now() - 21_000);
      await utimes(healthFile, old, old);
      expect((await workerCheck(healthFile)).code).toBe(1);
      expect((await workerCheck(path.join(dir, 'state', 'no-such.beat'))).code).toBe(1);
      const unset = await workerCheck();
      expect(unset.code).toBe(1);
      expect(unset.stderr).toContain('WORKER_HEALTH_FILE is not set');
      expect(isAlive(api.child.pid!)).toBe(false);
      expect(api.out()).toContain('"event":"shutdown_completed"');
      // Each role writes its own file in LOG_DIR (the logs volume in compose).
      expect(existsSync(path.join(env.LOG_DIR, 'cinderbox-api.log'))).toBe(true);
      expect(existsSync(path.join(env.LOG_DIR, 'cinderbox-worker.log'))).toBe(true);
    },
  );
});
