/**
 * Who a request comes from, for fairness and limits (SPEC §4.6, §10.4): the **client** is an IPv4
 * address or an IPv6 /64 (one subscriber's LAN), the **aggregate** the IPv4 /24 or IPv6 /48 around it
 * (one provider customer or site, which one party can fill with addresses for free).
 *
 * Both are canonical text, so equal networks compare equal however the address was written: IPv4
 * dotted quad (`192.0.2.7`, `192.0.2.0/24`), IPv6 network per RFC 5952 (`2001:db8:1:2::/64`,
 * `2001:db8:1::/48`). An IPv4 address inside IPv6 (`::ffff:192.0.2.7`, as a dual-stack socket
 * reports IPv4 peers) counts as that IPv4 address. The client text is the same as `clientKey` in
 * http/rate-limit.ts (express-rate-limit's ipKeyGenerator at /64), so fairness and the Redis limits
 * count the same party. Nothing is hashed here: the layer that stores or logs a client hashes it.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface ClientIdentity {
  /** `ipv4`, `ipv6`, or `unknown` for input that is not an IP address (see UNKNOWN_CLIENT). */
  kind: 'ipv4' | 'ipv6' | 'unknown';
  /** An IPv4 address or an IPv6 /64 network. */
  client: string;
  /** The client's IPv4 /24 or IPv6 /48 network. */
  aggregate: string;
}

/**
 * Every address that cannot be parsed shares this one identity. A per-string fallback would let
 * whoever controls the text (a misconfigured trusted proxy) mint unlimited clients; one shared
 * bucket is limited as a single client, and no throw can turn a bad header into a 500.
 */
export const UNKNOWN_CLIENT: Readonly<ClientIdentity> = Object.freeze({ kind: 'unknown', client: 'unknown', aggregate: 'unknown' });

/**
 * An IPv6 /48 gets this many times a client's budget (failed lookups, uploads) before all of it is
 * refused: one party can hold a whole /48 (65,536 /64s), and without it each /64 would get a budget
 * of its own. IPv4 /24s are not counted together: addresses there are scarce and often belong to
 * different people (docs/SECURITY.md).
 */
export const AGGREGATE_MULTIPLE = 4;

const IPV4_AGGREGATE_PREFIX = 24;
const IPV6_CLIENT_PREFIX = 64;
const IPV6_AGGREGATE_PREFIX = 48;

/** Longer than any IPv6 text (45) plus a zone id; anything longer is not an address. */
const MAX_INPUT_LENGTH = 100;

/** The identity of a request's IP text (`req.ip`); never throws. */
export function clientIdentity(ip: string | null | undefined): ClientIdentity {
  if (typeof ip !== 'string' || ip.length === 0 || ip.length > MAX_INPUT_LENGTH) return { ...UNKNOWN_CLIENT };
  if (isIPv4(ip)) return ipv4Identity(parseIPv4(ip));
  // A zone id (`fe80::1%eth0`) names the local interface, not the peer: drop it.
  const zone = ip.indexOf('%');
  const address = zone === -1 ? ip : ip.slice(0, zone);
  if (!isIPv6(address)) return { ...UNKNOWN_CLIENT };
  const groups = ipv6Groups(address);
  const embedded = embeddedIPv4(groups, address);
  if (embedded) return ipv4Identity(embedded);
  return {
    kind: 'ipv6',
    client: `${formatIPv6(maskIPv6(groups, IPV6_CLIENT_PREFIX))}/${IPV6_CLIENT_PREFIX}`,
    aggregate: `${formatIPv6(maskIPv6(groups, IPV6_AGGREGATE_PREFIX))}/${IPV6_AGGREGATE_PREFIX}`,
  };
}

function ipv4Identity(octets: number[]): ClientIdentity {
  return { kind: 'ipv4', client: octets.join('.'), aggregate: `${octets.slice(0, 3).join('.')}.0/${IPV4_AGGREGATE_PREFIX}` };
}

/** Only called on text that net.isIPv4 accepted (four decimal octets, no leading zeros). */
function parseIPv4(text: string): number[] {
  return text.split('.').map(Number);
}

/** Eight 16-bit groups; only called on text that net.isIPv6 accepted (so at most one `::`). */
export function ipv6Groups(text: string): number[] {
  const lower = text.toLowerCase();
  const [head = '', tail] = lower.split('::') as [string, string | undefined];
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = parseIPv4(piece);
        groups.push((a << 8) | b, (c << 8) | d);
      } else {
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };
  const left = toGroups(head);
  if (tail === undefined) return left;
  const right = toGroups(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/**
 * IPv4-mapped (`::ffff:a.b.c.d`, in any notation) is an IPv4 peer on a dual-stack socket. The
 * deprecated IPv4-compatible form (`::a.b.c.d`) is read as IPv4 only when written with the dotted
 * tail, as ipKeyGenerator does: its range also holds `::` and `::1`, which embed no IPv4 address.
 */
function embeddedIPv4(groups: number[], text: string): number[] | null {
  const zeros = (n: number) => groups.slice(0, n).every((g) => g === 0);
  const mapped = zeros(5) && groups[5] === 0xffff;
  const compatible = zeros(6) && text.includes('.');
  if (!mapped && !compatible) return null;
  const [high = 0, low = 0] = groups.slice(6);
  return [high >> 8, high & 0xff, low >> 8, low & 0xff];
}

function maskIPv6(groups: number[], prefix: number): number[] {
  return groups.map((group, i) => {
    const bits = Math.min(16, Math.max(0, prefix - i * 16));
    return bits === 0 ? 0 : group & ((0xffff << (16 - bits)) & 0xffff);
  });
}

/** RFC 5952: lowercase hex, no leading zeros, the longest run of two or more zero groups (the first on a tie) as `::`. */
function formatIPv6(groups: number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (part: number[]) => part.map((g) => g.toString(16)).join(':');
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}
