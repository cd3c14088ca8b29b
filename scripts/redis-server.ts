import { accessSync, constants } from 'node:fs';
import { connect, createServer } from 'node:net';
import path from 'node:path';

/** The first of `names` that is an executable on PATH, or null. */
/**
 * What every Redis this project starts for itself runs with (the launcher's, the tests'): no persistence,
 * since wrapped keys must never reach a disk (SPEC §4.5), and `noeviction`, which BullMQ requires.
 */
export const EPHEMERAL_REDIS_ARGS = ['--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'];

export function findExecutable(names: string[]): string | null {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = path.join(dir, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not in this directory
      }
    }
  }
  return null;
}

/** Resolves once a Redis on 127.0.0.1:port (a number) or on a unix socket (its path) answers PING with PONG. */
export async function waitForRedisPing(where: number | string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pingOnce(where)) return;
    if (Date.now() > deadline) {
      const name = typeof where === 'number' ? `on port ${where}` : `on its socket ${where}`;
      throw new Error(`Redis ${name} did not answer within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function pingOnce(where: number | string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = typeof where === 'number' ? connect(where, '127.0.0.1') : connect(where);
    let reply = '';
    socket.setTimeout(500, () => socket.destroy());
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      reply += data.toString();
      if (reply.includes('\r\n')) {
        socket.end();
        resolve(reply.startsWith('+PONG'));
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(reply.startsWith('+PONG')));
  });
}

/** A TCP port free on loopback right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
