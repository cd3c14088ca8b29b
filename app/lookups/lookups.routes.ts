import { Router, type Request, type Response } from 'express';
import { keyFromBody, type KeyRouteGuards } from '../http/key-routes.js';
import { foundOrThrow, fileLinks, minutesLeft } from '../files/files.models.js';
import { invalidDeleteToken, previewAlreadyUsed } from '../files/files.errors.js';
import type { FilesDeps } from '../files/files.usecases.js';
import { baseUrl } from '../http/base-url.js';
import { redirectToPage } from '../http/link-previews.js';
import { requester } from '../http/client.js';
import { deleteFile, filePreview, fileReceipt, fileStatus, type FileView } from './lookups.usecases.js';

/** A drop's entries as `files: [{name, size}]` (SPEC §10.7); nothing for a single file. */
function dropFiles(view: FileView): { files?: { name: string; size: number }[] } {
  return view.metadata.files ? { files: view.metadata.files.map(({ name, size }) => ({ name, size })) } : {};
}

/** Status and the one-time preview (spend no download), and the sender's delete. */
export function createLookupsRouter(deps: FilesDeps, guards: KeyRouteGuards): Router {
  const settle = (res: Response) => (outcome: 'hit' | 'miss') => guards.settle(res, outcome);

  const status = async (req: Request, res: Response, key: unknown) => {
    const view = await foundOrThrow(await fileStatus(deps, { key, who: requester(req) }), settle(res));
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
      ...dropFiles(view),
    });
  };

  const preview = async (req: Request, res: Response, key: unknown) => {
    // The lookup's slot is settled before the preview is spent: a settle that fails (503) leaves it unused.
    const result = await filePreview(deps, { key, who: requester(req), beforeSpending: () => guards.settle(res, 'hit') });
    if (result.kind === 'used') {
      await guards.settle(res, 'hit');
      throw previewAlreadyUsed();
    }
    const view = await foundOrThrow(result, settle(res));
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
      curl_example: `curl -fOJ -H 'X-Key: ${view.key}' ${baseUrl(req, deps.config)}/download`,
      created_at: new Date(view.record.created).toISOString(),
      sha256: view.metadata.sha256,
      ...dropFiles(view),
    });
  };

  const router = Router();
  router.get('/status/:key', ...guards.before, async (req, res) => status(req, res, req.params.key));
  router.post('/status', guards.body, ...guards.before, async (req, res) => status(req, res, keyFromBody(req)));
  // HEAD never spends anything (SPEC §10.2): not even the one-time preview. A link-preview agent
  // unfurling the upload's preview_url, or a browser navigation, gets the page as /download/:key does
  // (docs/SECURITY.md), so neither uses up the preview meant for the recipient.
  router.head('/preview/:key', redirectToPage, ...guards.before, async (req, res) => status(req, res, req.params.key));
  router.get('/preview/:key', redirectToPage, ...guards.before, async (req, res) => preview(req, res, req.params.key));
  router.post('/preview', guards.body, ...guards.before, async (req, res) => preview(req, res, keyFromBody(req)));
  const remove = async (req: Request, res: Response, key: unknown) => {
    const result = await deleteFile(deps, { key, token: req.get('x-delete-token'), who: requester(req) });
    if (result.kind === 'forbidden') {
      await guards.settle(res, 'hit');
      throw invalidDeleteToken();
    }
    await foundOrThrow(result, settle(res));
    res.status(204).end();
  };
  // The receipt: the key in the body, the delete token in its header, never in a URL.
  router.post('/files/receipt', guards.body, ...guards.before, async (req, res) => {
    const result = await fileReceipt(deps, { key: keyFromBody(req), token: req.get('x-delete-token'), who: requester(req) });
    if (result.kind === 'forbidden') {
      await guards.settle(res, 'hit');
      throw invalidDeleteToken();
    }
    const receipt = await foundOrThrow(result, settle(res));
    const at = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      state: receipt.state,
      uses_total: receipt.totalUses,
      uses_left: receipt.usesLeft,
      previewed_at: at(receipt.previewedAt),
      downloads: receipt.downloads.map((d) => ({ started_at: at(d.startedAt), completed_at: at(d.completedAt) })),
      resumes: receipt.resumes,
      last_resumed_at: at(receipt.lastResumedAt),
      refused_after_end: receipt.refusedAfterEnd,
    });
  });

  // The key in a header or the body keeps it out of URLs (and so out of proxies' access logs);
  // DELETE /files/:key stays for Raven Zero's clients.
  router.delete('/files', guards.body, ...guards.before, async (req, res) => remove(req, res, req.get('x-key') ?? keyFromBody(req)));
  router.delete('/files/:key', ...guards.before, async (req, res) => remove(req, res, req.params.key));
  return router;
}
