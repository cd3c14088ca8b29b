import type { Redis } from 'ioredis';

/**
 * A key that holds its owner's value (a lock's holder id, a heartbeat's last beat) is extended or
 * removed only while it still holds that value: the check and the change are one step, so a process
 * never extends or removes what another one wrote in between.
 */
const EXTEND_IF_HELD = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const DELETE_IF_HELD = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** True when the key still held `value` and now lives `ttlMs` more. */
export async function extendIfHeld(redis: Pick<Redis, 'eval'>, key: string, value: string, ttlMs: number): Promise<boolean> {
  return (await redis.eval(EXTEND_IF_HELD, 1, key, value, String(ttlMs))) === 1;
}

/** True when the key still held `value` and is now gone. */
export async function deleteIfHeld(redis: Pick<Redis, 'eval'>, key: string, value: string): Promise<boolean> {
  return (await redis.eval(DELETE_IF_HELD, 1, key, value)) === 1;
}
