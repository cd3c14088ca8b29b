/**
 * A real S3-protocol server for the tests and the bench: s3rver (the npm package, a dev dependency) in
 * its own process on loopback, data in a temp directory. Its own process, so its CPU and memory never
 * count against the process being measured. It accepts the fixed credentials S3RVER/S3RVER.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../redis-server.js';

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface S3rver {
  endpoint: string;
  port: number;
  bucket: string;
  /** Where s3rver keeps the bucket's raw files (objects, metadata, multipart parts). */
  directory: string;
  pid(): number | undefined;
  /** Calls `listener` when the server exits without a stop() (a crash), with its exit code and last output. */
  onExit(listener: (reason: string) => void): void;
  /** Kills the server (SIGKILL by default: a crash, not a goodbye) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and directory: what was stored is still there. */
  start(): Promise<void>;
  /** Stops it for good and removes its directory. */
  destroy(): Promise<void>;
}

export async function startS3rver({ bucket = 'cinderbox', timeoutMs = 15_000 }: { bucket?: string; timeoutMs?: number } = {}): Promise<S3rver> {
  const bin = path.join(import.meta.dirname, 's3rver-main.mjs'); // s3rver's CLI with two crashing races closed
  const port = await freePort();
  const directory = await mkdtemp(path.join(os.tmpdir(), 'cbx-s3rver-'));
  let child: ChildProcess | null = null;
  const crashListeners: ((reason: string) => void)[] = [];

  const start = async () => {
    // s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only has in its legacy
    // provider: without it every truncated listing (MaxKeys reached) fails with InternalError, so a
    // process whose bucket check lists one key would not start once two blobs exist.
    const running = spawn(process.execPath, ['--openssl-legacy-provider', bin, '--directory', directory, '--address', '127.0.0.1', '--port', String(port), '--silent', '--configure-bucket', bucket], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = running;
    let output = '';
    // A crash of the server, not a stop(): say so with its last words, or every later request fails as a riddle.
    running.once('close', (code, signal) => {
      // 'close', not 'exit': by then its last words (the stack trace) have been read
      if (child !== running) return;
      const reason = `s3rver on port ${port} exited unexpectedly (${code ?? signal}): ${output.slice(-4000)}`;
      process.stderr.write(`${reason}\n`);
      for (const listener of crashListeners) listener(reason);
    });
    // The CLI prints "S3rver listening on 127.0.0.1:<port>" once the bucket exists and the port is bound.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${timeoutMs} ms: ${output.slice(-2000)}`)), timeoutMs);
      const onData = (data: Buffer) => {
        output = (output + data.toString()).slice(-8000);
        if (output.includes(`listening on 127.0.0.1:${port}`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      running.stdout?.on('data', onData);
      running.stderr?.on('data', onData);
      running.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited (${code ?? signal}) before listening: ${output.slice(-2000)}`));
      });
    });
  };

  const stop = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill(signal);
    });
  };

  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket,
    directory,
    pid: () => child?.pid,
    onExit: (listener) => void crashListeners.push(listener),
    stop,
    start,
    destroy: async () => {
      await stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
