/**
 * Issue 3's memory check, run as its own process by the bench: `total` bytes of generated plaintext
 * through the encrypt stream, straight into the decrypt stream, into a sink that verifies the length.
 * Prints one JSON line: MiB/s and this process's peak RSS (VmHWM), which must not grow with `total`.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecryptStream, createEncryptStream } from '../../app/crypto/stream.js';

const total = Number(process.argv[2] ?? 1024 * 1024 * 1024);
const piece = randomBytes(1024 * 1024);
const dataKey = randomBytes(32);
const blobId = 'bench-crypto-memory-blob-0000000';

async function* source() {
  for (let sent = 0; sent < total; sent += piece.length) yield sent + piece.length <= total ? piece : piece.subarray(0, total - sent);
}

let received = 0;
const started = process.hrtime.bigint();
await pipeline(
  Readable.from(source(), { objectMode: false }),
  createEncryptStream({ dataKey, blobId }),
  createDecryptStream({ dataKey, blobId }),
  new Writable({
    write(chunk: Buffer, _e, done) {
      received += chunk.length;
      done();
    },
  }),
);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
if (received !== total) throw new Error(`round trip lost bytes: ${received} of ${total}`);
const status = await readFile('/proc/self/status', 'utf8');
const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
process.stdout.write(`${JSON.stringify({ bytes: total, mibPerSecond: total / 1048576 / seconds, peakRssMiB: kib('VmHWM') / 1024 })}\n`);
