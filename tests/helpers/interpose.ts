/**
 * One step of a real app held or failed, once, to make a race deterministic: the next call of one of
 * its Redis scripts, or the next read of its storage engine. Later calls are untouched.
 */
import type { BlobStore } from '../../app/blobs/blob-store.js';
import type { TestApp } from './app.js';

export type ScriptCall = (...args: unknown[]) => Promise<unknown>;

/** The app's next call of one of its Redis scripts goes through `instead` (given the real one). */
export function onNextScriptCall(app: TestApp, name: string, instead: (real: ScriptCall, args: unknown[]) => Promise<unknown>): void {
  const redis = app.deps.redis as unknown as Record<string, ScriptCall>;
  const real = redis[name]!;
  redis[name] = (...args: unknown[]) => {
    redis[name] = real;
    return instead(real.bind(app.deps.redis), args);
  };
}

/** The app's next blob read waits until `open()`; `reached` resolves when it has been asked for. */
export function holdNextRead(store: BlobStore): { reached: Promise<void>; open: () => void } {
  const real = store.read.bind(store);
  let open!: () => void;
  let reach!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (reach = resolve));
  store.read = async (blobId, range) => {
    store.read = real;
    reach();
    await opened;
    return real(blobId, range);
  };
  return { reached, open };
}

/** The app's next blob read fails, as a storage error would. */
export function failNextRead(store: BlobStore): void {
  const real = store.read.bind(store);
  store.read = () => {
    store.read = real;
    return Promise.reject(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' }));
  };
}
