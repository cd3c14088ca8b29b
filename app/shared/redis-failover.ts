import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Redis } from 'ioredis';
import type { RedisTarget } from './redis.js';

/**
 * Moves a client off a primary that Sentinel has just replaced, while that primary is still alive
 * (a planned `SENTINEL FAILOVER`, or a partition that heals). Sentinel turns the old primary into
 * a replica, and so disconnects its clients, only when it reconverts it, about 8 s after the
 * switch; until then the old primary still answers as a primary, with no replica, and every write
 * it takes (an upload the API would acknowledge) is lost when it resyncs. So: listen for
 * +switch-master on every sentinel, and drop a client's connection while it is not on the new
 * primary (by address: a host name Sentinel announces is resolved); the reconnect asks Sentinel
 * again. It touches only clients that are `ready`, unlike
 * ioredis's own failoverDetector, which ends a client for good when the switch arrives between
 * two reconnect attempts (see redis.ts).
 */

/** How long after a switch a client found elsewhere than the new primary is moved again. */
const FOLLOW_MS = 15_000;

interface Switch {
  host: string;
  port: number;
  until: number;
}

/** dns.lookup with `all: true`, injectable for tests. */
export type LookupAll = (host: string) => Promise<{ address: string }[]>;

const lookupAll: LookupAll = (host) => lookup(host, { all: true });

/** `::ffff:10.0.0.5` (a dual-stack socket's IPv4 peer) is 10.0.0.5; IPv6 text compared in lower case. */
const canonical = (address: string) => address.replace(/^::ffff:(?=\d+\.)/i, '').toLowerCase();

function peerOf(client: Redis): { host: string; port: number } | null {
  const stream = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  if (stream?.remoteAddress === undefined || stream.remotePort === undefined) return null;
  return { host: canonical(stream.remoteAddress), port: stream.remotePort };
}

/**
 * The addresses a switch's new primary may be reached at: the announced IP, or every address of the
 * announced host name (announce-hostnames, docs/OPERATIONS.md: in containers every node is on 6379,
 * so the port alone tells nothing). Empty when the name does not resolve.
 */
async function addressesOf(host: string, resolve: LookupAll): Promise<string[]> {
  if (isIP(host) !== 0) return [canonical(host)];
  try {
    return (await resolve(host)).map((a) => canonical(a.address));
  } catch {
    return [];
  }
}

/**
 * What follows +switch-master for one client: `onSwitch` takes a sentinel's message, and each
 * `ready` of the client is checked too. A client is left alone only when its peer is known to be the
 * new primary; when that cannot be told (a name that does not resolve) it is moved, since a
 * reconnect asks Sentinel again and is safe. Resolves once the client is checked (tests await it).
 */
export function switchFollower(
  client: Redis,
  options: { name: string; now?: () => number; lookup?: LookupAll },
): { onSwitch(message: string): Promise<void> } {
  const now = options.now ?? Date.now;
  const resolve = options.lookup ?? lookupAll;
  let expected: Switch | null = null;

  const move = async () => {
    const target = expected;
    if (target === null || now() > target.until || client.status !== 'ready') return;
    const addresses = await addressesOf(target.host, resolve);
    // Read after the lookup: the client may have moved (or reconnected) meanwhile.
    if (expected !== target || client.status !== 'ready') return;
    const peer = peerOf(client);
    const on = peer !== null && peer.port === target.port && addresses.includes(peer.host);
    if (!on) client.disconnect(true);
  };

  // A reconnect may still land on the old primary (a sentinel that has not heard of the switch).
  client.on('ready', () => void move());

  return {
    onSwitch(message: string) {
      // "<master name> <old ip> <old port> <new ip> <new port>"; ip may be a host name.
      const [master, , , host, port] = message.split(' ');
      if (master !== options.name || host === undefined || port === undefined) return Promise.resolve();
      expected = { host, port: Number(port), until: now() + FOLLOW_MS };
      return move();
    },
  };
}

/** Follows +switch-master for `client` until it ends; a no-op without Sentinel. */
export function followSentinelSwitches(client: Redis, target: RedisTarget, options: { now?: () => number; lookup?: LookupAll } = {}): void {
  if (target.redisSentinels === undefined || target.redisSentinels.length === 0) return;
  const follower = switchFollower(client, { ...options, name: target.redisSentinelName ?? 'mymaster' });

  const subscribers = target.redisSentinels.map((sentinel) => {
    const subscriber = new Redis({
      host: sentinel.host,
      port: sentinel.port,
      ...(target.redisSentinelPassword !== undefined ? { password: target.redisSentinelPassword } : {}),
      // A sentinel that is down is retried quietly: the others still report switches.
      retryStrategy: (attempt) => Math.min(attempt * 500, 5_000),
      maxRetriesPerRequest: null,
      enableReadyCheck: false,
      connectionName: 'cbx-switch-follower',
    });
    subscriber.on('error', () => undefined);
    subscriber.on('message', (_channel: string, message: string) => void follower.onSwitch(message));
    subscriber.subscribe('+switch-master').catch(() => undefined);
    return subscriber;
  });

  client.once('end', () => {
    for (const subscriber of subscribers) subscriber.disconnect();
  });
}
