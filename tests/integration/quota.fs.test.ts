import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useAppStack } from '../helpers/app.js';
import { pausedPut, uploadOk, waitFor } from '../helpers/files.js';

// MAX_STORAGE_BYTES against the usage as it changes while an upload runs. fs only: another process's
// shred shows in the fs engine's usage within a second (its scan), in the s3 engine's only at its next
// listing (30 s).

const KB = 1000;

describe('MAX_STORAGE_BYTES follows the usage while an upload runs', () => {
  const running = useAppStack({ env: { MAX_STORAGE_BYTES: String(1000 * KB) } });

  it('lets a running upload use the room that another process (the janitor) freed after it started', async () => {
    await uploadOk(running.app, randomBytes(600 * KB), 'old.bin');
    const [old] = await running.app.storage.blobIds();
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    const pending = pausedPut(running.app, 'new.bin', randomBytes(700 * KB), { after: 350 * KB, until: resumed });
    // The upload is under way (its partial is on disk) while only 400 KB are free...
    await waitFor(
      () => running.app.storage.partials(),
      (partials) => partials.length === 1,
      5_000,
      'the upload to start',
    );
    // ...then the old blob is shredded by another process, which the running.app learns from its usage scan.
    await running.app.storage.store.destroy(old!, 'expired');
    await waitFor(
      () => running.app.deps.store.usedBytes(),
      (used) => used < 100 * KB,
      5_000,
      'the usage to show the shred',
    );
    resume();
    const res = await pending;
    expect(res.status, await res.clone().text()).toBe(201);
    expect(await running.app.storage.blobIds()).toHaveLength(1);
  });
});
