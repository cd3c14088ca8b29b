import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** `input` cut into `size`-byte pieces (the last may be shorter). */
export function* pieces(input: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < input.length; offset += size) yield input.subarray(offset, offset + size);
}

/** Streams `input` through `transform` in `pieceSize` writes; keeps what came out even when it fails. */
export async function runThrough(
  transform: Transform,
  input: Buffer,
  pieceSize = Math.max(1, input.length),
): Promise<{ output: Buffer; error: unknown }> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.push(chunk);
      callback();
    },
  });
  let error: unknown;
  try {
    await pipeline(Readable.from(pieces(input, pieceSize)), transform, sink);
  } catch (caught) {
    error = caught;
  }
  return { output: Buffer.concat(out), error };
}
