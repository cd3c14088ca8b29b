import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createS3Store } from '../../app/blobs/s3-store.js';
import { createSilentLogger } from '../../app/shared/logger.js';
import { backdate, listAll, readAll, type RawItem, type S3Target, type StorageView } from './engine.js';

/** s3rver keeps object `k` of bucket `b` as `<directory>/b/k._S3rver_object`, and unfinished uploads apart. */
const S3RVER_OBJECT = '._S3rver_object';
const S3RVER_UPLOADS = '._S3rver_uploads';

function isUnsupported(error: unknown): boolean {
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return ['NotImplemented', 'MethodNotAllowed'].includes((error as Error).name) || status === 501 || status === 405;
}

async function walk(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await walk(full)));
    else if (entry.isFile()) found.push(full);
  }
  return found;
}

/** A view of the objects under `prefix` in the s3 project's bucket (see StorageView). */
export function s3StorageView(target: S3Target, prefix: string): StorageView {
  const options = {
    endpoint: target.endpoint ?? undefined,
    region: target.region,
    bucket: target.bucket,
    credentials: target.credentials ?? undefined,
    forcePathStyle: target.forcePathStyle,
  };
  const store = createS3Store({ ...options, prefix, log: createSilentLogger() });
  const client = new S3Client({ ...options, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  const { bucket } = target;
  const bucketDir = target.directory === null ? null : path.join(target.directory, bucket);
  const entries = () => listAll(store);
  let listsUploads: boolean | null = null;

  const needsS3rver = (what: string) => {
    if (bucketDir === null) throw new Error(`${what} needs the suite's own s3rver (unset CBX_TEST_S3_BUCKET): the S3 API cannot do it`);
    return bucketDir;
  };

  const getObject = async (key: string) => {
    const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return readAll(answer.Body as AsyncIterable<unknown>);
  };

  /** s3rver's unfinished uploads under our prefix: one directory per upload, its key in a file named `key`. */
  const s3rverUploads = async (): Promise<{ dir: string; key: string }[]> => {
    const uploadsDir = path.join(needsS3rver('reading unfinished uploads'), S3RVER_UPLOADS);
    const found: { dir: string; key: string }[] = [];
    for (const id of await readdir(uploadsDir).catch(() => [] as string[])) {
      const dir = path.join(uploadsDir, id);
      const key = await readFile(path.join(dir, 'key'), 'utf8').catch(() => null); // completed meanwhile
      if (key?.startsWith(prefix)) found.push({ dir, key });
    }
    return found;
  };

  const view: StorageView = {
    engine: 's3',
    store,
    entries,
    names: async () => (await entries()).map((e) => e.ref).sort(),
    blobIds: async () => (await entries()).filter((e) => e.kind === 'blob' && e.blobId !== null).map((e) => e.blobId!),
    async has(blobId) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: prefix + blobId }));
        return true;
      } catch (error) {
        if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
        throw error;
      }
    },
    read: async (blobId) => readAll(await store.read(blobId)),
    async corrupt(blobId, offset) {
      // An object cannot be changed in place: the corrupted copy replaces it under the same key.
      const data = await getObject(prefix + blobId);
      const at = offset < 0 ? data.length + offset : offset;
      data[at] = data[at]! ^ 0x01;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + blobId, Body: data }));
    },
    async truncate(blobId, length) {
      const data = await getObject(prefix + blobId);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + blobId, Body: data.subarray(0, length) }));
    },
    async put(name, bytes, options = {}) {
      const body = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + name, Body: body }));
      if (options.ageMs === undefined) return;
      // S3 sets LastModified itself; s3rver takes it from its file's mtime, which a test may set. It
      // answers the PUT before its file is written (it ends the write stream and goes on), so its own
      // write could land after a backdate and undo it (seen in CI under load): backdate once the
      // whole body is in the file, and check what the store now reports.
      const file = path.join(needsS3rver('backdating an object'), `${prefix}${name}${S3RVER_OBJECT}`);
      const deadline = Date.now() + 10_000;
      while ((await stat(file).catch(() => null))?.size !== body.length) {
        if (Date.now() > deadline) throw new Error(`s3rver did not write ${name} within 10 s`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await backdate(file, options.ageMs);
      const { LastModified } = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: prefix + name }));
      if ((LastModified?.getTime() ?? Infinity) > Date.now() - options.ageMs + 60_000) throw new Error(`${name} could not be backdated`);
    },
    async putPartial(blobId, bytes, options = {}) {
      // An unfinished upload's start (Initiated) cannot be set through the API, nor on s3rver (it lists none).
      if (options.ageMs !== undefined && (await view.partialsListed()))
        throw new Error('an unfinished multipart upload cannot be backdated');
      const key = prefix + blobId;
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: bytes }));
    },
    async partialsListed() {
      if (listsUploads === null) {
        try {
          await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, MaxUploads: 1 }));
          listsUploads = true;
        } catch (error) {
          if (!isUnsupported(error)) throw error;
          listsUploads = false;
        }
      }
      return listsUploads;
    },
    async partials() {
      if (await view.partialsListed())
        return (await entries()).filter((e) => e.kind === 'partial').map((e) => ({ blobId: e.blobId, name: e.ref, size: e.size }));
      const found: { blobId: string | null; name: string; size: number }[] = [];
      for (const upload of await s3rverUploads()) {
        let size = 0;
        for (const part of await readdir(upload.dir).catch(() => [] as string[])) {
          if (/^\d+$/.test(part)) size += (await stat(path.join(upload.dir, part)).catch(() => ({ size: 0 }))).size;
        }
        found.push({ blobId: upload.key.slice(prefix.length), name: path.relative(bucketDir!, upload.dir), size });
      }
      return found;
    },
    hasPartial: async (blobId) => (await view.partials()).some((p) => p.blobId === blobId),
    async raw() {
      const items: RawItem[] = [];
      if (bucketDir === null) {
        // An external store shows only what its API shows: the objects, read back.
        let token: string | undefined;
        do {
          const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
          for (const object of page.Contents ?? []) {
            const data = await getObject(object.Key!).catch(() => null);
            if (data) items.push({ name: object.Key!, data });
          }
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token !== undefined);
        return items;
      }
      // s3rver: every file it keeps for us, objects with their metadata and unfinished uploads' parts.
      const files = [
        ...(await walk(path.join(bucketDir, prefix))),
        ...(await Promise.all((await s3rverUploads()).map((u) => walk(u.dir)))).flat(),
      ];
      for (const file of files) {
        const data = await readFile(file).catch(() => null); // gone meanwhile
        if (data) items.push({ name: path.relative(bucketDir, file), data });
      }
      return items;
    },
    isUnfinished: (name) => name.startsWith(`${S3RVER_UPLOADS}/`),
    async clear() {
      for (const entry of await entries()) await store.destroyEntry(entry, 'test cleanup');
    },
    async close() {
      await store.close();
      client.destroy();
    },
  };
  return view;
}
