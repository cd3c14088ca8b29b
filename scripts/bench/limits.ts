/** The machine's own limits, measured in the same run as the stack: AES-GCM, disk, loopback HTTP. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { runLoad, request, streamDownload, streamUpload, type LoadStats } from './client.js';

export const MiB = 1024 * 1024;

const elapsed = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

/**
 * One-core AES-256-GCM in Node over `total` bytes, in passes over one random `block`-byte buffer:
 * one-shot (a single update() per 64 MiB buffer) and streamed (update() per 1 MiB slice, as a
 * streaming server does). Each figure is the median pass; the limit used is the faster mode.
 */
export function aesGcm(total: number, block = 64 * MiB): { encryptMiBs: number; decryptMiBs: number; oneShotEncryptMiBs: number; streamedEncryptMiBs: number; oneShotDecryptMiBs: number; streamedDecryptMiBs: number } {
  const data = randomBytes(Math.min(block, total));
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const passes = Math.max(4, Math.ceil(total / data.length));
  const enc = createCipheriv('aes-256-gcm', key, iv);
  const sealed = Buffer.concat([enc.update(data), enc.final()]);
  const tag = enc.getAuthTag();
  const rate = (run: () => void) => {
    const rates: number[] = [];
    for (let i = 0; i < passes; i++) {
      const t0 = process.hrtime.bigint();
      run();
      rates.push(data.length / MiB / elapsed(t0));
    }
    rates.sort((a, b) => a - b);
    return rates[Math.floor(rates.length / 2)] ?? NaN;
  };
  const over = (buf: Buffer, slice: number, make: () => { update(b: Buffer): Buffer; final(): Buffer }) => () => {
    const c = make();
    for (let o = 0; o < buf.length; o += slice) c.update(buf.subarray(o, o + slice));
    c.final();
  };
  const cipher = () => createCipheriv('aes-256-gcm', key, iv);
  const decipher = () => {
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAuthTag(tag);
    return d;
  };
  over(data, MiB, cipher)(); // warm-up
  const oneShotEncryptMiBs = rate(over(data, data.length, cipher));
  const streamedEncryptMiBs = rate(over(data, MiB, cipher));
  const oneShotDecryptMiBs = rate(over(sealed, sealed.length, decipher));
  const streamedDecryptMiBs = rate(over(sealed, MiB, decipher));
  return {
    encryptMiBs: Math.max(oneShotEncryptMiBs, streamedEncryptMiBs),
    decryptMiBs: Math.max(oneShotDecryptMiBs, streamedDecryptMiBs),
    oneShotEncryptMiBs,
    streamedEncryptMiBs,
    oneShotDecryptMiBs,
    streamedDecryptMiBs,
  };
}

/**
 * Raw disk: writes `total` bytes in 8 MiB writes to `dir` and fsyncs (timed together), then reads
 * them back. The read is not cache-cold (Node cannot drop the page cache without root), so it is
 * an upper bound on what a download can read; the app's downloads read from the same cache.
 */
export async function disk(dir: string, total: number): Promise<{ writeMiBs: number; readMiBs: number }> {
  const file = path.join(dir, 'bench-disk.bin');
  const chunk = randomBytes(8 * MiB);
  try {
    const w = await open(file, 'w');
    const t0 = process.hrtime.bigint();
    try {
      for (let done = 0; done < total; done += chunk.length) await w.write(chunk, 0, Math.min(chunk.length, total - done));
      await w.sync();
    } finally {
      await w.close();
    }
    const writeMiBs = total / MiB / elapsed(t0);
    const r = await open(file, 'r');
    const buf = Buffer.allocUnsafe(8 * MiB);
    const t1 = process.hrtime.bigint();
    try {
      let n = 0;
      do n = (await r.read(buf, 0, buf.length, null)).bytesRead;
      while (n > 0);
    } finally {
      await r.close();
    }
    const readMiBs = total / MiB / elapsed(t1);
    return { writeMiBs, readMiBs };
  } finally {
    await rm(file, { force: true });
  }
}

// A tiny HTTP server in its own process (so it does not share the bench client's core): PUT
// discards the body; GET /zeros/<n> streams n zero bytes in 1 MiB writes; GET /small/<n> sends n bytes.
const LOOPBACK_SERVER = `
const http = require('node:http');
const zero = Buffer.alloc(1024 * 1024);
const server = http.createServer((req, res) => {
  if (req.method === 'PUT') {
    req.on('data', () => {});
    req.on('end', () => { res.writeHead(201, { 'Content-Type': 'application/json' }); res.end('{"key":"x"}'); });
    return;
  }
  const m = /^\\/(zeros|small)\\/(\\d+)$/.exec(req.url || '');
  if (!m) { res.writeHead(404); res.end(); return; }
  const n = Number(m[2]);
  res.writeHead(200, { 'Content-Length': n, 'Content-Type': 'application/octet-stream' });
  if (m[1] === 'small') { res.end(zero.subarray(0, n)); return; }
  let left = n;
  const pump = () => {
    while (left > 0) {
      const k = Math.min(left, zero.length); left -= k;
      if (!res.write(k === zero.length ? zero : zero.subarray(0, k))) { res.once('drain', pump); return; }
    }
    res.end();
  };
  pump();
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

export interface LoopbackResult {
  uploadMiBs: number;
  downloadMiBs: number;
  small: { upload: LoadStats[]; download: LoadStats[] };
}

export async function loopback(total: number, smallSize: number, smallPlan: { concurrency: number; count: number }[]): Promise<LoopbackResult> {
  const child: ChildProcess = spawn(process.execPath, ['-e', LOOPBACK_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`loopback server exited (${code})`)));
      child.stdout?.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    });
    const base = `http://127.0.0.1:${port}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const chunk = randomBytes(MiB);
    const up = await streamUpload(agent, `${base}/upload`, total, chunk);
    const down = await streamDownload(agent, `${base}/zeros/${total}`);
    if (down.bytes !== total) throw new Error(`loopback download got ${down.bytes} of ${total} bytes`);
    const body = randomBytes(smallSize);
    const small = { upload: [] as LoadStats[], download: [] as LoadStats[] };
    for (const { concurrency, count } of smallPlan) {
      const a = new http.Agent({ keepAlive: true, maxSockets: concurrency });
      small.upload.push(await runLoad(concurrency, count, async () => ((await request(a, `${base}/upload`, { method: 'PUT', body })).status === 201 ? null : 'status')));
      small.download.push(await runLoad(concurrency, count, async () => ((await request(a, `${base}/small/${smallSize}`)).body.length === smallSize ? null : 'short')));
      a.destroy();
    }
    agent.destroy();
    return { uploadMiBs: total / MiB / up.seconds, downloadMiBs: total / MiB / down.seconds, small };
  } finally {
    child.kill('SIGTERM');
  }
}
