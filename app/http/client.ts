import type { Request } from 'express';
import { clientIdOf } from '../abuse/abuse.models.js';
import { clientIdentity, type ClientIdentity } from '../abuse/client.models.js';
import type { CountedClient } from '../abuse/abuse.repository.js';
import type { Config } from '../config.js';

/**
 * Who a request comes from: the socket address, or the one a trusted proxy reports (Express's
 * `req.ip` under TRUST_PROXY, never `true`), IPv6 per /64, with its /24 or /48 aggregate.
 */
export function requester(req: Pick<Request, 'ip' | 'socket'>): ClientIdentity {
  return clientIdentity(req.ip ?? req.socket.remoteAddress);
}

/**
 * The client as Redis and the logs may know it: keyed hashes only; the raw address only when LOG_IP=full.
 * `aggregateLogFields` name the client's IPv6 /48 the same way (its hash is what a block of the /48
 * is listed and lifted by: `admin blocks`, `admin unblock`).
 */
export function countedClient(req: Request, options: { secret: string; logIp: Config['logIp'] }): LoggedClient {
  const who = requester(req);
  const id = clientIdOf(options.secret, who.client);
  const aggregateId = clientIdOf(options.secret, who.aggregate);
  const fields = (ip: string, hash: string) =>
    options.logIp === 'full' ? { ip, client: hash } : options.logIp === 'hash' ? { client: hash } : {};
  return {
    id,
    aggregateId,
    countAggregate: who.kind === 'ipv6',
    logFields: { ...fields(who.client, id), request_id: req.id },
    aggregateLogFields: { ...fields(who.aggregate, aggregateId), request_id: req.id },
  };
}

export type LoggedClient = CountedClient & { logFields: Record<string, unknown>; aggregateLogFields: Record<string, unknown> };
