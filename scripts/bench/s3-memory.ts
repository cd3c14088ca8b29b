/**
 * Memory of the s3 engine (issue 18): `total` bytes up through `create()` and back down through
 * `read()`, each variant of part size and queue size in a fresh process of its own, against s3rver
 * in another process. Each measuring process reports its RSS before and after loading the AWS SDK,
 * and its peak RSS (VmHWM, reset before each transfer) during the upload and the download.
 *
 *   npx tsx scripts/bench/s3-memory.ts [total bytes, default 1 GiB] [partMiB:queueSize,…]
 *
 * The measuring processes run with the API's memory settings (MALLOC_ARENA_MAX=2, API_NODE_FLAGS of
 * app/shared/heap.ts), plus --expose-gc to collect before each reading (the peaks themselves
 * include whatever garbage piles up during the transfer, as in the API). Prints one JSON line per
 * variant, then a Markdown table; the "+" figures are the peak above the RSS with the SDK loaded and
 * a client made, before any transfer (after the warm-up, glibc may keep freed part buffers resident).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { API_NODE_FLAGS } from '../../app/shared/heap.js';
import { S3RVER_CREDENTIALS, startS3rver } from './s3rver.js';

const MiB = 1024 * 1024;
const ROOT = path.resolve(import.meta.dirname, '..', '..');

interface Result {
  variant: string;
  bytes: number;
  rssBeforeSdkMiB: number;
  rssWithSdkMiB: number;
  rssAfterWarmupMiB: number;
  uploadPeakMiB: number;
  downloadPeakMiB: number;
  uploadMiBps: number;
  downloadMiBps: number;
}

async function status(): Promise<{ rss: number; hwm: number }> {
  const text = await readFile('/proc/self/status', 'utf8');
  const mib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  return { rss: mib('VmRSS'), hwm: mib('VmHWM') };
}

async function settled(): Promise<{ rss: number; hwm: number }> {
  // A full collection first, so garbage of the previous step is not counted as the next one's.
  (globalThis as { gc?: () => void }).gc?.();
  return status();
}

async function resetPeak(): Promise<void> {
  // Linux: "5" resets VmHWM to the current RSS, so each transfer's peak is its own.
  await settled();
  await writeFile('/proc/self/clear_refs', '5');
}

interface Engine {
  upload(source: Readable): Promise<string>;
  read(id: string): Promise<Readable>;
  remove(id: string): Promise<void>;
  close(): Promise<void>;
}

/** The s3 engine, or (variant "fs") plain file streams in a temp directory, as a reference. */
async function openEngine(endpoint: string, bucket: string, partMiB: string, queueSize: string): Promise<Engine> {
  const { newBlobId } = await import('../../app/blobs/blob-id.js');
  if (partMiB === 'fs') {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-fs-bench-'));
    return {
      async upload(source) {
        const id = newBlobId();
        await pipeline(source, createWriteStream(path.join(dir, id)));
        return id;
      },
      read: (id) => Promise.resolve(createReadStream(path.join(dir, id))),
      remove: (id) => rm(path.join(dir, id)),
      close: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const { createSilentLogger } = await import('../../app/shared/logger.js');
  const { createS3Store } = await import('../../app/blobs/s3-store.js');
  const store = createS3Store({
    endpoint,
    region: 'us-east-1',
    bucket,
    prefix: 'bench/',
    credentials: { ...S3RVER_CREDENTIALS },
    forcePathStyle: true,
    log: createSilentLogger(),
    partSize: Number(partMiB) * MiB,
    queueSize: Number(queueSize),
  });
  await store.check();
  return {
    async upload(source) {
      const blobId = newBlobId();
      const writer = store.create(blobId);
      await pipeline(source, writer.stream);
      await writer.commit();
      return blobId;
    },
    read: (id) => store.read(id),
    remove: async (id) => {
      await store.destroy(id, 'bench');
    },
    close: () => store.close(),
  };
}

async function measure([endpoint, bucket, partMiB, queueSize, total]: string[]): Promise<Result> {
  const piece = randomBytes(MiB);
  const before = await settled();
  const engine = await openEngine(endpoint!, bucket!, partMiB!, queueSize!);
  const withSdk = await settled();
  const bytes = Number(total);
  const source = (size: number) =>
    Readable.from(
      (function* () {
        for (let sent = 0; sent < size; sent += piece.length) yield sent + piece.length <= size ? piece : piece.subarray(0, size - sent);
      })(),
      { objectMode: false },
    );
  let received = 0;
  const sink = () =>
    new Writable({
      write(chunk: Buffer, _e, done) {
        received += chunk.length;
        done();
      },
    });

  // Warm-up: every code path once (small put, multipart put, get), so the peaks below are the transfers'.
  for (const size of [1000, 12 * MiB + 1]) {
    const id = await engine.upload(source(size));
    await pipeline(await engine.read(id), sink());
    await engine.remove(id);
  }
  const warm = await settled();

  await resetPeak();
  let started = process.hrtime.bigint();
  const id = await engine.upload(source(bytes));
  const uploadSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const up = await status();

  await resetPeak();
  received = 0;
  started = process.hrtime.bigint();
  await pipeline(await engine.read(id), sink());
  const downloadSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const down = await status();
  if (received !== bytes) throw new Error(`download returned ${received} of ${bytes} bytes`);
  await engine.remove(id);
  await engine.close();
  return {
    variant: partMiB === 'fs' ? 'fs (file streams)' : `s3 ${partMiB} MiB × ${queueSize}`,
    bytes,
    rssBeforeSdkMiB: before.rss,
    rssWithSdkMiB: withSdk.rss,
    rssAfterWarmupMiB: warm.rss,
    uploadPeakMiB: up.hwm,
    downloadPeakMiB: down.hwm,
    uploadMiBps: bytes / MiB / uploadSeconds,
    downloadMiBps: bytes / MiB / downloadSeconds,
  };
}

function runChild(args: string[]): Promise<Result> {
  const tsx = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
  const child = spawn(process.execPath, [...API_NODE_FLAGS, '--expose-gc', '--import', tsx, import.meta.filename, '--child', ...args], {
    cwd: ROOT,
    env: { ...process.env, MALLOC_ARENA_MAX: '2', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`measuring process exited with ${code}: ${out}`));
      resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as Result);
    });
  });
}

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 1024 * MiB);
  const variants = (process.argv[3] ?? 'fs,5:1,5:2,8:2').split(',').map((v) => (v === 'fs' ? ['fs', '0'] : v.split(':')));
  const server = await startS3rver({ bucket: 'cbx-bench' });
  const results: Result[] = [];
  try {
    for (const [partMiB = '5', queueSize = '1'] of variants) {
      const result = await runChild([server.endpoint, server.bucket, partMiB, queueSize, String(total)]);
      process.stdout.write(`${JSON.stringify(result)}\n`);
      results.push(result);
    }
  } finally {
    await server.destroy();
  }
  const f = (n: number) => n.toFixed(1);
  const rows = [
    `| engine, part size × queue size | RSS before the engine | with the engine (SDK, client) | after warm-up | peak RSS, ${total / MiB} MiB upload | peak RSS, download | upload | download |`,
    '|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.variant} | ${f(r.rssBeforeSdkMiB)} MiB | ${f(r.rssWithSdkMiB)} MiB | ${f(r.rssAfterWarmupMiB)} MiB | ${f(r.uploadPeakMiB)} MiB (+${f(r.uploadPeakMiB - r.rssWithSdkMiB)}) | ${f(r.downloadPeakMiB)} MiB (+${f(r.downloadPeakMiB - r.rssWithSdkMiB)}) | ${f(r.uploadMiBps)} MiB/s | ${f(r.downloadMiBps)} MiB/s |`,
    ),
  ];
  process.stdout.write(`\n${rows.join('\n')}\n`);
}

if (process.argv[2] === '--child') {
  const result = await measure(process.argv.slice(3));
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main();
}
