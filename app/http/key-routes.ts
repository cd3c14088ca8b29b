import express, { type Request, type RequestHandler, type Response } from 'express';

/** What every route that takes a passphrase runs around its use case (SPEC §4.6, §10.4). */
export interface KeyRouteGuards {
  /** Before any KDF work: blocks, the lookup rate limit, then a slot of the failure budget. */
  before: RequestHandler[];
  /** Blocks and the lookup rate limit only: for routes that do no KDF work (a download ticket's GET). */
  throttle: RequestHandler[];
  /** The lookup's outcome: a key that matched nothing (`miss`) counts against the client. */
  settle: (res: Response, outcome: 'hit' | 'miss') => Promise<void>;
}

/** Small JSON or form bodies carrying `key`: the pages post the key, so it never sits in a URL. */
export const smallBody = [express.urlencoded({ extended: false, limit: '2kb' }), express.json({ limit: '2kb' })];

export function keyFromBody(req: Request): unknown {
  const body = req.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body.key : undefined;
}
