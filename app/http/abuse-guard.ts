import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { clientIdOf } from '../abuse/abuse.models.js';
import { recordFailedLookup, type AbuseDeps } from '../abuse/abuse.usecases.js';
import type { Config } from '../config.js';
import { rateLimited } from './errors.js';
import { clientKey } from './rate-limit.js';

/** The HTTP side of brute-force accounting: who the client is, the block check, the failure count. */
export function createAbuseGuard(deps: AbuseDeps & { secret: string; config: Pick<Config, 'logIp'> }) {
  const client = (req: Request) => {
    const key = clientKey(req);
    const id = clientIdOf(deps.secret, key);
    const ip = deps.config.logIp === 'full' ? { ip: key } : deps.config.logIp === 'hash' ? { ip_hash: id } : {};
    return { id, logFields: { ...ip, client: id, request_id: req.id } };
  };

  /** Every key-taking route: a blocked client gets 429 IP_BLOCKED before any other work. */
  const blockGuard: RequestHandler = (req: Request, _res: Response, next: NextFunction) => {
    deps.abuse.blockedFor(client(req).id).then(
      (ms) => (ms > 0 ? next(rateLimited(Math.ceil(ms / 1000), 'IP_BLOCKED')) : next()),
      (error: unknown) => next(error),
    );
  };

  return { blockGuard, recordFailure: (req: Request) => recordFailedLookup(deps, client(req)) };
}

export type AbuseGuard = ReturnType<typeof createAbuseGuard>;
