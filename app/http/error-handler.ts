import type { ErrorRequestHandler, Request, Response } from 'express';
import multer from 'multer';
import { ZodError } from 'zod';
import type { Logger } from '../shared/logger.js';
import { AppError, internalError, notFoundRoute, validationFailed } from './errors.js';
import { isRedisOutOfMemory, isRedisUnavailable } from '../shared/redis.js';
import { insufficientStorage, serviceUnavailable } from './errors.js';

/** Turns a ZodError into our `details[]`: field paths and messages, never the rejected values. */
export function zodDetails(error: ZodError): { field: string; message: string }[] {
  return error.issues.map((issue) => ({ field: issue.path.join('.') || '(body)', message: issue.message }));
}

function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof ZodError) return validationFailed(zodDetails(error));
  if (error instanceof multer.MulterError) {
    if (error.code === 'LIMIT_FILE_SIZE') return new AppError({ code: 'FILE_TOO_LARGE', status: 413, message: 'The file is larger than this server accepts.' });
    if (error.code === 'LIMIT_UNEXPECTED_FILE' || error.code === 'LIMIT_FILE_COUNT')
      return new AppError({ code: 'MISSING_FILE', status: 400, message: 'Send exactly one file, in the field "file".' });
    return validationFailed([{ field: error.field ?? '(body)', message: error.message }]);
  }
  if (isRedisUnavailable(error)) return serviceUnavailable(error);
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

export function sendError(req: Request, res: Response, appError: AppError): void {
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

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const appError = toAppError(error);
    if (appError.status >= 500) {
      const cause = appError.cause ?? error;
      const event = appError.code === 'SERVICE_UNAVAILABLE' ? 'redis_unavailable' : isRedisOutOfMemory(cause) ? 'redis_out_of_memory' : 'request_failed';
      log.error(event, {
        request_id: req.id,
        code: appError.code,
        error: cause instanceof Error ? { name: cause.name, message: cause.message, stack: cause.stack } : String(cause),
      });
    }
    res.locals.logFields = { ...res.locals.logFields, error_code: appError.code };
    sendError(req, res, appError);
  };
}

export function notFoundHandler() {
  return (_req: Request, _res: Response, next: (err: unknown) => void) => next(notFoundRoute());
}
