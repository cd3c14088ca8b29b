import { Router, type Request, type Response } from 'express';
import { keyFromBody, smallBody, type KeyRouteGuards } from '../http/key-routes.js';
import { foundOrThrow, fileLinks, minutesLeft } from '../files/files.models.js';
import { invalidDeleteToken, previewAlreadyUsed } from '../files/files.errors.js';
import type { FilesDeps } from '../files/files.usecases.js';
import { baseUrl } from '../http/base-url.js';
import { deleteFile, filePreview, fileStatus } from './lookups.usecases.js';

/** Status and the one-time preview (spend no download), and the sender's delete. */
export function createLookupsRouter(deps: FilesDeps, guards: KeyRouteGuards): Router {
  const failed = (req: Request) => () => guards.recordFailure(req);

  const status = async (req: Request, res: Response, key: unknown) => {
    const view = await foundOrThrow(await fileStatus(deps, key), failed(req));
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

  const preview = async (req: Request, res: Response, key: unknown) => {
    const result = await filePreview(deps, key);
    if (result.kind === 'used') throw previewAlreadyUsed();
    const view = await foundOrThrow(result, failed(req));
    const links = fileLinks(baseUrl(req, deps.config), view.key);
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

  const router = Router();
  router.get('/status/:key', ...guards.before, async (req, res) => status(req, res, req.params.key));
  router.post('/status', ...smallBody, ...guards.before, async (req, res) => status(req, res, keyFromBody(req)));
  router.get('/preview/:key', ...guards.before, async (req, res) => preview(req, res, req.params.key));
  router.post('/preview', ...smallBody, ...guards.before, async (req, res) => preview(req, res, keyFromBody(req)));
  router.delete('/files/:key', ...guards.before, async (req, res) => {
    const result = await deleteFile(deps, { key: req.params.key, token: req.get('x-delete-token') });
    if (result.kind === 'forbidden') throw invalidDeleteToken();
    await foundOrThrow(result, failed(req));
    res.status(204).end();
  });
  return router;
}
