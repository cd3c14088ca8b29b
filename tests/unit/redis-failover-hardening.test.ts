/**
 * The switch follower (app/shared/redis-failover.ts) with Sentinel announcing host names
 * (announce-hostnames, docs/OPERATIONS.md): in containers every node listens on 6379, so a client
 * must be judged by the address it is connected to, not by the port. A fake client stands for the
 * ioredis one: its status, its socket's peer and disconnect() are all the follower uses.
 */
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { switchFollower, type LookupAll } from '../../app/shared/redis-failover.js';

const HOSTS: Record<string, string[]> = { 'valkey-1': ['10.0.0.5'], 'valkey-2': ['10.0.0.6', 'fd00::6'] };
const lookup: LookupAll = async (host) => {
  const addresses = HOSTS[host];
  if (addresses === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return addresses.map((address) => ({ address }));
};

function fakeClient(remoteAddress: string, remotePort = 6379) {
  const client = Object.assign(new EventEmitter(), {
    status: 'ready',
    stream: { remoteAddress, remotePort },
    disconnect: vi.fn<(reconnect?: boolean) => void>(),
  });
  return client;
}
const follow = (client: ReturnType<typeof fakeClient>, resolve: LookupAll = lookup) =>
  switchFollower(client as unknown as Redis, { name: 'mymaster', lookup: resolve });

describe('the switch follower with host names announced', () => {
  it('moves a client that is still on the old primary, though both nodes listen on 6379', async () => {
    const client = fakeClient('10.0.0.5');
    await follow(client).onSwitch('mymaster valkey-1 6379 valkey-2 6379');
    expect(client.disconnect).toHaveBeenCalledWith(true);
  });

  it('leaves a client already on the new primary (any of its addresses, IPv4 peers as a dual-stack socket reports them)', async () => {
    for (const peer of ['10.0.0.6', '::ffff:10.0.0.6', 'fd00::6']) {
      const client = fakeClient(peer);
      await follow(client).onSwitch('mymaster valkey-1 6379 valkey-2 6379');
      expect(client.disconnect, peer).not.toHaveBeenCalled();
    }
  });

  it('moves the client when the new primary name does not resolve: a reconnect asks Sentinel again', async () => {
    const client = fakeClient('10.0.0.6');
    await follow(client).onSwitch('mymaster valkey-1 6379 valkey-9 6379');
    expect(client.disconnect).toHaveBeenCalledWith(true);
  });

  it('moves a client on the right address but another port', async () => {
    const client = fakeClient('10.0.0.6', 6380);
    await follow(client).onSwitch('mymaster valkey-1 6379 valkey-2 6379');
    expect(client.disconnect).toHaveBeenCalledWith(true);
  });

  it('still compares IP addresses when Sentinel announces them', async () => {
    const old = fakeClient('10.0.0.5');
    await follow(old).onSwitch('mymaster 10.0.0.5 6379 10.0.0.6 6379');
    expect(old.disconnect).toHaveBeenCalledWith(true);
    const moved = fakeClient('10.0.0.6');
    await follow(moved).onSwitch('mymaster 10.0.0.5 6379 10.0.0.6 6379');
    expect(moved.disconnect).not.toHaveBeenCalled();
  });

  it('ignores switches of other masters, and clients that are not ready', async () => {
    const other = fakeClient('10.0.0.5');
    await follow(other).onSwitch('othermaster valkey-1 6379 valkey-2 6379');
    expect(other.disconnect).not.toHaveBeenCalled();
    const reconnecting = Object.assign(fakeClient('10.0.0.5'), { status: 'reconnecting' });
    await follow(reconnecting).onSwitch('mymaster valkey-1 6379 valkey-2 6379');
    expect(reconnecting.disconnect).not.toHaveBeenCalled();
  });

  it('does not move a client that reconnected to the new primary while the name was being resolved', async () => {
    const client = fakeClient('10.0.0.5');
    let answer: () => void = () => undefined;
    const slow: LookupAll = (host) => new Promise((resolve) => (answer = () => void lookup(host).then(resolve)));
    const checked = follow(client, slow).onSwitch('mymaster valkey-1 6379 valkey-2 6379');
    client.stream = { remoteAddress: '10.0.0.6', remotePort: 6379 };
    answer();
    await checked;
    expect(client.disconnect).not.toHaveBeenCalled();
  });
});
