import { describe, expect, it } from 'vitest';
import { parseRate } from '../../app/http/rate.models.js';
import { requester } from '../../app/http/client.js';

describe('parseRate (N/unit)', () => {
  it.each([
    ['30/hour', 30, 3_600_000],
    ['1/second', 1, 1_000],
    ['60 / minute', 60, 60_000],
    ['5/s', 5, 1_000],
    ['10/m', 10, 60_000],
    ['2/h', 2, 3_600_000],
    ['100/day', 100, 86_400_000],
    [' 7/MINUTES ', 7, 60_000],
  ])('parses %j', (text, limit, windowMs) => {
    expect(parseRate(text)).toEqual({ limit, windowMs, text: text.trim() });
  });

  it.each(['', '30', '/hour', '0/hour', '-1/hour', '1.5/hour', '30/fortnight', '30/hour/x', 'thirty/hour', '99999999999999999999/hour'])(
    'rejects %j',
    (text) => {
      expect(parseRate(text)).toBeNull();
    },
  );
});

describe('requester', () => {
  const req = (ip: string) => ({ ip, socket: {} }) as Parameters<typeof requester>[0];
  const clientKey = (r: Parameters<typeof requester>[0]) => requester(r).client;

  it('groups IPv6 addresses per /64', () => {
    expect(clientKey(req('2001:db8:1:2::1'))).toBe(clientKey(req('2001:db8:1:2::ffff')));
    expect(clientKey(req('2001:db8:1:2:aaaa:bbbb:cccc:dddd'))).toBe(clientKey(req('2001:db8:1:2::1')));
    expect(clientKey(req('2001:db8:1:3::1'))).not.toBe(clientKey(req('2001:db8:1:2::1')));
    expect(requester(req('2001:db8:1:3::1')).aggregate).toBe(requester(req('2001:db8:1:2::1')).aggregate);
  });

  it('keeps IPv4 addresses whole', () => {
    expect(clientKey(req('203.0.113.7'))).toBe('203.0.113.7');
    expect(clientKey(req('203.0.113.8'))).not.toBe(clientKey(req('203.0.113.7')));
  });

  it('falls back to the socket address when req.ip is missing', () => {
    expect(clientKey({ ip: undefined, socket: { remoteAddress: '198.51.100.1' } } as unknown as Parameters<typeof requester>[0])).toBe(
      '198.51.100.1',
    );
  });
});
