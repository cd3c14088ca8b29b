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

/** The client as Redis and the logs may know it: keyed hashes only; the raw address only when LOG_IP=full. */
export function countedClient(
  req: Request,
  options: { secret: string; logIp: Config['logIp'] },
): CountedClient & { logFields: Record<string, unknown> } {
  const who = requester(req);
  const id = clientIdOf(options.secret, who.client);
  const logFields = options.logIp === 'full' ? { ip: who.client, client: id } : options.logIp === 'hash' ? { client: id } : {};
  return {
    id,
    aggregateId: clientIdOf(options.secret, who.aggregate),
    countAggregate: who.kind === 'ipv6',
    logFields: { ...logFields, request_id: req.id },
  };
}
