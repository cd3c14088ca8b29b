import { QUEUE_STATES } from '../../app/metrics/registry.js';
import { EXIT } from './cli.js';
import { scanKeys, type AdminContext } from './context.js';
import { columns, formatBytes, formatDuration } from './format.js';

/** What a verb hands back: its exit code, the JSON answer, and the same as text. */
export interface Report {
  exitCode: number;
  json: Record<string, unknown>;
  text: string;
}

/** Live file records: count and plaintext bytes. Only the record's size and expiry fields are read. */
async function liveFiles(ctx: AdminContext): Promise<{ files: number; bytes: number }> {
  const now = ctx.now();
  let files = 0;
  let bytes = 0;
  for await (const batch of scanKeys(ctx.redis, ctx.keys.file('*'))) {
    const pipeline = ctx.redis.pipeline();
    for (const key of batch) pipeline.hmget(key, 'size', 'expires');
    for (const [error, reply] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      const [size, expires] = reply as [string | null, string | null];
      if (Number(expires) > now) {
        files += 1;
        bytes += Number(size) || 0;
      }
    }
  }
  return { files, bytes };
}

interface Block {
  /** The client's keyed hash, as `ip_blocked` and `ip_unblocked` log it. */
  client: string;
  endsAt: number;
}

/**
 * Active blocks. The admin list (a sorted set scored by block end) can hold a block whose key has
 * already expired while no worker ran; the block key's TTL is what enforces a block, so it decides.
 */
async function activeBlocks(ctx: AdminContext): Promise<Block[]> {
  const now = ctx.now();
  const listed = await ctx.redis.zrangebyscore(ctx.keys.blockList(), now, '+inf');
  if (listed.length === 0) return [];
  const pipeline = ctx.redis.pipeline();
  for (const client of listed) pipeline.pttl(ctx.keys.block(client));
  const ttls = ((await pipeline.exec()) ?? []).map(([error, ttl]) => {
    if (error) throw error;
    return Number(ttl);
  });
  return listed.flatMap((client, i) => (ttls[i]! > 0 ? [{ client, endsAt: now + ttls[i]! }] : [])).sort((a, b) => a.endsAt - b.endsAt);
}

/** Age of the worker's last heartbeat in ms, or null when none lives (no worker for HEARTBEAT_TTL_SECONDS). */
export async function heartbeatAge(ctx: AdminContext): Promise<number | null> {
  const beat = await ctx.redis.get(ctx.keys.heartbeat());
  if (beat === null) return null;
  const at = Number((JSON.parse(beat) as { at?: unknown }).at);
  return Number.isFinite(at) ? Math.max(0, ctx.now() - at) : null;
}

export async function stats(ctx: AdminContext): Promise<Report> {
  const [live, blocks, queue, heartbeat] = await Promise.all([
    liveFiles(ctx),
    activeBlocks(ctx),
    ctx.janitor.queue.getJobCounts(...QUEUE_STATES),
    heartbeatAge(ctx),
  ]);
  const jobs = Object.fromEntries(QUEUE_STATES.map((state) => [state, queue[state] ?? 0]));
  const json = {
    live_files: live.files,
    live_bytes: live.bytes,
    blocked_clients: blocks.length,
    queue: jobs,
    worker: { online: heartbeat !== null, heartbeat_age_seconds: heartbeat === null ? null : Math.round(heartbeat / 1000) },
  };
  const text = columns([
    ['live files', String(live.files)],
    ['live bytes', `${live.bytes} (${formatBytes(live.bytes)}, plaintext)`],
    ['blocked clients', String(blocks.length)],
    ['janitor queue', QUEUE_STATES.map((state) => `${state} ${jobs[state]}`).join(', ')],
    ['worker', heartbeat === null ? 'offline (no heartbeat)' : `online (heartbeat ${formatDuration(heartbeat)} ago)`],
  ]);
  return { exitCode: EXIT.ok, json, text };
}

export async function blocks(ctx: AdminContext): Promise<Report> {
  const now = ctx.now();
  const found = await activeBlocks(ctx);
  const json = {
    blocks: found.map((b) => ({
      client: b.client,
      ends_at: new Date(b.endsAt).toISOString(),
      seconds_left: Math.ceil((b.endsAt - now) / 1000),
    })),
  };
  const text =
    found.length === 0
      ? 'no client is blocked'
      : columns([
          ['client', 'block ends (UTC)', 'left'],
          ...found.map((b) => [b.client, new Date(b.endsAt).toISOString(), formatDuration(b.endsAt - now)]),
        ]);
  return { exitCode: EXIT.ok, json, text };
}
