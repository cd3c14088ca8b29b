import { PassThrough, type Readable } from 'node:stream';
import type { Request, Response } from 'express';
import multer, { type StorageEngine } from 'multer';
import type { PendingUpload } from '../uploads/uploads.usecases.js';
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

export type Receive = (body: { source: Readable; fieldsSoFar: Record<string, unknown>; expectedSize?: number; who: Requester }) => Promise<PendingUpload>;

/** A client that hangs up mid-body is a client abort (400, logged at info), not a server error. */
function clientAborted(req: Request, error: unknown): boolean {
  return !(error instanceof AppError) && !req.complete && (req.destroyed || req.socket.destroyed);
}

/** `curl -T file https://host/upload/`: PUT /upload/<file name>, options in the query. */
export function receiveRaw(receive: Receive) {
  return async (req: Request): Promise<ReceivedUpload> => {
    const declared = req.headers['content-length'];
    const fields = req.query as Record<string, unknown>;
    try {
      const pending = await receive({ source: req, fieldsSoFar: fields, who: requester(req), ...(declared !== undefined ? { expectedSize: Number(declared) } : {}) });
      return { pending, filename: String(req.params.filename), fields };
    } catch (error) {
      throw clientAborted(req, error) ? uploadAborted() : error;
    }
  };
}

/** Errors of our own pipeline travel through multer wrapped, so anything else multer reports is the client's malformed body. */
class EngineFailure extends Error {
  constructor(readonly original: unknown) {
    super('upload engine failure');
  }
}

/**
 * The multer StorageEngine hands the file part's stream straight to `receive` (encrypting as it
 * streams): no plaintext temp file ever exists. One `file` part; option fields may come before or
 * after it.
 */
function encryptingEngine(receive: Receive, onFailure: (req: Request, error: unknown) => void): StorageEngine {
  return {
    _handleFile(req: Request, file, callback) {
      // Our pipeline reads through its own stream, so its failures (a full disk, a refused type)
      // reach multer only through the callback below, and busboy's own errors still reach us.
      const source = new PassThrough();
      file.stream.on('error', (error) => source.destroy(error));
      file.stream.pipe(source);
      receive({ source, fieldsSoFar: { ...(req.body as Record<string, unknown>) }, who: requester(req) }).then(
        (pending) => callback(null, { pending } as unknown as Partial<Express.Multer.File>),
        (error: unknown) => {
          // Drain what is left of this part so busboy can finish the request.
          file.stream.unpipe(source);
          file.stream.resume();
          onFailure(req, error);
          callback(new EngineFailure(error));
        },
      );
    },
    _removeFile(_req: Request, file, callback) {
      const pending = (file as unknown as { pending?: PendingUpload }).pending;
      if (!pending) return callback(null);
      pending.discard().then(() => callback(null), (error: unknown) => callback(error as Error));
    },
  };
}

/** What multer reports: our pipeline's own errors unwrapped, a hang-up as an abort, a parse failure as a malformed body. */
function multipartError(req: Request, error: unknown): unknown {
  if (error instanceof EngineFailure) return clientAborted(req, error.original) ? uploadAborted() : error.original;
  if (clientAborted(req, error)) return uploadAborted();
  if (error instanceof multer.MulterError) return error; // the error handler maps multer's limits
  // busboy's own errors (a malformed part header, a missing boundary, a body cut short): the client's fault.
  return validationFailed([{ field: '(body)', message: 'The multipart body could not be read.' }]);
}

/** `POST /upload` with `multipart/form-data`: the browser page and `curl -F`. */
export function receiveMultipart(receive: Receive, limits: { fileSize: number }) {
  // Multer answers an error only once the client has sent the rest of its body (no EPIPE for a
  // client still sending). A stalled client sends nothing more: it is answered at once instead.
  const stalled = new WeakMap<Request, (error: unknown) => void>();
  const onFailure = (req: Request, error: unknown) => {
    if (error instanceof AppError && error.code === 'UPLOAD_STALLED') stalled.get(req)?.(error);
  };
  const upload = multer({
    storage: encryptingEngine(receive, onFailure),
    // One byte over the limit lets our own pipeline see the overflow and answer 413 itself.
    limits: { files: 1, fileSize: limits.fileSize + 1, fields: 10, fieldSize: 1024, parts: 12, headerPairs: 32 },
    defParamCharset: 'utf8',
  }).single('file');
  return (req: Request, res: Response): Promise<ReceivedUpload> =>
    new Promise((resolve, reject) => {
      stalled.set(req, (error) => {
        res.setHeader('Connection', 'close');
        reject(error);
      });
      upload(req, res, (error: unknown) => {
        if (error) return reject(multipartError(req, error));
        const file = req.file as (Express.Multer.File & { pending?: PendingUpload }) | undefined;
        if (!file?.pending) return reject(missingFile());
        resolve({ pending: file.pending, filename: file.originalname, fields: req.body as Record<string, unknown> });
      });
    });
}
