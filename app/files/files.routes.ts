import { pipeline } from 'node:stream/promises';
import contentDisposition from 'content-disposition';
import express, { Router, type Request, type RequestHandler, type Response } from 'express';
import multer from 'multer';
import type { RuntimeConfig } from '../config.js';
import { encryptingEngine } from '../http/multer-engine.js';
import { AppError, validationFailed } from '../http/errors.js';
import { zodDetails } from '../http/error-handler.js';
import { asciiFallback, servedContentType, sanitiseFilename } from './content-type.models.js';
import { storeEncrypted, type StoredBlob } from './encrypting-store.js';
import { fileTooLarge, missingFile, uploadAborted } from './files.errors.js';
import { baseUrl, fileLinks, minutesLeft, presentFields, uploadOptionsSchema, type UploadOptions } from './files.models.js';
import { deleteFile, filePreview, fileStatus, registerUpload, startDownload, type FilesDeps, type UploadedFile } from './files.usecases.js';

export interface FilesRouterOptions {
  deps: FilesDeps;
  uploadLimiter: RequestHandler;
  /** Runs before any KDF work on key-taking routes: lookup rate limit and IP blocks. */
  lookupGuards: RequestHandler[];
  /** Counts a lookup that matched no file against the client (brute-force accounting). */
  recordFailure: (req: Request) => Promise<void>;
}

const OPTION_NAMES = ['expiry', 'uses', 'words'];

function parseOptions(config: RuntimeConfig, source: Record<string, unknown>): UploadOptions {
  const parsed = uploadOptionsSchema(config).safeParse(presentFields(source, OPTION_NAMES));
  if (!parsed.success) throw validationFailed(zodDetails(parsed.error));
  return parsed.data;
}

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
  };
}

/** The plain-text answer for `curl -T`: the share URL alone on the first line, then ready-to-paste commands. */
function uploadText(base: string, file: UploadedFile): string {
  const links = fileLinks(base, file.key);
  return [
    links.share_url,
    `passphrase: ${file.key}`,
    `expires:    ${file.expiresAt.toISOString()}`,
    `uses:       ${file.uses}`,
    `sha256:     ${file.sha256}`,
    `download:   curl -fOJ ${links.download_url}`,
    `delete:     curl -X DELETE -H 'X-Delete-Token: ${file.deleteToken}' ${links.delete_url}`,
    '',
  ].join('\n');
}

function keyFromBody(req: Request): unknown {
  const body = req.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body.key : undefined;
}

export function createFilesRouter({ deps: shared, uploadLimiter, lookupGuards, recordFailure }: FilesRouterOptions): Router {
  const router = Router();
  const deps = shared;
  const forRequest = (req: Request): FilesDeps => ({ ...shared, onFailedLookup: () => recordFailure(req) });
  const { config } = deps;
  const limits = { maxFileSize: config.maxFileSize, maxStorageBytes: config.maxStorageBytes, allowedMimeTypes: config.allowedMimeTypes, stallMs: config.uploadStallSeconds * 1000 };
  const store = (source: import('node:stream').Readable, expectedSize?: number) =>
    storeEncrypted({ source, storage: deps.storage, limits, ...(expectedSize !== undefined ? { expectedSize } : {}) });

  const upload = multer({
    storage: encryptingEngine((stream) => store(stream), (blobId) => deps.storage.discard(blobId)),
    // One byte over the limit lets our own pipeline see the overflow and answer 413 itself.
    limits: { files: 1, fileSize: config.maxFileSize + 1, fields: 10, fieldSize: 1024, parts: 12 },
    defParamCharset: 'utf8',
  });
  const smallBody = [express.urlencoded({ extended: false, limit: '2kb' }), express.json({ limit: '2kb' })];

  router.post('/upload', uploadLimiter, upload.single('file'), async (req, res) => {
    const file = req.file as (Express.Multer.File & { stored?: StoredBlob }) | undefined;
    if (!file?.stored) throw missingFile();
    let options: UploadOptions;
    try {
      options = parseOptions(config, req.body as Record<string, unknown>);
    } catch (error) {
      await deps.storage.discard(file.stored.blobId);
      throw error;
    }
    const uploaded = await registerUpload(deps, { stored: file.stored, filename: sanitiseFilename(file.originalname), expiryMinutes: options.expiry, uses: options.uses, words: options.words });
    res.status(201).setHeader('Cache-Control', 'no-store').json(uploadJson(baseUrl(req, config), uploaded));
  });

  // `curl -T file https://host/upload/` sends PUT /upload/<file name>.
  router.put('/upload/:filename', uploadLimiter, async (req, res) => {
    const options = parseOptions(config, req.query as Record<string, unknown>);
    const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
    if (declared !== undefined && declared > config.maxFileSize) throw fileTooLarge(config.maxFileSize);
    let aborted = false;
    req.once('aborted', () => (aborted = true));
    let stored: StoredBlob;
    try {
      stored = await store(req, declared);
    } catch (error) {
      // Our own refusals (413, 415, 507, stall) destroy the request stream, which also emits
      // 'aborted': keep their answer, and call it an abort only for an error that is not ours.
      if (aborted && !(error instanceof AppError)) throw uploadAborted();
      throw error;
    }
    const uploaded = await registerUpload(deps, { stored, filename: sanitiseFilename(String(req.params.filename)), expiryMinutes: options.expiry, uses: options.uses, words: options.words });
    const base = baseUrl(req, config);
    res.status(201).setHeader('Cache-Control', 'no-store');
    if (req.accepts(['text/plain', 'application/json']) === 'application/json') res.json(uploadJson(base, uploaded));
    else res.type('text/plain').send(uploadText(base, uploaded));
  });
  router.put('/upload', (_req, _res) => {
    throw validationFailed([{ field: 'filename', message: 'PUT needs a file name: curl -T file https://host/upload/' }]);
  });

  const download = async (req: Request, res: Response, keyInput: unknown) => {
    const dl = await startDownload(forRequest(req), keyInput);
    res.status(200);
    res.setHeader('Content-Type', servedContentType(dl.metadata.mimeType));
    res.setHeader('Content-Length', String(dl.size));
    res.setHeader('Content-Disposition', contentDisposition(dl.metadata.filename, { type: 'attachment', fallback: asciiFallback(dl.metadata.filename) }));
    res.setHeader('X-SHA256', dl.metadata.sha256);
    res.setHeader('X-Remaining-Uses', String(dl.remainingUses));
    res.setHeader('Cache-Control', 'no-store, no-transform');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
    if (dl.first) res.write(dl.first);
    else res.flushHeaders();
    deps.log.info('file_downloaded', { size: dl.size, remaining_uses: dl.remainingUses });
    try {
      await pipeline(dl.body, res);
    } catch (error) {
      // Mid-stream: the status is sent; abort so the client never sees a complete-looking file.
      res.destroy();
      if ((error as { code?: string }).code === 'INTEGRITY_CHECK_FAILED') deps.log.error('integrity_check_failed', { after_first_byte: true });
    } finally {
      // Only now may the janitor overwrite a burned blob: shredding it while we still read it
      // would cut this very download short.
      // If Redis cannot take the job now, the record is already gone and the sweep shreds the orphan.
      await dl.finished().catch((error: unknown) => deps.log.error('shred_enqueue_failed', { error: (error as Error).message }));
    }
  };

  // A browser navigation or a link-preview bot gets the page, which spends nothing: before the
  // lookup guards, so a click on a share link costs no lookup budget and is never refused as blocked.
  const redirectBrowsers: RequestHandler = (req, res, next) => {
    if (req.accepts(['application/octet-stream', 'text/html']) !== 'text/html') return next();
    res.setHeader('Cache-Control', 'no-store');
    res.redirect(303, `/d#${encodeURIComponent(String(req.params.key)).replace(/%2D/gi, '-')}`);
  };
  router.get('/download/:key', redirectBrowsers, ...lookupGuards, async (req, res) => download(req, res, req.params.key));
  router.post('/download', ...smallBody, ...lookupGuards, async (req, res) => download(req, res, keyFromBody(req)));

  const statusJson = async (req: Request, res: Response, keyInput: unknown) => {
    const view = await fileStatus(forRequest(req), keyInput);
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      key: view.key,
      status: 'active',
      remaining_uses: view.record.uses,
      expires_at: new Date(view.record.expires).toISOString(),
      is_accessible: true,
      filename: view.metadata.filename,
      size: view.record.size,
      mime_type: view.metadata.mimeType,
    });
  };
  router.get('/status/:key', ...lookupGuards, async (req, res) => statusJson(req, res, req.params.key));
  router.post('/status', ...smallBody, ...lookupGuards, async (req, res) => statusJson(req, res, keyFromBody(req)));

  const previewJson = async (req: Request, res: Response, keyInput: unknown) => {
    const view = await filePreview(forRequest(req), keyInput);
    const links = fileLinks(baseUrl(req, config), view.key);
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      key: view.key,
      filename: view.metadata.filename,
      size: view.record.size,
      mime_type: view.metadata.mimeType,
      expiry: new Date(view.record.expires).toISOString(),
      uses: view.record.uses,
      minutes_left: minutesLeft(view.record.expires, deps.now().getTime()),
      download_url: links.download_url,
      curl_example: `curl -fOJ ${links.download_url}`,
      created_at: new Date(view.record.created).toISOString(),
      sha256: view.metadata.sha256,
    });
  };
  router.get('/preview/:key', ...lookupGuards, async (req, res) => previewJson(req, res, req.params.key));
  router.post('/preview', ...smallBody, ...lookupGuards, async (req, res) => previewJson(req, res, keyFromBody(req)));

  router.delete('/files/:key', ...lookupGuards, async (req, res) => {
    await deleteFile(forRequest(req), req.params.key, req.get('x-delete-token'));
    res.status(204).end();
  });

  return router;
}
