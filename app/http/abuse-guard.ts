import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { reserveLookup, settleLookup, type AbuseDeps } from '../abuse/abuse.usecases.js';
import type { Config } from '../config.js';
import { countedClient } from './client.js';
import { rateLimited } from './errors.js';
import { isRedisOutOfMemory } from '../shared/redis.js';

declare module 'express-serve-static-core' {
  interface Locals {
    /** This request's failed-lookup slot, settled once with the lookup's outcome. */
    lookupSlot?: { settle(outcome: 'hit' | 'miss'): Promise<void> };
  }
}

/**
 * The HTTP side of brute-force accounting (SPEC §4.6, §10.4): a blocked client is refused before
 * any other work; every lookup then holds a slot of its client's failure budget from before its KDF
 * work until its outcome is known, so concurrent guesses are counted as they start, not as they end.
 */
export function createAbuseGuard(deps: AbuseDeps & { secret: string; config: Pick<Config, 'logIp'> }) {
  const client = (req: Request) => countedClient(req, { secret: deps.secret, logIp: deps.config.logIp });

  /** First on every key route: cheap, before the rate limiter counts the request. */
  const blockGuard: RequestHandler = (req: Request, _res: Response, next: NextFunction) => {
    deps.abuse.blockedFor(client(req)).then(
      (ms) => (ms > 0 ? next(rateLimited(Math.ceil(ms / 1000), 'IP_BLOCKED')) : next()),
      (error: unknown) => next(error),
    );
  };

  /** Last before the KDF: takes the slot, atomically with the block check. */
  const reserveSlot: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const who = client(req);
    reserveLookup(deps, who).then(
      (reservation) => {
        if (reservation.kind === 'blocked') return next(rateLimited(Math.ceil(reservation.ms / 1000), 'IP_BLOCKED'));
        // Every slot is taken by lookups still running: try again in a moment.
        if (reservation.kind === 'full') return next(rateLimited(1));
        let settled: Promise<void> | null = null;
        const settle = (outcome: 'hit' | 'miss') => (settled ??= settleLookup(deps, who, reservation.slot, outcome));
        const giveBack = () => void settle('hit').catch(() => undefined);
        // The client hung up while the slot was being reserved: its 'close' has been emitted already
        // and would never come again. Give the slot back now, and do no KDF work for nobody (nor any
        // side effect of a lookup whose answer no one would read).
        if (res.closed || req.socket.destroyed) {
          deps.log.info('lookup_not_started', { reason: 'client_gone', request_id: req.id });
          return giveBack();
        }
        res.locals.lookupSlot = { settle };
        // A lookup that ends without an outcome (an error, a client gone) gives its slot back.
        res.once('close', giveBack);
        next();
      },
      (error: unknown) => {
        // Redis full (maxmemory, noeviction) refuses the count's write: let the lookup through
        // uncounted, as the rate limiter does, so reads keep working (docs/FAULTS.md). The KDF cost
        // still bounds what a guesser gains meanwhile.
        if (!isRedisOutOfMemory(error)) return next(error);
        deps.log.warn('lookup_not_counted', { reason: 'redis_out_of_memory' });
        next();
      },
    );
  };

  /** The lookup's outcome, from the route: a miss counts, anything else gives the slot back. */
  const settle = async (res: Response, outcome: 'hit' | 'miss') => {
    await res.locals.lookupSlot?.settle(outcome);
  };

  return { blockGuard, reserveSlot, settle };
}
