import { PassThrough, Readable } from 'node:stream';
import type { Request, Response } from 'express';
import multer, { type StorageEngine } from 'multer';
import type { PendingUpload } from '../uploads/uploads.usecases.js';
import type { DropBuilder } from '../uploads/drops.usecases.js';
import { missingFile, uploadAborted } from '../uploads/uploads.errors.js';
import { AppError, validationFailed } from './errors.js';
import { requester } from './client.js';
import type { Requester } from '../kdf/fair-scheduler.js';

/**
 * The two ways an upload arrives (SPEC §3) differ only in how the body stream, the filename and
 * the option fields are obtained; everything after is one code path. `receive` gets the body with
 * the fields known before it (PUT: all of them; multipart: those sent before the file part), so
 * bad options are refused before a byte is stored.
 */
export interface ReceivedUpload {
  pending: PendingUpload;
  filename: string | undefined;
  /** Every option field, once the whole request has been read. */
  fields: Record<string, unknown>;
}

export type Receive = (body: {
  source: Readable;
  fieldsSoFar: Record<string, unknown>;
  expectedSize?: number;
  who: Requester;
}) => Promise<PendingUpload>;

/** Turns the first file, once stored, into a drop that the following parts join (SPEC §10.7). */
type StartDrop = (first: {
  pending: PendingUpload;
  filename: string | undefined;
  fieldsSoFar: Record<string, unknown>;
  who: Requester;
}) => DropBuilder;

/** The storage engine failed (ESTORE, see encrypting-store.ts): a 503, never the client's doing. */
const isStoreFailure = (error: unknown) => (error as { code?: unknown } | null)?.code === 'ESTORE';

/** A client that hangs up mid-body is a client abort (400, logged at info), not a server error. */
function clientAborted(req: Request, error: unknown): boolean {
  return !(error instanceof AppError) && !isStoreFailure(error) && !req.complete && (req.destroyed || req.socket.destroyed);
}

/**
 * A raw PUT's body as a stream of its own. The pipeline destroys its source when it fails, and
 * destroying a request closes its socket before it can be answered (a 408, 413, 503 or 507 would
 * never arrive): the body is handed over chunk by chunk instead, only as fast as the pipeline reads
 * it (a body waiting for the KDF stays in the kernel), and only the request's own errors count as a
 * hang-up.
 */
export function requestBody(req: Request) {
  let hungUp = false;
  const source = new Readable({ read: () => void req.resume() });
  // A client may hang up before the pipeline reads `source` (while its keys are derived, say): the
  // error it is destroyed with is the pipeline's to report once it starts, and until then it must not
  // be an unhandled 'error' event, which would end the process.
  source.on('error', () => undefined);
  const onData = (chunk: Buffer) => {
    if (!source.push(chunk)) req.pause();
  };
  const onEnd = () => source.push(null);
  const gone = (error?: Error) => {
    hungUp = true;
    source.destroy(error ?? uploadAborted());
  };
  const onClose = () => {
    if (!req.complete) gone();
  };
  req.on('data', onData).pause();
  req.once('end', onEnd);
  req.once('error', gone);
  req.once('close', onClose);
  return {
    source,
    /** What to answer for a failed upload, once the request is ready for that answer. */
    failed(error: unknown, res: Response): unknown {
      if (hungUp && !(error instanceof AppError) && !isStoreFailure(error)) return uploadAborted();
      req.off('data', onData).off('end', onEnd).off('close', onClose);
      if (error instanceof AppError && error.code === 'UPLOAD_STALLED') {
        // The client sends nothing more: answer now, and close the connection after the answer.
        res.setHeader('Connection', 'close');
      } else {
        // Answer at once and read the rest of the body away, so a client still sending is not cut
        // off (EPIPE) before it reads the answer, and the connection stays usable.
        req.resume();
      }
      return error;
    },
  };
}

/** `curl -T file https://host/upload/`: PUT /upload/<file name>, options in the query. */
export function receiveRaw(receive: Receive) {
  return async (req: Request, res: Response): Promise<ReceivedUpload> => {
    const declared = req.headers['content-length'];
    const fields = req.query as Record<string, unknown>;
    const body = requestBody(req);
    try {
      const pending = await receive({
        source: body.source,
        fieldsSoFar: fields,
        who: requester(req),
        ...(declared !== undefined ? { expectedSize: Number(declared) } : {}),
      });
      return { pending, filename: String(req.params.filename), fields };
    } catch (error) {
      throw body.failed(error, res);
    }
  };
}

/** Errors of our own pipeline travel through multer wrapped, so anything else multer reports is the client's malformed body. */
class EngineFailure extends Error {
  constructor(readonly original: unknown) {
    super('upload engine failure');
  }
}

/** The file parts of one request so far: the first is stored as a single file; a second makes a drop. */
interface Parts {
  first?: Promise<PendingUpload>;
  firstName?: string | undefined;
  drop?: DropBuilder;
}

/**
 * A file part's stream, fed from busboy's only once something reads it. Busboy stops parsing the
 * request when a part's stream holds more than `fileHwm` (1 byte: see receiveMultipart) unread, so a
 * part waiting for its turn in a drop holds the request back in the kernel. Piped at once, every part
 * smaller than the buffers between (~48 KiB) was taken whole while the archive still wrote an earlier
 * entry: up to MAX_FILES_PER_UPLOAD of them in memory at once.
 */
function pipedWhenRead(from: Readable): { stream: PassThrough; drain: () => void } {
  const stream = new PassThrough();
  let started = false;
  const read = stream._read.bind(stream);
  stream._read = (size: number) => {
    if (!started) {
      started = true;
      from.pipe(stream);
    }
    read(size);
  };
  from.on('error', (error) => stream.destroy(error));
  return {
    stream,
    drain: () => {
      started = true; // never piped after this
      from.unpipe(stream);
      from.resume();
    },
  };
}

/** What a file part leaves for `_removeFile` when multer gives up on the request. */
type PartInfo = { pending: PendingUpload } | { drop: DropBuilder };

/**
 * The multer StorageEngine hands each file part's stream straight to the pipeline (encrypting as it
 * streams): no plaintext temp file ever exists. The first part is received as a single upload; a
 * later part turns it into a drop (`startDrop`). Option fields may come before or after the files.
 */
function encryptingEngine(input: {
  receive: Receive;
  startDrop: StartDrop;
  parts: WeakMap<Request, Parts>;
  onFailure: (req: Request, error: unknown) => void;
}): StorageEngine {
  const { receive, startDrop, parts, onFailure } = input;
  return {
    _handleFile(req: Request, file, callback) {
      // Our pipeline reads through its own stream, so its failures (a full disk, a refused type)
      // reach multer only through the callback below, and busboy's own errors still reach us.
      const part = pipedWhenRead(file.stream);
      const source = part.stream;
      let state = parts.get(req);
      if (!state) parts.set(req, (state = {}));
      const current = state;
      let work: Promise<PartInfo>;
      if (!current.first) {
        current.firstName = file.originalname;
        current.first = receive({ source, fieldsSoFar: { ...(req.body as Record<string, unknown>) }, who: requester(req) });
        work = current.first.then((pending) => ({ pending }));
      } else {
        const first = current.first;
        work = (async () => {
          // Parts arrive in order and each waits here for the first: the drop starts from it.
          const pending = await first;
          current.drop ??= startDrop({
            pending,
            filename: current.firstName,
            fieldsSoFar: { ...(req.body as Record<string, unknown>) },
            who: requester(req),
          });
          await current.drop.add({ source, filename: file.originalname });
          return { drop: current.drop };
        })();
      }
      work.then(
        (info) => callback(null, info as unknown as Partial<Express.Multer.File>),
        (error: unknown) => {
          // Drain what is left of this part so busboy can finish the request.
          part.drain();
          onFailure(req, error);
          callback(new EngineFailure(error));
        },
      );
    },
    _removeFile(_req: Request, file, callback) {
      const info = file as unknown as Partial<{ pending: PendingUpload; drop: DropBuilder }>;
      const removal = info.drop?.discard() ?? info.pending?.discard();
      if (!removal) return callback(null);
      removal.then(
        () => callback(null),
        (error: unknown) => callback(error as Error),
      );
    },
  };
}

/** What multer reports: our pipeline's own errors unwrapped, a hang-up as an abort, a parse failure as a malformed body. */
function multipartError(req: Request, error: unknown, maxFiles: number): unknown {
  if (error instanceof EngineFailure) return clientAborted(req, error.original) ? uploadAborted() : error.original;
  if (clientAborted(req, error)) return uploadAborted();
  if (error instanceof multer.MulterError) {
    // More `file` parts than MAX_FILES_PER_UPLOAD: say so, rather than "missing file".
    if (error.code === 'LIMIT_FILE_COUNT' || (error.code === 'LIMIT_UNEXPECTED_FILE' && error.field === 'file')) {
      return validationFailed([{ field: 'file', message: `At most ${maxFiles} files can be sent in one upload.` }]);
    }
    if (error.code === 'LIMIT_UNEXPECTED_FILE') return missingFile(); // a file in another field
    return error; // the error handler maps multer's other limits
  }
  // busboy's own errors (a malformed part header, a missing boundary, a body cut short): the client's fault.
  return validationFailed([{ field: '(body)', message: 'The multipart body could not be read.' }]);
}

/** `POST /upload` with `multipart/form-data`: the browser page and `curl -F` (one file, or several as a drop). */
export function receiveMultipart(receive: Receive, startDrop: StartDrop, limits: { fileSize: number; maxFiles: number }) {
  // Multer answers an error only once the client has sent the rest of its body (no EPIPE for a
  // client still sending). A stalled client sends nothing more: it is answered at once instead.
  const stalled = new WeakMap<Request, (error: unknown) => void>();
  const parts = new WeakMap<Request, Parts>();
  const onFailure = (req: Request, error: unknown) => {
    if (error instanceof AppError && error.code === 'UPLOAD_STALLED') stalled.get(req)?.(error);
  };
  const options: multer.Options & { fileHwm: number } = {
    storage: encryptingEngine({ receive, startDrop, parts, onFailure }),
    // One byte over the limit lets our own pipeline see the overflow and answer 413 itself.
    limits: {
      files: limits.maxFiles,
      fileSize: limits.fileSize + 1,
      fields: 10,
      fieldSize: 1024,
      parts: limits.maxFiles + 11,
      headerPairs: 32,
    },
    // A part's stream that holds anything unread stops busboy (pipedWhenRead): parts wait in the kernel.
    fileHwm: 1,
    defParamCharset: 'utf8',
    // A folder's files arrive with their relative paths as names (photos/2026/a.jpg); a drop keeps them.
    preservePath: true,
  };
  // multer 2.5 passes fileHwm on to busboy; its types do not list it yet.
  const upload = multer(options).array('file', limits.maxFiles);
  return (req: Request, res: Response): Promise<ReceivedUpload> =>
    new Promise((resolve, reject) => {
      stalled.set(req, (error) => {
        res.setHeader('Connection', 'close');
        reject(error);
      });
      upload(req, res, (error: unknown) => {
        if (error) return reject(multipartError(req, error, limits.maxFiles));
        const state = parts.get(req);
        const fields = req.body as Record<string, unknown>;
        if (!state?.first) return reject(missingFile());
        if (state.drop) {
          state.drop.finish().then(({ pending, filename }) => resolve({ pending, filename, fields }), reject);
          return;
        }
        state.first.then((pending) => resolve({ pending, filename: state.firstName, fields }), reject);
      });
    });
}
