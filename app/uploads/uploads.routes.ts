import { Router, type Request, type RequestHandler, type Response } from 'express';
import { baseUrl } from '../http/base-url.js';
import { zodDetails } from '../http/error-handler.js';
import { validationFailed } from '../http/errors.js';
import { receiveMultipart, receiveRaw, type Receive, type ReceivedUpload } from '../http/receive-upload.js';
import { fileLinks } from '../files/files.models.js';
import type { FilesDeps } from '../files/files.usecases.js';
import { sanitiseFilename } from './content-type.models.js';
import { presentOptions, uploadOptionsSchema, type UploadOptions } from './uploads.models.js';
import { receiveUpload, type UploadedFile } from './uploads.usecases.js';
import { startDrop } from './drops.usecases.js';

/** The 201 JSON of SPEC §3 (Raven field names kept). */
function uploadJson(base: string, file: UploadedFile) {
  return {
    key: file.key,
    ...fileLinks(base, file.key),
    delete_token: file.deleteToken,
    expiry: file.expiresAt.toISOString(),
    uses: file.uses,
    filename: file.filename,
    mime_type: file.mimeType,
    size: file.size,
    created_at: file.createdAt.toISOString(),
    sha256: file.sha256,
    ...(file.files ? { files: file.files } : {}),
  };
}

/**
 * The plain-text answer for `curl -T`: the share URL alone on the first line (the key is in its
 * fragment, which no client sends), then ready-to-paste commands that carry the key in a body or a
 * header, never in a URL a proxy would log.
 */
function uploadText(base: string, file: UploadedFile): string {
  const links = fileLinks(base, file.key);
  return [
    links.share_url,
    `passphrase: ${file.key}`,
    `expires:    ${file.expiresAt.toISOString()}`,
    `uses:       ${file.uses}`,
    `sha256:     ${file.sha256}`,
    ...dropLines(file),
    `download:   curl -fOJ --etag-save cinderbox.etag -H 'X-Key: ${file.key}' ${base}/download`,
    `delete:     curl -X DELETE -H 'X-Key: ${file.key}' -H 'X-Delete-Token: ${file.deleteToken}' ${base}/files`,
    '',
  ].join('\n');
}

/** A drop's name and entries for the text answer, one per line, after the facts a script may parse. */
function dropLines(file: UploadedFile): string[] {
  if (!file.files) return [];
  return [
    `filename:   ${file.filename}`,
    `files:      ${file.files.length}`,
    ...file.files.map((entry) => `  ${entry.size}\t${entry.name}`),
  ];
}

/** `POST /upload` (multipart, JSON answer) and `PUT /upload/:filename` (raw body, text or JSON answer). */
export function createUploadsRouter(deps: FilesDeps, limiter: RequestHandler): Router {
  const { config } = deps;
  const schema = uploadOptionsSchema(config);
  const parseOptions = (fields: Record<string, unknown>): UploadOptions => {
    const { options, repeated } = presentOptions(fields);
    if (repeated.length > 0) throw validationFailed(repeated.map((field) => ({ field, message: `Give ${field} once.` })));
    const parsed = schema.safeParse(options);
    if (!parsed.success) throw validationFailed(zodDetails(parsed.error));
    return parsed.data;
  };
  // Options known before the body are checked before a byte of it is stored.
  const receive: Receive = async ({ source, fieldsSoFar, expectedSize, who }) => {
    const { words } = parseOptions(fieldsSoFar);
    return receiveUpload(deps, { source, who, words, ...(expectedSize !== undefined ? { expectedSize } : {}) });
  };

  const register = async (received: ReceivedUpload): Promise<UploadedFile> => {
    let options: UploadOptions;
    try {
      options = parseOptions(received.fields);
    } catch (error) {
      await received.pending.discard();
      throw error;
    }
    return received.pending.register({ filename: sanitiseFilename(received.filename), options });
  };

  const router = Router();
  // A drop's archive is the same upload continued: the options so far, the first file's admission.
  const multipart = receiveMultipart(
    receive,
    ({ fieldsSoFar, ...first }) => startDrop(deps, { ...first, words: parseOptions(fieldsSoFar).words }),
    { fileSize: config.maxFileSize, maxFiles: config.maxFilesPerUpload },
  );
  router.post('/upload', limiter, async (req: Request, res: Response) => {
    const uploaded = await register(await multipart(req, res));
    const base = baseUrl(req, config);
    res.status(201).setHeader('Cache-Control', 'no-store');
    // JSON unless the client asks for text (curl -H 'Accept: text/plain'): SPEC §3 answers POST with JSON.
    if (req.accepts(['application/json', 'text/plain']) === 'text/plain') res.type('text/plain').send(uploadText(base, uploaded));
    else res.json(uploadJson(base, uploaded));
  });

  const raw = receiveRaw(receive);
  router.put('/upload/:filename', limiter, async (req: Request, res: Response) => {
    const uploaded = await register(await raw(req, res));
    const base = baseUrl(req, config);
    res.status(201).setHeader('Cache-Control', 'no-store');
    if (req.accepts(['text/plain', 'application/json']) === 'application/json') res.json(uploadJson(base, uploaded));
    else res.type('text/plain').send(uploadText(base, uploaded));
  });
  router.put('/upload', () => {
    throw validationFailed([{ field: 'filename', message: 'PUT needs a file name: curl -T file https://host/upload/' }]);
  });
  return router;
}
