/**
 * One error type for everything a client may be told. Features declare their own factories in
 * `<feature>.errors.ts`; the error middleware is the single place that turns errors into the
 * JSON envelope of SPEC §3. `message` is written for the client and must never hold a secret.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: unknown[] | undefined;
  /** Extra fields of the envelope's `error` object (e.g. `reason`, `retry_after_seconds`). */
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(options: {
    code: string;
    status: number;
    message: string;
    details?: unknown[];
    extra?: Record<string, unknown>;
    headers?: Record<string, string>;
    cause?: unknown;
  }) {
    super(options.message, { cause: options.cause });
    this.name = 'AppError';
    this.code = options.code;
    this.status = options.status;
    this.details = options.details;
    this.extra = options.extra ?? {};
    this.headers = options.headers ?? {};
  }
}

export const notFoundRoute = () => new AppError({ code: 'NOT_FOUND', status: 404, message: 'There is nothing at this address.' });

export const validationFailed = (details: { field: string; message: string }[]) =>
  new AppError({ code: 'VALIDATION_FAILED', status: 400, message: 'Some fields are not valid.', details });

export const serviceUnavailable = (cause?: unknown) =>
  new AppError({
    code: 'SERVICE_UNAVAILABLE',
    status: 503,
    message: 'The service is temporarily unavailable. Try again shortly.',
    headers: { 'Retry-After': '5' },
    cause,
  });

export const insufficientStorage = (cause?: unknown) =>
  new AppError({ code: 'INSUFFICIENT_STORAGE', status: 507, message: 'The server has no room for this file right now.', cause });

export const internalError = (cause?: unknown) =>
  new AppError({ code: 'INTERNAL_ERROR', status: 500, message: 'Something went wrong on our side.', cause });

export const rateLimited = (retryAfterSeconds: number, code: 'RATE_LIMITED' | 'IP_BLOCKED' = 'RATE_LIMITED') =>
  new AppError({
    code,
    status: 429,
    message: code === 'IP_BLOCKED' ? 'Too many failed attempts from your network. Try again later.' : 'Too many requests. Try again later.',
    extra: { retry_after_seconds: retryAfterSeconds },
    headers: { 'Retry-After': String(retryAfterSeconds) },
  });
