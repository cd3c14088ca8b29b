import express, { type Request, type RequestHandler } from 'express';

/** What every route that takes a passphrase runs around its use case (SPEC §4.6). */
export interface KeyRouteGuards {
  /** Before any KDF work: IP blocks, then the lookup rate limit. */
  before: RequestHandler[];
  /** Counts a lookup that matched no file against the client. */
  recordFailure: (req: Request) => Promise<void>;
}

/** Small JSON or form bodies carrying `key`: the pages post the key, so it never sits in a URL. */
export const smallBody = [express.urlencoded({ extended: false, limit: '2kb' }), express.json({ limit: '2kb' })];

export function keyFromBody(req: Request): unknown {
  const body = req.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body.key : undefined;
}
