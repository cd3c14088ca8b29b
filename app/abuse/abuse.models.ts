import { createHmac } from 'node:crypto';

/** The keyed hash that stands for a client (an IP, or an IPv6 /64) in Redis, jobs and logs. */
export function clientIdOf(secret: string, client: string): string {
  return createHmac('sha256', secret).update(`client:${client}`).digest('hex').slice(0, 32);
}
