import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import {
  confirmingReplicas,
  createApiRedis,
  createWorkerRedis,
  isRedisUnavailable,
  redisConnectionOptions,
  ReplicationUnconfirmedError,
} from '../../app/shared/redis.js';
import { diskWrites } from '../../workers/redis-persistence.js';
import { problemsOf } from '../helpers/config.js';

describe('Redis configuration: a URL or Sentinel', () => {
  it('reads a sentinel list of host:port items, IPv6 in brackets, blanks around commas ignored', () => {
    const config = loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379, sentinel-b.internal:26380 ,[fd00::3]:26381' });
    expect(config.redisSentinels).toEqual([
      { host: '10.0.0.1', port: 26379 },
      { host: 'sentinel-b.internal', port: 26380 },
      { host: 'fd00::3', port: 26381 },
    ]);
    expect(config.redisSentinelName).toBe('mymaster');
    expect(config.redisUrl).toBeUndefined();
  });

  for (const bad of [
    '10.0.0.1',
    '10.0.0.1:0',
    'host:70000',
    '::1:26379',
    '[not-ipv6]:26379',
    'a:1,,b:2',
    'a:1,a:1',
    'host name:26379',
    ':26379',
    'a:1,',
  ]) {
    it(`refuses REDIS_SENTINELS=${JSON.stringify(bad)} with one line naming it`, () => {
      expect(problemsOf({ REDIS_SENTINELS: bad })).toEqual([expect.stringMatching(/^REDIS_SENTINELS: expected host:port,host:port/)]);
    });
  }

  it('refuses REDIS_URL and REDIS_SENTINELS together, in one line naming both', () => {
    expect(problemsOf({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_SENTINELS: '127.0.0.1:26379' })).toEqual([
      'REDIS_URL, REDIS_SENTINELS: set one or the other, not both (REDIS_SENTINELS finds the primary through Sentinel)',
    ]);
  });

  it('refuses a REDIS_URL that does not parse', () => {
    expect(problemsOf({ REDIS_URL: 'redis://host:99999' })).toEqual([expect.stringMatching(/^REDIS_URL: /)]);
  });

  it('turns Sentinel settings into ioredis sentinel options with both passwords, without the failover detector (see redis.ts)', () => {
    const config = loadConfig({
      REDIS_SENTINELS: '127.0.0.1:26379,[::1]:26380',
      REDIS_SENTINEL_NAME: 'cbx-primary',
      REDIS_SENTINEL_PASSWORD: 'sentinel-pw',
      REDIS_PASSWORD: 'node-pw',
    });
    expect(redisConnectionOptions(config)).toMatchObject({
      sentinels: [
        { host: '127.0.0.1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'cbx-primary',
      sentinelPassword: 'sentinel-pw',
      password: 'node-pw',
      role: 'master',
      failoverDetector: false,
    });
  });

  it('parses every URL scheme the config accepts (ioredis alone reads only redis:// and rediss://)', () => {
    expect(redisConnectionOptions('redis://127.0.0.1:6390/2')).toEqual({ host: '127.0.0.1', port: 6390, db: 2 });
    expect(redisConnectionOptions('valkey://cache.internal')).toEqual({ host: 'cache.internal', port: 6379 });
    expect(redisConnectionOptions('valkeys://user:p%40ss@cache.internal:6380')).toEqual({
      host: 'cache.internal',
      port: 6380,
      username: 'user',
      password: 'p@ss',
      tls: {},
    });
    expect(redisConnectionOptions('rediss://[::1]:6379')).toEqual({ host: '::1', port: 6379, tls: {} });
    expect(redisConnectionOptions('unix:///run/valkey/valkey.sock?db=3')).toEqual({ path: '/run/valkey/valkey.sock', db: 3 });
  });

  it('applies REDIS_PASSWORD to a URL without one, and lets a URL password win', () => {
    expect(redisConnectionOptions(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PASSWORD: 'node-pw' }))).toMatchObject({
      password: 'node-pw',
    });
    expect(redisConnectionOptions(loadConfig({ REDIS_URL: 'redis://:in-url@127.0.0.1:6379', REDIS_PASSWORD: 'node-pw' }))).toMatchObject({
      password: 'in-url',
    });
  });

  it("keeps the Sentinel options and the role's behaviour in duplicate(), which BullMQ uses for a Worker's blocking connection", () => {
    const target = loadConfig({ REDIS_SENTINELS: '127.0.0.1:1', REDIS_SENTINEL_PASSWORD: 'sp', REDIS_PASSWORD: 'np' });
    for (const client of [createWorkerRedis(target, { lazyConnect: true }), createApiRedis(target, { lazyConnect: true })]) {
      const copy = client.duplicate({ connectionName: 'bull:blocking' });
      expect(copy.options).toMatchObject({
        sentinels: [{ host: '127.0.0.1', port: 1 }],
        name: 'mymaster',
        sentinelPassword: 'sp',
        password: 'np',
        connectionName: 'bull:blocking',
      });
      expect(copy.options.reconnectOnError).toBe(client.options.reconnectOnError);
      expect(copy.options.maxRetriesPerRequest).toBe(client.options.maxRetriesPerRequest);
      expect(copy.options.socketTimeout).toBe(client.options.socketTimeout);
      client.disconnect();
      copy.disconnect();
    }
  });

  it('reconnects on READONLY (a demoted primary) and on nothing else', () => {
    const client = createWorkerRedis('redis://127.0.0.1:1', { lazyConnect: true });
    const reconnectOnError = client.options.reconnectOnError!;
    expect(reconnectOnError(new Error("READONLY You can't write against a read only replica."))).toBe(1);
    expect(reconnectOnError(new Error('ERR wrong number of arguments'))).toBe(false);
    client.disconnect();
  });

  it('counts failover errors and an unconfirmed write as "Redis unavailable" (503)', () => {
    expect(isRedisUnavailable(new Error("READONLY You can't write against a read only replica."))).toBe(true);
    expect(isRedisUnavailable(new ReplicationUnconfirmedError(1, 500))).toBe(true);
    // A WAIT blocked on a primary that is demoted (Redis answers every blocked client so).
    expect(
      isRedisUnavailable(new Error('UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)')),
    ).toBe(true);
    expect(isRedisUnavailable(new Error('ERR unknown command'))).toBe(false);
  });
});

describe('replicas that can confirm a write', () => {
  it('are the online ones that have acknowledged the stream, not those still syncing', () => {
    const info = [
      '# Replication',
      'role:master',
      'connected_slaves:3',
      'slave0:ip=10.0.0.2,port=6379,state=online,offset=2907,lag=0',
      'slave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0',
      'slave2:ip=10.0.0.4,port=6379,state=online,offset=0,lag=1',
      'master_repl_offset:2944',
    ].join('\r\n');
    expect(confirmingReplicas(info)).toBe(1);
    expect(confirmingReplicas('# Replication\r\nrole:master\r\nconnected_slaves:0\r\n')).toBe(0);
  });
});

describe('what puts wrapped keys on a disk', () => {
  it('is nothing on a node run as documented', () => {
    const clean = { save: '', appendonly: 'no', 'repl-diskless-sync': 'yes', 'repl-diskless-load': 'on-empty-db' };
    expect(diskWrites('primary', clean)).toEqual([]);
    expect(diskWrites('replica', clean)).toEqual([]);
  });

  it('is RDB snapshots, the AOF, disk-based sync on a primary and disk-based load on a replica', () => {
    expect(
      diskWrites('primary', { save: '3600 1 300 100', appendonly: 'yes', 'repl-diskless-sync': 'no', 'repl-diskless-load': 'disabled' }),
    ).toEqual(['save "3600 1 300 100"', 'appendonly yes', 'repl-diskless-sync no']);
    expect(diskWrites('replica', { save: '', appendonly: 'no', 'repl-diskless-sync': 'no', 'repl-diskless-load': 'disabled' })).toEqual([
      'repl-diskless-load disabled',
    ]);
  });
});
