/**
 * s3rver's own command line (same arguments), with its filesystem store made safe against the crash
 * that killed the suite's shared server under load (every later test of the run then failed with
 * ECONNREFUSED):
 *
 * - deleteObject removes the key's parent directories once they are empty, while a putObject of
 *   another key in the same directory sits between its `mkdirp` and its `createWriteStream`; the
 *   write stream then fails with ENOENT, and it has no 'error' listener, so the process exits.
 *   Empty directories are left in place here (the data directory is a temp directory).
 * - Any other failed write of the store (a part written while AbortMultipartUpload removes its
 *   directory, a full disk) would end the same way: every write stream here hands its error to the
 *   stream piped into it, so that one request fails with a 500 and the server lives on.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const s3rverRequire = createRequire(require.resolve('s3rver/package.json'));
const fs = s3rverRequire('fs-extra');
const FilesystemStore = s3rverRequire('./lib/stores/filesystem.js');

const createWriteStream = fs.createWriteStream;
fs.createWriteStream = function createListenedWriteStream(...args) {
  const stream = createWriteStream.apply(this, args);
  const sources = new Set(); // kept after 'unpipe': pipe() unpipes its source before the error reaches us
  stream.on('pipe', (source) => sources.add(source));
  stream.on('error', (error) => {
    for (const source of sources) source.destroy(error);
  });
  return stream;
};

FilesystemStore.prototype.deleteObject = async function deleteObjectKeepingDirectories(bucket, key) {
  const files = ['object', 'object.md5', 'metadata.json'].map((kind) => this.getResourcePath(bucket, key, kind));
  await Promise.all(
    files.map((file) =>
      fs.unlink(file).catch((error) => {
        if (error.code !== 'ENOENT') throw error;
      }),
    ),
  );
};

s3rverRequire('./bin/s3rver.js');
