import { pipeline } from 'node:stream/promises';
import contentDisposition from 'content-disposition';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { keyFromBody, smallBody, type KeyRouteGuards } from '../http/key-routes.js';
import { requester } from '../http/client.js';
import { wantsPage } from '../http/link-previews.js';
import { isIntegrityCheckFailed } from '../crypto/crypto.errors.js';
import { foundOrThrow } from '../files/files.models.js';
import type { FilesDeps } from '../files/files.usecases.js';
import { asciiFallback, servedContentType } from '../uploads/content-type.models.js';
import { fileStatus } from '../lookups/lookups.usecases.js';
import { startDownload, type Download } from './downloads.usecases.js';

/** Aborted when the client hangs up before its answer is complete. */
function clientGoneSignal(res: Response): AbortSignal {
  const controller = new AbortController();
  if (res.req.socket.destroyed) controller.abort();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

function setDownloadHeaders(res: Response, dl: Pick<Download, 'metadata' | 'size' | 'remainingUses'>): void {
  res.status(200);
  res.setHeader('Content-Type', servedContentType(dl.metadata.mimeType));
  res.setHeader('Content-Length', String(dl.size));
  res.setHeader('Content-Disposition', contentDisposition(dl.metadata.filename, { type: 'attachment', fallback: asciiFallback(dl.metadata.filename) }));
  res.setHeader('X-SHA256', dl.metadata.sha256);
  res.setHeader('X-Remaining-Uses', String(dl.remainingUses));
  res.setHeader('Cache-Control', 'no-store, no-transform');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
}

/** `GET /download/:key` (curl) and `POST /download` (the recipient page). */
export function createDownloadsRouter(deps: FilesDeps, guards: KeyRouteGuards): Router {
  const download = async (req: Request, res: Response, key: unknown) => {
    const started = await startDownload(deps, { key, who: requester(req), signal: clientGoneSignal(res) });
    if (started.kind === 'client_gone') {
      // Logged here: the request line was already written when the client hung up.
      deps.log.info('download_not_claimed', { reason: 'client_gone', request_id: req.id });
      res.destroy();
      return;
    }
    const dl = await foundOrThrow(started.kind === 'ready' ? { kind: 'found', value: started.download } : started, (outcome) => guards.settle(res, outcome));
    try {
      setDownloadHeaders(res, dl);
    } catch (error) {
      await dl.cancel();
      throw error;
    }
    if (dl.first) res.write(dl.first);
    else res.flushHeaders();
    deps.log.info('file_downloaded', { size: dl.size, remaining_uses: dl.remainingUses });
    try {
      await pipeline(dl.body, res);
    } catch (error) {
      // Mid-stream: the status is sent; abort so the client never sees a complete-looking file.
      res.destroy();
      if (isIntegrityCheckFailed(error)) deps.log.error('integrity_check_failed', { after_first_byte: true });
    } finally {
      await dl.finish();
    }
  };

  // A browser navigation or a link-preview agent gets the page, which spends nothing: before the
  // guards, so a click on a share link costs no lookup budget and is never refused as blocked.
  const redirectBrowsers: RequestHandler = (req, res, next) => {
    if (!wantsPage(req)) return next();
    res.setHeader('Cache-Control', 'no-store');
    res.redirect(303, `/d#${encodeURIComponent(String(req.params.key)).replace(/%2D/gi, '-')}`);
  };

  // HEAD answers what a GET would send, without the body and without spending a use (SPEC §10.2).
  const head = async (req: Request, res: Response, key: unknown) => {
    const view = await foundOrThrow(await fileStatus(deps, { key, who: requester(req) }), (outcome) => guards.settle(res, outcome));
    setDownloadHeaders(res, { metadata: view.metadata, size: view.record.size, remainingUses: view.record.uses });
    res.end();
  };

  const router = Router();
  router.head('/download/:key', redirectBrowsers, ...guards.before, async (req, res) => head(req, res, req.params.key));
  router.get('/download/:key', redirectBrowsers, ...guards.before, async (req, res) => download(req, res, req.params.key));
  router.post('/download', ...smallBody, ...guards.before, async (req, res) => download(req, res, keyFromBody(req)));
  return router;
}
