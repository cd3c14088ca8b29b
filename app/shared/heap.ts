/**
 * How the API keeps V8's garbage from becoming resident memory (docs/BENCHMARKS.md has the figures).
 *
 * Transfers: a streaming transfer allocates a new Buffer for every socket or file read and every
 * sealed or opened chunk, and each dies within a millisecond. V8 frees a Buffer's memory only when a
 * collection finds it dead, and it starts one for Buffers only after about 32 MiB of new ones (twice
 * its default semi-space, whatever --max-semi-space-size says). So up to 32 MiB of dead chunks sat in
 * glibc's heap during every large transfer, and the heap they made stayed afterwards (glibc gives
 * back only the top of its heap, and a live allocation above the freed chunks pins them): 30 MiB
 * more resident after one large upload, carried into every later request. A young collection with
 * few live objects takes well under a millisecond; one every TRANSFER_GC_BYTES of chunk data bounds
 * the dead Buffers to a few MiB. `gc` comes from a fresh context with --expose-gc switched on just
 * for that, so no code ever sees a global `gc`.
 *
 * Many clients at once: requests that wait for the KDF live long enough to reach V8's old generation,
 * which by default may grow to several times what survived its last collection before it collects
 * again (fifty waiting uploads grew it by 20–30 MiB). `--heap-growing-percent` keeps that limit close
 * to what is live. It works only on the command line (set from code at run time, it measured no
 * better than without), so the launcher and compose.yaml start the API with API_NODE_FLAGS.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

/** Chunk bytes (plaintext sealed or opened, or parts sent to a store) between two young collections. */
export const TRANSFER_GC_BYTES = 2 * 1024 * 1024;
/**
 * Node flags of the API process (scripts/start.ts, compose.yaml): a small young generation, and an old
 * generation that may grow only 20 % beyond what survived its last collection.
 */
export const API_NODE_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=20'];

/**
 * glibc's settings for the API process (scripts/start.ts; the Dockerfile sets the same), measured in
 * docs/BENCHMARKS.md: fewer malloc arenas for libuv's threads, and a fixed mmap threshold so that
 * large buffers go back to the system when freed (glibc otherwise raises the threshold after the
 * first free and keeps the next ones in its heap). Until the native scrypt engine, glibc's huge pages
 * (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`) were set too, for node:crypto's scrypt and its 16 MiB per
 * derivation; the engine advises its own memory, and without them glibc's heap stays in 4 KiB pages:
 * the small-file peaks 137.6–140.2 MiB against 142.6–151.7 MiB with them (three stacks each).
 */
export const API_MALLOC_ENV = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '1048576',
} as const;

type Collect = (options: { type: 'minor' }) => void;

/** The `gc` of a fresh context made while --expose-gc is on; null where V8 offers none. */
function youngCollector(): Collect | null {
  v8.setFlagsFromString('--expose-gc');
  try {
    const gc: unknown = vm.runInNewContext('gc');
    return typeof gc === 'function' ? (gc as Collect) : null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

// Made when the first collection is due, so importing this module (the launcher reads API_NODE_FLAGS) changes nothing.
let collect: Collect | null | undefined;
let sinceCollection = 0;

/** Counts chunk bytes a transfer just moved; runs a young collection each TRANSFER_GC_BYTES of them, process-wide. */
export function countTransferred(bytes: number): void {
  sinceCollection += bytes;
  if (sinceCollection < TRANSFER_GC_BYTES) return;
  sinceCollection = 0;
  if (collect === undefined) collect = youngCollector();
  collect?.({ type: 'minor' });
}
