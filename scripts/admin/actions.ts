import { isIP } from 'node:net';
import { clientIdOf } from '../../app/abuse/abuse.models.js';
import { clientIdentity } from '../../app/abuse/client.models.js';
import { PROTECT_LUA } from '../../app/blobs/blobs.repository.js';
import { jobIds, type JobPayload } from '../../app/jobs/catalogue.js';
import { luaScripts } from '../../app/shared/lua.js';
import { EXIT } from './cli.js';
import { scanKeys, type AdminContext } from './context.js';
import { heartbeatAge, type Report } from './inventory.js';

// KEYS: block, failure count, admin block list   ARGV: id, onlyIfBlocked (1/0)   Returns 1 when a block was lifted.
const UNBLOCK_LUA = `
local blocked = redis.call('DEL', KEYS[1])
if blocked == 0 and ARGV[2] == '1' then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return blocked`;

/** A client id as the API writes it (clientIdOf: 32 hex digits), as `ip_blocked` logs it and `blocks` lists it. */
const CLIENT_ID = /^[a-f0-9]{32}$/;

/**
 * Lifts blocks at once: the block key (what the API checks) and the failure count of each id,
 * and their entries in the admin list, one script per id. An IP is hashed exactly as the API
 * hashes a request's address (app/abuse/client.models.ts, then clientIdOf): IPv4 as is, IPv6 per
 * /64 together with its /48, whose own block would still refuse it. The /48 is touched only when it
 * is blocked itself: wiping its count otherwise would hand a party spread over many /64s a fresh
 * budget each time one of them is unblocked. A hash is taken as is.
 */
export async function unblock(ctx: AdminContext, target: string, secret: () => Promise<string | null>): Promise<Report> {
  const ids: { id: string; shown: string; onlyIfBlocked: boolean }[] = [];
  if (isIP(target) !== 0) {
    const key = await secret();
    if (key === null) {
      const text =
        'unblock by IP needs the server secret (CINDERBOX_SECRET) to hash it as the API does; give the client hash that blocks lists instead';
      return { exitCode: EXIT.problem, json: { unblocked: false, error: text }, text };
    }
    const who = clientIdentity(target);
    ids.push({ id: clientIdOf(key, who.client), shown: who.client, onlyIfBlocked: false });
    if (who.kind === 'ipv6') ids.push({ id: clientIdOf(key, who.aggregate), shown: who.aggregate, onlyIfBlocked: true });
  } else if (CLIENT_ID.test(target.toLowerCase())) {
    ids.push({ id: target.toLowerCase(), shown: 'client', onlyIfBlocked: false });
  } else {
    return {
      exitCode: EXIT.usage,
      json: { unblocked: false, error: 'expected an IP address or a 32-hex client hash' },
      text: `"${target}" is neither an IP address nor a client hash (32 hex digits, as blocks lists it)`,
    };
  }
  const wasBlocked: boolean[] = [];
  for (const { id, onlyIfBlocked } of ids) {
    const reply = await ctx.redis.eval(
      UNBLOCK_LUA,
      3,
      ctx.keys.block(id),
      ctx.keys.lookupFailures(id),
      ctx.keys.blockList(),
      id,
      onlyIfBlocked ? 1 : 0,
    );
    wasBlocked.push(reply === 1);
  }
  const lifted = ids.filter((_, i) => wasBlocked[i]);
  const json = { unblocked: lifted.length > 0, clients: ids.map(({ id }, i) => ({ client: id, was_blocked: wasBlocked[i] })) };
  if (lifted.length === 0)
    return {
      exitCode: EXIT.problem,
      json,
      text: `${ids.map((c) => `${c.shown} (${c.id})`).join(' and ')} ${ids.length === 1 ? 'is' : 'are'} not blocked: nothing to do`,
    };
  return {
    exitCode: EXIT.ok,
    json,
    text: `unblocked ${lifted.map((c) => `${c.shown} (${c.id})`).join(' and ')}: the next request is let in`,
  };
}

/** Queues a sweep now; each manual sweep has its own job id, so every one runs. */
export async function sweep(ctx: AdminContext): Promise<Report> {
  const payload: JobPayload<'sweep'> = { trigger: 'manual', requestedAt: ctx.now() };
  await ctx.janitor.enqueue('sweep', payload);
  const jobId = jobIds.sweep(payload);
  const online = (await heartbeatAge(ctx)) !== null;
  const text = [
    `queued sweep ${jobId}; the worker logs orphan_swept with job_id "${jobId}"`,
    ...(online ? [] : ['no worker is running: the sweep runs when one starts']),
  ].join('\n');
  return { exitCode: EXIT.ok, json: { queued: true, job_id: jobId, worker_online: online }, text };
}

// A file's record, as purge sees it through the shared prelude (lookup.lua): delete it if it is
// live, mark its tombstone "deleted" (KEEPTTL: the tombstone was written with its own expiry at
// upload), and drop the blob's `live` and `resume` protection, all at once, as a delete with the
// token does (which also ends every resume window of the file).
// KEYS: file, tombstone   ARGV: blobPrefix, nowMs   Returns the blob id, or false when not live.
const PURGE_LUA = `
if not is_live(ARGV[2]) then return false end
local blob = redis.call('HGET', KEYS[1], 'blob')
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('SET', KEYS[2], 'deleted', 'KEEPTTL') end
redis.call('ZREM', blob_key(blob), 'live', 'resume')
return blob`;

// A burn in progress (its record gone, its download not yet at its first byte): its tombstone says
// "deleted" from now on, as after a sender's delete, so a refund restores nothing and no resume
// record is written for it (refund.lua and resume-store.lua). KEYS: tombstone   Returns 1 when changed.
const PURGE_BURN_LUA = `
if redis.call('GET', KEYS[1]) ~= 'burned' then return 0 end
redis.call('SET', KEYS[1], 'deleted', 'KEEPTTL')
return 1`;

// A resume record (a burned or downloaded file's resume window: the data key wrapped once more, for
// the download's capability) goes with its blob's 'resume' protection. KEYS: resume record
// ARGV: blobPrefix   Returns the blob id, or false when the record was gone.
// Ends a resume window: its record and the blob's 'resume' member go. Answers the blob, and whether
// it is live still (a file uploaded after the purge's first pass and downloaded since): such a blob
// is not the purge's to shred, and a shred job for it would only wait for its expiry under the id
// its sender's delete uses later.
const PURGE_RESUME_LUA = `
local blob = redis.call('HGET', KEYS[1], 'blob')
if not blob then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[1] .. blob, 'resume')
local live = redis.call('ZSCORE', ARGV[1] .. blob, 'live')
return {blob, (live and tonumber(live) > tonumber(ARGV[2])) and 1 or 0}`;

/** The lookup prelude lives with the file scripts (app/files/lua); it is the one definition of "live". */
const lookupLua = () => luaScripts(new URL('../../app/files/files.repository.js', import.meta.url).href)('lookup');

type Purging = AdminContext['redis'] & {
  cbxAdminPurge(file: string, tombstone: string, blobPrefix: string, now: number): Promise<string | null>;
  cbxAdminPurgeResume(record: string, blobPrefix: string, now: number): Promise<[string, 0 | 1] | null>;
  cbxAdminPurgeBurn(tombstone: string): Promise<number>;
};

function scripted(redis: AdminContext['redis']): Purging {
  if (!('cbxAdminPurge' in redis)) {
    redis.defineCommand('cbxAdminPurge', { numberOfKeys: 2, lua: `${PROTECT_LUA}\n${lookupLua()}\n${PURGE_LUA}` });
    redis.defineCommand('cbxAdminPurgeResume', { numberOfKeys: 1, lua: PURGE_RESUME_LUA });
    redis.defineCommand('cbxAdminPurgeBurn', { numberOfKeys: 1, lua: PURGE_BURN_LUA });
  }
  return redis as Purging;
}

/** purge without `--yes`: nothing is touched (not even a connection is made). */
export function purgeRefused(): Report {
  const text = 'purge destroys the key of every live file at once, and nothing can bring them back; run it again with --yes';
  return { exitCode: EXIT.usage, json: { purged: 0, error: 'refused without --yes' }, text };
}

/**
 * Crypto-shreds every live file (an incident): each record, with the only wrapped copy of its data
 * key, is deleted in one script per file, exactly as a sender's delete would; then every resume
 * record and download ticket (the other wrapped copies: a resume window's, a recipient page's
 * ticket), with the resume windows they hold open on burned files too; then the janitor is asked to
 * shred each blob (it waits for downloads already running).
 */
export async function purge(ctx: AdminContext): Promise<Report> {
  // A download claimed before this point, or while the passes run, must not give its use back (a burn's
  // refund restores the record) or write a resume record after a pass went past its file: the claim
  // noted the epoch, and refund.lua and resume-store.lua refuse once it changed or while this runs.
  await ctx.redis.set(ctx.keys.purgeRunning(), String(ctx.now()), 'PX', PURGE_RUNNING_MAX_MS);
  await ctx.redis.incr(ctx.keys.purgeEpoch());
  try {
    return await purgePasses(ctx);
  } finally {
    await ctx.redis.incr(ctx.keys.purgeEpoch());
    await ctx.redis.del(ctx.keys.purgeRunning());
  }
}

/** How long a purge that died half-way keeps refunds and new resume windows refused. */
const PURGE_RUNNING_MAX_MS = 60 * 60_000;

async function purgePasses(ctx: AdminContext): Promise<Report> {
  const redis = scripted(ctx.redis);
  const blobPrefix = ctx.keys.blob('');
  let purged = 0;
  const shredded = new Set<string>();
  for await (const batch of scanKeys(ctx.redis, ctx.keys.file('*'))) {
    const blobs: string[] = [];
    for (const fileKey of batch) {
      // The record key is `<prefix>:file:{<lookupId>}`; the lookup id is used here and never printed.
      const lookupId = /\{([^}]+)\}$/.exec(fileKey)?.[1];
      if (lookupId === undefined) continue;
      const blob = await redis.cbxAdminPurge(fileKey, ctx.keys.tombstone(lookupId), blobPrefix, ctx.now());
      if (blob !== null) blobs.push(blob);
    }
    purged += blobs.length;
    await Promise.all(blobs.map((blobId) => ctx.janitor.enqueue('shred', { blobId, reason: 'deleted' })));
    for (const blobId of blobs) shredded.add(blobId);
  }
  // Before the resume records: a burn still on its way to its first byte writes none once this ran.
  for await (const batch of scanKeys(ctx.redis, ctx.keys.tombstone('*'))) for (const key of batch) await redis.cbxAdminPurgeBurn(key);
  let resumes = 0;
  for await (const batch of scanKeys(ctx.redis, ctx.keys.resume('*'))) {
    const blobs = new Set<string>();
    for (const recordKey of batch) {
      const ended = await redis.cbxAdminPurgeResume(recordKey, blobPrefix, ctx.now());
      if (ended === null) continue;
      resumes += 1;
      if (ended[1] === 0) blobs.add(ended[0]);
    }
    const fresh = [...blobs].filter((blobId) => !shredded.has(blobId));
    await Promise.all(fresh.map((blobId) => ctx.janitor.enqueue('shred', { blobId, reason: 'deleted' })));
    for (const blobId of fresh) shredded.add(blobId);
  }
  const queued = shredded.size;
  for await (const batch of scanKeys(ctx.redis, ctx.keys.ticket('*'))) if (batch.length > 0) await ctx.redis.del(...batch);
  const online = (await heartbeatAge(ctx)) !== null;
  const text = [
    `purged ${purged} live file${purged === 1 ? '' : 's'}: their keys are destroyed, their passphrases answer 410 deleted`,
    `ended ${resumes} resume window${resumes === 1 ? '' : 's'}: nothing started can be resumed`,
    `queued ${queued} shred${queued === 1 ? '' : 's'}${online ? '' : '; no worker is running: the bytes are shredded when one starts'}`,
  ].join('\n');
  return { exitCode: EXIT.ok, json: { purged, resume_windows_ended: resumes, shreds_queued: queued, worker_online: online }, text };
}
