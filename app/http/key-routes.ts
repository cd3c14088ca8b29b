import express, { type Request, type RequestHandler, type Response } from 'express';
import { AppError } from './errors.js';

/** What every route that takes a passphrase runs around its use case (SPEC §4.6, §10.4). */
export interface KeyRouteGuards {
  /** Before any KDF work: blocks, the lookup rate limit, then a slot of the failure budget. */
  before: RequestHandler[];
  /** Blocks and the lookup rate limit only: for routes that do no KDF work (a download ticket's GET). */
  throttle: RequestHandler[];
  /** The lookup's outcome: a key that matched nothing (`miss`) counts against the client. */
  settle: (res: Response, outcome: 'hit' | 'miss') => Promise<void>;
  /** Reads a route's small body (`smallBody`), before the guards: it must arrive whole in time. */
  body: RequestHandler;
}

/** The longest a key route's small body may take to arrive; less when UPLOAD_STALL_SECONDS is shorter. */
const SMALL_BODY_MAX_MS = 10_000;

export const smallBodyDeadlineMs = (uploadStallSeconds: number) => Math.min(uploadStallSeconds * 1000, SMALL_BODY_MAX_MS);

const bodyTimedOut = () =>
  new AppError({
    code: 'REQUEST_TIMEOUT',
    status: 408,
    message: 'The request body did not arrive in time.',
    headers: { Connection: 'close' },
  });

const declaresBody = (req: Request) =>
  req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

/** Small JSON or form bodies carrying `key`: the pages post the key, so it never sits in a URL. */
const parsers: RequestHandler[] = [express.urlencoded({ extended: false, limit: '2kb' }), express.json({ limit: '2kb' })];

/**
 * Reads a small body (2 KiB at most) that must arrive whole within `deadlineMs`. It is read before
 * any limiter can count the request, so without a deadline of its own a body trickled a byte at a
 * time would hold its socket as long as the largest upload may take (a slowloris past every limit):
 * instead the client gets a 408 and the connection is closed.
 */
export function smallBody(deadlineMs: number): RequestHandler {
  return (req, res, next) => {
    let settled = false;
    const done = (error?: unknown) => {
      if (settled) return; // the parser's own outcome after the deadline's 408 (the socket's close)
      settled = true;
      clearTimeout(timer);
      // A body the parsers left unread (another Content-Type, a charset they refuse): Node would read
      // it away after the answer, on a kept-alive socket, as slowly as the client sends it. So the
      // answer closes the connection instead.
      if (declaresBody(req) && !req.complete && !res.headersSent) res.setHeader('Connection', 'close');
      next(error);
    };
    const timer = setTimeout(() => done(bodyTimedOut()), deadlineMs);
    const parse = (index: number) => (error?: unknown) => {
      if (error !== undefined || index === parsers.length) return done(error);
      parsers[index]!(req, res, parse(index + 1));
    };
    parse(0)();
  };
}

export function keyFromBody(req: Request): unknown {
  const body = req.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body.key : undefined;
}
