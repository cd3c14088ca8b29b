import type { Request } from 'express';
import type { StorageEngine } from 'multer';
import type { StoredBlob } from '../files/encrypting-store.js';

/**
 * A multer StorageEngine that hands the file stream to the encrypting pipeline, so the multipart
 * path and the raw PUT path share one implementation and no plaintext temp file ever exists.
 */
export function encryptingEngine(store: (stream: NodeJS.ReadableStream & import('node:stream').Readable) => Promise<StoredBlob>, discard: (blobId: string) => Promise<void>): StorageEngine {
  return {
    _handleFile(_req: Request, file, callback) {
      store(file.stream).then(
        (stored) => callback(null, { stored } as unknown as Partial<Express.Multer.File>),
        (error: unknown) => {
          // Drain what is left of this part so busboy can finish the request.
          file.stream.resume();
          callback(error as Error);
        },
      );
    },
    _removeFile(_req: Request, file, callback) {
      const stored = (file as unknown as { stored?: StoredBlob }).stored;
      if (!stored) return callback(null);
      discard(stored.blobId).then(() => callback(null), (error: unknown) => callback(error as Error));
    },
  };
}
