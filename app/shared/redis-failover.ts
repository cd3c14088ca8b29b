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
 * primary; the reconnect asks Sentinel again. It touches only clients that are `ready`, unlike
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

function peerOf(client: Redis): { host: string; port: number } | null {
  const stream = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  if (stream?.remoteAddress === undefined || stream.remotePort === undefined) return null;
  return { host: stream.remoteAddress.replace(/^::ffff:/, ''), port: stream.remotePort };
}

/** Sentinel may announce a host name: then only the port can be compared. */
function isOn(client: Redis, target: { host: string; port: number }): boolean {
  const peer = peerOf(client);
  if (peer === null) return false;
  return peer.port === target.port && (isIP(target.host) === 0 || peer.host === target.host);
}

/** Follows +switch-master for `client` until it ends; a no-op without Sentinel. */
export function followSentinelSwitches(client: Redis, target: RedisTarget, now: () => number = Date.now): void {
  if (target.redisSentinels === undefined || target.redisSentinels.length === 0) return;
  const name = target.redisSentinelName ?? 'mymaster';
  let expected: Switch | null = null;

  const move = () => {
    if (expected === null || now() > expected.until || client.status !== 'ready') return;
    if (!isOn(client, expected)) client.disconnect(true);
  };

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
    subscriber.on('message', (_channel: string, message: string) => {
      // "<master name> <old ip> <old port> <new ip> <new port>"
      const [master, , , host, port] = message.split(' ');
      if (master !== name || host === undefined || port === undefined) return;
      expected = { host, port: Number(port), until: now() + FOLLOW_MS };
      move();
    });
    subscriber.subscribe('+switch-master').catch(() => undefined);
    return subscriber;
  });

  // A reconnect may still land on the old primary (a sentinel that has not heard of the switch).
  client.on('ready', move);
  client.once('end', () => {
    for (const subscriber of subscribers) subscriber.disconnect();
  });
}
