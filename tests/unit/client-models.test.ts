import { randomInt } from 'node:crypto';
import { ipKeyGenerator } from 'express-rate-limit';
import { describe, expect, it } from 'vitest';
import { clientIdentity, UNKNOWN_CLIENT } from '../../app/abuse/client.models.js';

describe('clientIdentity for IPv4', () => {
  it('names the address as the client and its /24 as the aggregate', () => {
    expect(clientIdentity('192.0.2.7')).toEqual({ kind: 'ipv4', client: '192.0.2.7', aggregate: '192.0.2.0/24' });
    expect(clientIdentity('0.0.0.0')).toEqual({ kind: 'ipv4', client: '0.0.0.0', aggregate: '0.0.0.0/24' });
    expect(clientIdentity('255.255.255.255')).toEqual({ kind: 'ipv4', client: '255.255.255.255', aggregate: '255.255.255.0/24' });
  });

  it('puts addresses of one /24 in one aggregate and a neighbouring /24 in another', () => {
    expect(clientIdentity('198.51.100.1').aggregate).toBe(clientIdentity('198.51.100.254').aggregate);
    expect(clientIdentity('198.51.100.1').client).not.toBe(clientIdentity('198.51.100.254').client);
    expect(clientIdentity('198.51.101.1').aggregate).not.toBe(clientIdentity('198.51.100.1').aggregate);
  });
});

describe('clientIdentity for IPv4 inside IPv6', () => {
  it('reads an IPv4-mapped address (how a dual-stack socket reports IPv4 peers) as that IPv4 address', () => {
    const expected = { kind: 'ipv4', client: '192.0.2.7', aggregate: '192.0.2.0/24' };
    expect(clientIdentity('::ffff:192.0.2.7')).toEqual(expected);
    expect(clientIdentity('::FFFF:192.0.2.7')).toEqual(expected);
    expect(clientIdentity('0:0:0:0:0:ffff:192.0.2.7')).toEqual(expected);
    expect(clientIdentity('::ffff:c000:207')).toEqual(expected);
    expect(clientIdentity('0000:0000:0000:0000:0000:FFFF:C000:0207')).toEqual(expected);
  });

  it('reads the deprecated IPv4-compatible form as IPv4 only when written with a dotted tail', () => {
    expect(clientIdentity('::192.0.2.7')).toEqual({ kind: 'ipv4', client: '192.0.2.7', aggregate: '192.0.2.0/24' });
    // `::1` and `::` share that range but embed no IPv4 address.
    expect(clientIdentity('::1')).toEqual({ kind: 'ipv6', client: '::/64', aggregate: '::/48' });
    expect(clientIdentity('::')).toEqual({ kind: 'ipv6', client: '::/64', aggregate: '::/48' });
    expect(clientIdentity('::c000:207').kind).toBe('ipv6');
  });

  it('keeps a dotted tail on an ordinary IPv6 address as IPv6', () => {
    expect(clientIdentity('2001:db8:1:2:3:4:192.0.2.7')).toEqual({
      kind: 'ipv6',
      client: '2001:db8:1:2::/64',
      aggregate: '2001:db8:1::/48',
    });
  });
});

describe('clientIdentity for IPv6', () => {
  it('names the /64 as the client and the /48 as the aggregate', () => {
    expect(clientIdentity('2001:db8:aaaa:bbbb:1:2:3:4')).toEqual({
      kind: 'ipv6',
      client: '2001:db8:aaaa:bbbb::/64',
      aggregate: '2001:db8:aaaa::/48',
    });
  });

  it('gives compressed, expanded, zero-padded and upper-case forms of one address the same identity', () => {
    const forms = [
      '2001:db8:0:1::5',
      '2001:0db8:0000:0001:0000:0000:0000:0005',
      '2001:DB8:0:1:0:0:0:5',
      '2001:db8::1:0:0:0:5',
      '2001:0DB8:0:0001::0005',
    ];
    for (const form of forms) {
      expect(clientIdentity(form), form).toEqual({ kind: 'ipv6', client: '2001:db8:0:1::/64', aggregate: '2001:db8::/48' });
    }
  });

  it('ignores the interface part of the address (the last 64 bits) and a zone id', () => {
    expect(clientIdentity('2001:db8:1:2:ffff:ffff:ffff:ffff').client).toBe('2001:db8:1:2::/64');
    expect(clientIdentity('fe80::1%eth0')).toEqual({ kind: 'ipv6', client: 'fe80::/64', aggregate: 'fe80::/48' });
    expect(clientIdentity('fe80::abcd%25')).toEqual(clientIdentity('fe80::1'));
  });

  it('separates the /64s of one /56 as clients and keeps them in one /48 aggregate', () => {
    const identities = Array.from({ length: 256 }, (_, i) => clientIdentity(`2001:db8:5:${(0x4200 + i).toString(16)}::1`));
    expect(new Set(identities.map((id) => id.client)).size).toBe(256);
    expect(new Set(identities.map((id) => id.aggregate))).toEqual(new Set(['2001:db8:5::/48']));
  });

  it('writes networks in RFC 5952 form: the longest zero run compressed, the first one on a tie, never a single zero group', () => {
    expect(clientIdentity('1:0:0:2:0:0:0:9').client).toBe('1:0:0:2::/64');
    expect(clientIdentity('1:0:0:0:2:3:4:5').client).toBe('1::/64');
    expect(clientIdentity('1:2:3:4:5:6:7:8').client).toBe('1:2:3:4::/64');
    expect(clientIdentity('1:0:2:3::').client).toBe('1:0:2:3::/64');
    expect(clientIdentity('0:1:0:2::').client).toBe('0:1:0:2::/64');
    expect(clientIdentity('1:2:3:4:5:6:7:8').aggregate).toBe('1:2:3::/48');
    expect(clientIdentity('0:0:3:4::').aggregate).toBe('0:0:3::/48');
  });
});

describe('clientIdentity for input that is not an address', () => {
  const garbage: unknown[] = [
    undefined,
    null,
    '',
    ' ',
    'unknown',
    '192.0.2.7 ',
    ' 192.0.2.7',
    '192.0.2',
    '192.0.2.256',
    '192.0.02.7',
    '0x7f.0.0.1',
    '192.0.2.7/24',
    '192.0.2.7:8080',
    '[2001:db8::1]',
    '2001:db8::1::2',
    '2001:db8:1:2:3:4:5:6:7',
    '12345::',
    'g::1',
    '::ffff:192.0.2.256',
    '%eth0',
    '1.2.3.4%eth0',
    '2001:db8::1\n',
    'x'.repeat(10_000),
    `fe80::1%${'a'.repeat(200)}`,
    42,
    { toString: () => '192.0.2.7' },
  ];

  it('answers one shared fallback identity instead of throwing', () => {
    for (const input of garbage) {
      expect(clientIdentity(input as string), String(input).slice(0, 40)).toEqual(UNKNOWN_CLIENT);
    }
  });

  it('hands out a copy, so a caller cannot change the fallback for everyone', () => {
    const identity = clientIdentity('garbage');
    identity.client = 'changed';
    expect(clientIdentity('garbage').client).toBe('unknown');
  });
});

describe('clientIdentity against express-rate-limit ipKeyGenerator (a second implementation)', () => {
  /** A random address written in one of several equivalent ways. */
  function randomIPv6Text(): string {
    const groups = Array.from({ length: 8 }, () => (randomInt(4) === 0 ? 0 : randomInt(0x10000)));
    const style = randomInt(4);
    const texts = groups.map((g) => (style === 1 ? g.toString(16).padStart(4, '0') : g.toString(16)));
    let text = texts.join(':');
    if (style === 2) text = text.toUpperCase();
    if (style === 3) {
      const start = randomInt(7);
      const length = 1 + randomInt(8 - start);
      const zeroed = groups.map((g, i) => (i >= start && i < start + length ? 0 : g));
      const parts = zeroed.map((g) => g.toString(16));
      text = `${parts.slice(0, start).join(':')}::${parts.slice(start + length).join(':')}`;
    }
    return text;
  }

  it('agrees on the client (/64) and the aggregate (/48) of 2,000 random IPv6 addresses', () => {
    for (let i = 0; i < 2_000; i += 1) {
      const text = randomIPv6Text();
      const identity = clientIdentity(text);
      expect(identity.client, text).toBe(ipKeyGenerator(text, 64));
      expect(identity.aggregate, text).toBe(ipKeyGenerator(text, 48));
    }
  });

  it('agrees on the client of IPv4 and IPv4-in-IPv6 addresses, so fairness and the Redis limits count the same party', () => {
    for (const text of ['192.0.2.7', '::ffff:192.0.2.7', '::ffff:c000:207', '::192.0.2.7', '::1', '::']) {
      expect(clientIdentity(text).client, text).toBe(ipKeyGenerator(text, 64));
    }
  });
});
