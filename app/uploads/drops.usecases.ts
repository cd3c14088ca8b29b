import { Readable } from 'node:stream';
import type { FileEntry } from '../crypto/keys.js';
import { METADATA_MAX_BUCKET } from '../crypto/metadata.js';
import { ciphertextSize, createDecryptStream } from '../crypto/stream.js';
import type { FilesDeps } from '../files/files.usecases.js';
import { validationFailed } from '../http/errors.js';
import { detectType, isAllowedType, SNIFF_BYTES } from './content-type.models.js';
import { zipArchive, type ArchiveEntry } from './drop-archive.js';
import { dropName, EntryNamer, maxArchiveBytes } from './drop.models.js';
import { fileTooLarge, unsupportedMediaType } from './uploads.errors.js';
import type { Requester } from '../kdf/fair-scheduler.js';
import { receiveUpload, type PendingUpload } from './uploads.usecases.js';

/** One more `file` part of a multipart upload: its bytes, and the name (a relative path) the client gave. */
interface DropPart {
  source: Readable;
  filename: string | undefined;
}

/** Several files becoming one drop as they arrive (SPEC §10.7). */
export interface DropBuilder {
  /** Adds the next part; resolves once all its bytes are in the archive, rejects with the drop's failure. */
  add(part: DropPart): Promise<void>;
  /** After the last part: the stored archive, ready to register under the drop's name with its entries. */
  finish(): Promise<{ pending: PendingUpload; filename: string }>;
  /** Removes everything stored so far (the first file and the partial archive). Idempotent. */
  discard(): Promise<void>;
}

// The sealed metadata lists every entry; keep that list inside the largest metadata bucket, with room
// for the filename, type and hash, even when MAX_FILES_PER_UPLOAD is raised far.
const MAX_LIST_BYTES = METADATA_MAX_BUCKET - 64 * 1024;

/**
 * Starts a drop from the upload's first file, already stored as a single file when the second part
 * arrived (a multipart body does not say in advance how many files follow). The archive is one more
 * upload through the same encrypting pipeline: entry 1 is the first file decrypted from its blob
 * (which is removed right after), then each part streams in as the client sends it. No plaintext
 * touches disk, and memory holds one record per entry, never a file's bytes.
 */
export function startDrop(
  deps: FilesDeps,
  first: { pending: PendingUpload; filename: string | undefined; who: Requester; words: number },
): DropBuilder {
  const { config } = deps;
  const namer = new EntryNamer();
  const files: FileEntry[] = [];
  const queue = new EntryQueue();
  let total = first.pending.stored.size;
  let listBytes = 0;
  let failure: unknown = null;
  const current = new Set<Readable>();

  let rejectFailed: (error: unknown) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    rejectFailed = reject;
  });
  failed.catch(() => undefined); // observed through add() and finish()
  const fail = (error: unknown) => {
    if (failure !== null) return;
    failure = error;
    queue.fail(error);
    // A part still being read (a stalled client) would keep the archive writer waiting.
    for (const source of current) source.destroy();
    rejectFailed(error);
  };

  const admit = (filename: string | undefined): string => {
    const name = namer.name(filename);
    listBytes += Buffer.byteLength(JSON.stringify({ name, size: Number.MAX_SAFE_INTEGER })) + 1;
    if (listBytes > MAX_LIST_BYTES)
      throw validationFailed([{ field: 'file', message: 'The names of these files are too long together: send fewer files at once.' }]);
    return name;
  };

  const entry = (name: string, data: AsyncIterable<Buffer>, maxSize: number) =>
    new Promise<void>((resolve) => {
      queue.push({
        name,
        data,
        maxSize,
        onWritten: ({ size }) => {
          files.push({ name, size });
          resolve();
        },
      });
    });

  const archive = pullStream(zipArchive({ entries: queue, modified: deps.now() }), fail);
  // The archive continues the same upload: it takes over the first file's admission (its pooled keys),
  // so a drop costs one pool entry and is never refused by the KDF half-way.
  const stored = receiveUpload(deps, {
    source: archive,
    who: first.who,
    words: first.words,
    archive: {
      maxBytes: maxArchiveBytes(config),
      admitted: first.pending.handOver(),
      // The first file's blob is discarded once the archive is stored (finish): until then the archive
      // may use its room, exactly.
      reclaims: ciphertextSize(first.pending.stored.size),
    },
  });
  stored.catch(fail);

  // Entry 1: the first file, whose type and size were already checked as a single upload's.
  const firstName = admit(first.filename);
  const copied = entry(firstName, decryptedBlob(deps, first.pending), first.pending.stored.size);
  copied.catch(fail);

  const discard = async () => {
    fail(new Error('drop discarded'));
    await Promise.allSettled([first.pending.discard(), stored.then((pending) => pending.discard())]);
  };

  return {
    add: async ({ source, filename }) => {
      if (failure !== null) throw failure;
      current.add(source);
      try {
        const name = admit(filename);
        const budget = config.maxFileSize - total;
        const checked = inspectEntry({
          source,
          allowedMimeTypes: config.allowedMimeTypes,
          onBytes: (n) => {
            total += n;
            if (total > config.maxFileSize) throw fileTooLarge(config.maxFileSize);
          },
        });
        await Promise.race([entry(name, checked, Math.max(budget, 0)), failed]);
      } catch (error) {
        fail(error);
        // Answered only once nothing is left: the first file, the partial archive and their leases.
        await discard();
        throw failure;
      } finally {
        current.delete(source);
      }
    },
    finish: async () => {
      queue.close();
      try {
        await Promise.race([copied, failed]);
        const pending = await Promise.race([stored, failed]);
        // Its own blob, copied into the archive, goes now that the archive is stored.
        await first.pending.discard();
        const filename = dropName(files.map((f) => f.name));
        const entries = [...files];
        return { filename, pending: { ...pending, register: (input) => pending.register({ ...input, filename, files: entries }) } };
      } catch (error) {
        fail(error);
        await discard();
        throw error;
      }
    },
    discard,
  };
}

/**
 * The archive as a Readable. Unlike Readable.from, destroying it (the stall timer, a failed write)
 * does not wait for the generator, which may be waiting on a client that sends nothing: it tells
 * `onDestroy`, which unblocks the generator, and the pipeline learns of the failure at once.
 */
function pullStream(generator: AsyncGenerator<Buffer>, onDestroy: (error: unknown) => void): Readable {
  let pulling = false;
  let ended = false;
  const stream = new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (pulling) return;
      pulling = true;
      void pull();
    },
    destroy(error, callback) {
      // Destroyed after its end (autoDestroy) is the normal case; before it, the drop has failed.
      if (error || !ended) onDestroy(error ?? new Error('archive stream closed early'));
      generator.return(undefined).catch(() => undefined);
      callback(error);
    },
  });
  const pull = async () => {
    try {
      for (;;) {
        const { value, done } = await generator.next();
        if (stream.destroyed) return;
        if (done) {
          ended = true;
          stream.push(null);
          return;
        }
        if (!stream.push(value)) return;
      }
    } catch (error) {
      stream.destroy(error as Error);
    } finally {
      pulling = false;
    }
  };
  return stream;
}

/** The first file's plaintext, read back from its blob with the key only this request holds. */
async function* decryptedBlob(deps: FilesDeps, pending: PendingUpload): AsyncGenerator<Buffer> {
  const { blobId, dataKey } = pending.stored;
  const ciphertext = await deps.blobs.store.read(blobId);
  const plaintext = createDecryptStream({ dataKey, blobId });
  ciphertext.on('error', (error) => plaintext.destroy(error));
  try {
    yield* ciphertext.pipe(plaintext) as AsyncIterable<Buffer>;
  } finally {
    ciphertext.destroy();
  }
}

/**
 * One entry's bytes on their way into the archive: counted against the drop's total, and its type
 * decided by content on its first bytes (ALLOWED_MIME_TYPES applies to each entry; one refused entry
 * refuses the drop). Holds at most SNIFF_BYTES plus a chunk.
 */
async function* inspectEntry(input: {
  source: Readable;
  allowedMimeTypes: string[];
  onBytes: (n: number) => void;
}): AsyncGenerator<Buffer> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let decided = input.allowedMimeTypes.length === 0;
  const decide = async () => {
    const type = await detectType(Buffer.concat(held).subarray(0, SNIFF_BYTES));
    if (!isAllowedType(type, input.allowedMimeTypes)) throw unsupportedMediaType(type);
    decided = true;
  };
  for await (const chunk of input.source as AsyncIterable<Buffer>) {
    input.onBytes(chunk.length);
    if (decided) {
      yield chunk;
      continue;
    }
    held.push(chunk);
    heldBytes += chunk.length;
    if (heldBytes < SNIFF_BYTES) continue;
    await decide();
    yield* held;
    held = [];
  }
  if (!decided) await decide();
  yield* held;
}

/** The archive's entries, pushed as parts arrive and pulled by the archive writer; close() ends it, fail() breaks it. */
class EntryQueue implements AsyncIterable<ArchiveEntry> {
  private readonly items: ArchiveEntry[] = [];
  private waiting: { resolve: (r: IteratorResult<ArchiveEntry>) => void; reject: (e: unknown) => void } | null = null;
  private closed = false;
  private error: unknown = null;

  push(item: ArchiveEntry): void {
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = null;
      resolve({ value: item, done: false });
    } else this.items.push(item);
  }

  close(): void {
    this.closed = true;
    this.settle();
  }

  fail(error: unknown): void {
    this.error ??= error;
    this.settle();
  }

  private settle(): void {
    if (!this.waiting) return;
    const { resolve, reject } = this.waiting;
    this.waiting = null;
    if (this.error !== null) reject(this.error);
    else resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<ArchiveEntry> {
    return {
      next: () => {
        if (this.error !== null) return Promise.reject(this.error);
        const item = this.items.shift();
        if (item) return Promise.resolve({ value: item, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = { resolve, reject };
        });
      },
    };
  }
}
