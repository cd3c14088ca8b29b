import type { ErrorRequestHandler, Request, Response } from 'express';
import multer from 'multer';
import { ZodError } from 'zod';
import { errorDetailsForLog, errorForLog, type Logger } from '../shared/logger.js';
import { AppError, internalError, notFoundRoute, validationFailed } from './errors.js';
import { isRedisOutOfMemory, isRedisUnavailable } from '../shared/redis.js';
import { insufficientStorage, serviceUnavailable } from './errors.js';
import { isIntegrityCheckFailed, isKdfBusy } from '../crypto/crypto.errors.js';

/** Turns a ZodError into our `details[]`: field paths and messages, never the rejected values. */
export function zodDetails(error: ZodError): { field: string; message: string }[] {
  return error.issues.map((issue) => ({ field: issue.path.join('.') || '(body)', message: issue.message }));
}

/**
 * The crypto layer's errors know nothing of HTTP; this is where they get a status. The client sees one
 * generic message per code (never the failure reason); the original error stays the cause, for the log.
 */
export function cryptoErrorToAppError(error: unknown): AppError | undefined {
  if (isIntegrityCheckFailed(error)) {
    return new AppError({
      code: 'INTEGRITY_CHECK_FAILED',
      status: 500,
      message: 'The stored file failed its integrity check.',
      cause: error,
    });
  }
  if (isKdfBusy(error)) {
    return new AppError({
      code: 'SERVICE_UNAVAILABLE',
      status: 503,
      message: 'The service is temporarily unavailable. Try again shortly.',
      headers: { 'Retry-After': String(error.retryAfterSeconds) },
      cause: error,
    });
  }
  return undefined;
}

/**
 * The storage engine failed or refused (code ESTORE: an s3 request, or any failure of the fs engine's
 * medium during an upload, see encrypting-store.ts): SPEC §3's 503 for "storage unreachable", with
 * Retry-After like a Redis outage. A full medium is a 507 already (INSUFFICIENT_STORAGE).
 */
export function isStorageUnavailable(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ESTORE';
}

function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const fromCrypto = cryptoErrorToAppError(error);
  if (fromCrypto) return fromCrypto;
  if (error instanceof ZodError) return validationFailed(zodDetails(error));
  if (error instanceof multer.MulterError) {
    if (error.code === 'LIMIT_FILE_SIZE')
      return new AppError({ code: 'FILE_TOO_LARGE', status: 413, message: 'The file is larger than this server accepts.' });
    if (error.code === 'LIMIT_UNEXPECTED_FILE' || error.code === 'LIMIT_FILE_COUNT')
      return new AppError({ code: 'MISSING_FILE', status: 400, message: 'Send exactly one file, in the field "file".' });
    return validationFailed([{ field: error.field ?? '(body)', message: error.message }]);
  }
  if (isRedisUnavailable(error) || isStorageUnavailable(error)) return serviceUnavailable(error);
  // Redis at maxmemory with noeviction refuses writes: a capacity problem, like a full disk.
  if (isRedisOutOfMemory(error)) return insufficientStorage(error);
  const status = (error as { status?: unknown; type?: unknown } | null)?.status;
  // body-parser's own errors (bad JSON, too large) carry a 4xx status and a safe type.
  if (typeof status === 'number' && status >= 400 && status < 500) {
    if (status === 413) return new AppError({ code: 'PAYLOAD_TOO_LARGE', status: 413, message: 'The request body is too large.' });
    return new AppError({ code: 'BAD_REQUEST', status, message: 'The request could not be read.' });
  }
  return internalError(error);
}

function sendError(req: Request, res: Response, appError: AppError): void {
  if (res.headersSent) {
    // Mid-stream failures cannot change the status: cut the connection so the client sees a failure.
    res.destroy();
    return;
  }
  for (const [name, value] of Object.entries(appError.headers)) res.setHeader(name, value);
  res.setHeader('Cache-Control', 'no-store');
  res.status(appError.status).json({
    error: {
      code: appError.code,
      message: appError.message,
      request_id: req.id,
      ...appError.extra,
      ...(appError.details ? { details: appError.details } : {}),
    },
  });
}

/**
 * Lines that every request repeats while one cause lasts: a full KDF queue (an overload an attacker
 * can cause at will), Redis or the storage away, Redis full. At most one of each per second, with
 * `suppressed` counting the lines left out since the last; a bug's `request_failed` is never sampled.
 */
const SAMPLED_LOG_INTERVAL_MS = 1000;

export function errorHandler(log: Logger, options: { now?: () => number } = {}): ErrorRequestHandler {
  const now = options.now ?? Date.now;
  const last = new Map<string, { at: number; suppressed: number }>();
  const sampled = (event: string, emit: (suppressed: number) => void) => {
    const seen = last.get(event) ?? { at: -Infinity, suppressed: 0 };
    last.set(event, seen);
    if (now() - seen.at < SAMPLED_LOG_INTERVAL_MS) {
      seen.suppressed += 1;
      return;
    }
    emit(seen.suppressed);
    seen.at = now();
    seen.suppressed = 0;
  };

  return (error: unknown, req, res, _next) => {
    const appError = toAppError(error);
    if (isKdfBusy(error)) {
      // warn and no stack: it is load, not a fault.
      sampled('kdf_busy', (suppressed) => log.warn('kdf_busy', { request_id: req.id, code: 'SERVICE_UNAVAILABLE', suppressed }));
    } else if (appError.status >= 500) {
      const cause = appError.cause ?? error;
      const event = isStorageUnavailable(cause)
        ? 'storage_unavailable'
        : appError.code === 'SERVICE_UNAVAILABLE'
          ? 'redis_unavailable'
          : isRedisOutOfMemory(cause)
            ? 'redis_out_of_memory'
            : 'request_failed';
      // Through errorForLog, like the worker's lines: an fs error's message names its path, and so the blob id.
      const fields = {
        request_id: req.id,
        code: appError.code,
        error: cause instanceof Error ? errorDetailsForLog(cause) : errorForLog(cause),
      };
      if (event === 'request_failed') log.error(event, fields);
      else sampled(event, (suppressed) => log.error(event, { ...fields, suppressed }));
    }
    res.locals.logFields = { ...res.locals.logFields, error_code: appError.code };
    sendError(req, res, appError);
  };
}

export function notFoundHandler() {
  return (_req: Request, _res: Response, next: (err: unknown) => void) => next(notFoundRoute());
}
