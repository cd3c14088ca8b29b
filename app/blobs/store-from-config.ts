import type { RuntimeConfig } from '../config.js';
import type { Logger } from '../shared/logger.js';
import type { BlobStore } from './blob-store.js';
import { createFsStore } from './fs-store.js';
import { s3OptionsFromConfig } from './s3-options.js';

/**
 * The storage engine STORAGE_BACKEND names (SPEC §10.3), ready to use: an `s3` bucket is checked at
 * start (access, a probe write and delete, the versioning warning), so a process with a store it
 * cannot use stops with one clear line instead of failing uploads later. The AWS SDK is loaded
 * only for `s3`: an `fs` deployment does not pay its memory.
 */
export async function storeFromConfig(config: RuntimeConfig, log: Logger): Promise<BlobStore> {
  if (config.storageBackend === 'fs')
    return createFsStore({ storagePath: config.storagePath, tempPath: config.tempPath, shredPasses: config.shredPasses, log });
  const { createS3Store } = await import('./s3-store.js');
  const store = createS3Store({ ...s3OptionsFromConfig(config), log });
  await store.checkBucket();
  return store;
}
