/**
 * Configuration that used to pass loadConfig and then failed, or opened a hole, later (SPEC §6: a bad
 * value is one line naming the variable, exit 78). TRUST_PROXY: Express compiles it only when the app
 * is built, after Redis is up, so a prefix it refuses was a stack trace and exit 1; a list that trusts
 * every address let any client choose its own address in X-Forwarded-For. KDF_CONCURRENCY: scrypt
 * shares libuv's pool with file I/O.
 */
import express from 'express';
import { describe, expect, it } from 'vitest';
import { loadConfig, MAX_TRUST_PROXY_HOPS, threadPoolSize } from '../../app/config.js';
import { problemsOf } from '../helpers/config.js';

const namesTrustProxy = [expect.stringMatching(/^TRUST_PROXY: /)];

describe('TRUST_PROXY', () => {
  it.each([
    ['an IPv4 prefix over 32', '10.0.0.0/33'],
    ['an IPv6 prefix over 128', '::/129'],
    ['an IPv6 prefix over 128 in a list', 'loopback, 2001:db8::/200'],
    ['IPv4 /0', '0.0.0.0/0'],
    ['IPv6 /0', '::/0'],
    ['all of IPv4 in two halves', '0.0.0.0/1,128.0.0.0/1'],
    ['all of IPv6 in two halves', '::/1, 8000::/1'],
    ['an IPv4 network wider than /8', '10.0.0.0/7'],
    ['an IPv6 network wider than /16', '2000::/3'],
    ['every IPv4 client, as a mapped IPv6 network', '::ffff:0:0/96'],
    ['an address that is not one', '10.0.0'],
    ['a hop count past the cap', String(MAX_TRUST_PROXY_HOPS + 1)],
    ['a huge hop count', '4294967295'],
  ])('refuses %s with one line naming the variable (%s)', (_what, value) => {
    expect(problemsOf({ TRUST_PROXY: value })).toEqual(namesTrustProxy);
  });

  it.each([
    '0',
    '1',
    String(MAX_TRUST_PROXY_HOPS),
    'loopback',
    'loopback, linklocal, uniquelocal',
    '10.0.0.0/8',
    '172.16.0.0/12, 192.168.0.1',
    '100.64.0.0/10',
    '::1',
    '2001:db8::/32',
    'fc00::/7',
    'fe80::/10',
    '::ffff:10.0.0.0/104',
  ])('accepts %s, and Express compiles what it returns', (value) => {
    const { trustProxy } = loadConfig({ TRUST_PROXY: value });
    expect(trustProxy).toBeDefined();
    expect(() => express().set('trust proxy', trustProxy)).not.toThrow();
  });
});

describe('KDF_CONCURRENCY', () => {
  it("is at most libuv's pool less one: 3 of the default 4 threads", () => {
    expect(threadPoolSize(undefined)).toBe(4);
    expect(loadConfig({ KDF_CONCURRENCY: '3' }).kdfConcurrency).toBe(3);
    expect(problemsOf({ KDF_CONCURRENCY: '4' })).toEqual([expect.stringMatching(/^KDF_CONCURRENCY: expected at most 3\b/)]);
    expect(problemsOf({ KDF_CONCURRENCY: '20' })).toEqual([expect.stringMatching(/^KDF_CONCURRENCY: /)]);
  });

  it('follows UV_THREADPOOL_SIZE as libuv reads it', () => {
    expect(loadConfig({ KDF_CONCURRENCY: '7', UV_THREADPOOL_SIZE: '8' }).kdfConcurrency).toBe(7);
    expect(problemsOf({ KDF_CONCURRENCY: '8', UV_THREADPOOL_SIZE: '8' })).toEqual([expect.stringMatching(/^KDF_CONCURRENCY: /)]);
    expect(problemsOf({ KDF_CONCURRENCY: '1', UV_THREADPOOL_SIZE: '1' })).toEqual([expect.stringMatching(/^KDF_CONCURRENCY: /)]);
    expect(threadPoolSize('0')).toBe(1);
    expect(threadPoolSize('lots')).toBe(1);
    expect(threadPoolSize('5000')).toBe(1024);
  });
});
