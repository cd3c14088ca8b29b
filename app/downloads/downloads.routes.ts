import { pipeline } from 'node:stream/promises';
import contentDisposition from 'content-disposition';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { isIntegrityCheckFailed } from '../crypto/crypto.errors.js';
import { parseResumeCapability } from '../crypto/resume.js';
import { foundOrThrow } from '../files/files.models.js';
import { fileNotFound } from '../files/files.errors.js';
import { requester } from '../http/client.js';
import { AppError, validationFailed } from '../http/errors.js';
import { keyFromBody, type KeyRouteGuards } from '../http/key-routes.js';
import { redirectToPage } from '../http/link-previews.js';
import { fileStatus } from '../lookups/lookups.usecases.js';
import { asciiFallback, servedContentType } from '../uploads/content-type.models.js';
import {
  createTicket,
  downloadByKey,
  downloadByTicket,
  type Download,
  type DownloadsDeps,
  type DownloadStart,
  type RangeRequest,
  type ResumeRequest,
} from './downloads.usecases.js';

/** Aborted when the client hangs up before its answer is complete. */
function clientGoneSignal(res: Response): AbortSignal {
  const controller = new AbortController();
  if (res.req.socket.destroyed) controller.abort();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** One range of `Range: bytes=…` (RFC 9110 §14.1.2); undefined for anything else, which is then ignored. */
function parseRange(header: string | undefined): RangeRequest | undefined {
  const match = header === undefined ? null : /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!match) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') return { suffix: Number(last) };
  return last === '' ? { start: Number(first) } : { start: Number(first), end: Number(last) };
}

/** A resume asks with both a Range and an If-Range holding a capability; anything less is a new download. */
function resumeRequest(req: Request): ResumeRequest | undefined {
  const range = parseRange(req.get('range'));
  const capability = parseResumeCapability(req.get('if-range'));
  return range && capability ? { range, capability } : undefined;
}

const rangeNotSatisfiable = (size: number) =>
  new AppError({
    code: 'RANGE_NOT_SATISFIABLE',
    status: 416,
    message: 'No byte of the file lies in the range asked for.',
    headers: { 'Content-Range': `bytes */${size}` },
  });

const methodNotAllowed = () =>
  new AppError({ code: 'METHOD_NOT_ALLOWED', status: 405, message: 'This address answers GET only.', headers: { Allow: 'GET' } });

function setDownloadHeaders(res: Response, dl: Pick<Download, 'metadata' | 'size' | 'remainingUses' | 'range' | 'etag'>): void {
  const range = dl.range;
  res.status(range ? 206 : 200);
  res.setHeader('Content-Type', servedContentType(dl.metadata.mimeType));
  res.setHeader('Content-Length', String(range ? range.length : dl.size));
  if (range) res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${dl.size}`);
  res.setHeader(
    'Content-Disposition',
    contentDisposition(dl.metadata.filename, { type: 'attachment', fallback: asciiFallback(dl.metadata.filename) }),
  );
  res.setHeader('X-SHA256', dl.metadata.sha256);
  if (dl.remainingUses !== null) res.setHeader('X-Remaining-Uses', String(dl.remainingUses));
  // The ETag is the resume capability (SPEC §10.2): a strong validator that only this download's client holds.
  res.setHeader('Accept-Ranges', dl.etag ? 'bytes' : 'none');
  if (dl.etag) res.setHeader('ETag', dl.etag);
  res.setHeader('Cache-Control', 'no-store, no-transform');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
}

/**
 * `GET /download/:key` (curl), `POST /download` (a form), and the recipient page's resumable pair:
 * `POST /download/ticket` then `GET /download/t/:ticket`. Each also finishes a started download
 * from `Range` + `If-Range` (SPEC §10.2).
 */
export function createDownloadsRouter(deps: DownloadsDeps, guards: KeyRouteGuards): Router {
  const send = async (req: Request, res: Response, started: DownloadStart, settle: (outcome: 'hit' | 'miss') => Promise<void>) => {
    if (started.kind === 'client_gone') {
      // Logged here: the request line was already written when the client hung up.
      deps.log.info('download_not_claimed', { reason: 'client_gone', request_id: req.id });
      res.destroy();
      return;
    }
    if (started.kind === 'unsatisfiable') {
      await settle('hit');
      throw rangeNotSatisfiable(started.size);
    }
    if (started.kind !== 'ready') {
      await foundOrThrow(started, settle); // 410 or 404
      return;
    }
    const dl = started.download;
    // Claimed, leased, opened (and its resume record written): any failure before the first byte
    // gives all of it back (SPEC §10.1), a failed settle of the lookup's slot (a Redis script) included.
    try {
      await settle('hit');
      setDownloadHeaders(res, dl);
    } catch (error) {
      await dl.cancel();
      throw error;
    }
    if (dl.first) res.write(dl.first);
    else res.flushHeaders();
    if (!dl.range) deps.log.info('file_downloaded', { size: dl.size, remaining_uses: dl.remainingUses });
    let complete = false;
    try {
      await pipeline(dl.body, res);
      complete = true;
    } catch (error) {
      // Mid-stream: the status is sent; abort so the client never sees a complete-looking file.
      res.destroy();
      if (isIntegrityCheckFailed(error)) deps.log.error('integrity_check_failed', { after_first_byte: true });
    } finally {
      await dl.finish({ complete });
    }
  };

  const byKey = async (req: Request, res: Response, key: unknown) => {
    const resume = resumeRequest(req);
    const started = await downloadByKey(deps, { key, who: requester(req), signal: clientGoneSignal(res), ...(resume ? { resume } : {}) });
    await send(req, res, started, (outcome) => guards.settle(res, outcome));
  };

  // A ticket is a capability of 256 random bits: an unknown one is not a failed passphrase lookup.
  const byTicket = async (req: Request, res: Response) => {
    const capability = parseResumeCapability(`"r1.${String(req.params.ticket)}"`);
    if (!capability) throw fileNotFound();
    const ifRange = parseResumeCapability(req.get('if-range'));
    const range = ifRange?.etag === capability.etag ? parseRange(req.get('range')) : undefined;
    const started = await downloadByTicket(deps, { capability, signal: clientGoneSignal(res), ...(range ? { range } : {}) });
    await send(req, res, started, () => Promise.resolve());
  };

  // HEAD answers what a GET would send, without the body and without spending a use (SPEC §10.2).
  const head = async (req: Request, res: Response, key: unknown) => {
    const view = await foundOrThrow(await fileStatus(deps, { key, who: requester(req) }), (outcome) => guards.settle(res, outcome));
    setDownloadHeaders(res, { metadata: view.metadata, size: view.record.size, remainingUses: view.record.uses, range: null, etag: null });
    res.end();
  };

  const router = Router();
  router.post('/download/ticket', guards.body, ...guards.before, async (req, res) => {
    const { token } = await foundOrThrow(await createTicket(deps, { key: keyFromBody(req), who: requester(req) }), (outcome) =>
      guards.settle(res, outcome),
    );
    res
      .status(201)
      .setHeader('Cache-Control', 'no-store')
      .json({ download_url: `/download/t/${token}` });
  });
  router.head('/download/t/:ticket', () => {
    throw methodNotAllowed();
  });
  router.get('/download/t/:ticket', ...guards.throttle, async (req, res) => byTicket(req, res));
  // The key in a header keeps it out of URLs, and a GET (unlike a POST with the key in its body) is
  // what `curl -C -` can resume.
  const keyFromHeader: RequestHandler = (req, _res, next) => {
    if (req.get('x-key') === undefined)
      return next(validationFailed([{ field: 'X-Key', message: 'Send the passphrase in the X-Key header, or POST it as `key`.' }]));
    next();
  };
  router.head('/download', keyFromHeader, ...guards.before, async (req, res) => head(req, res, req.get('x-key')));
  router.get('/download', keyFromHeader, ...guards.before, async (req, res) => byKey(req, res, req.get('x-key')));
  router.head('/download/:key', redirectToPage, ...guards.before, async (req, res) => head(req, res, req.params.key));
  router.get('/download/:key', redirectToPage, ...guards.before, async (req, res) => byKey(req, res, req.params.key));
  router.post('/download', guards.body, ...guards.before, async (req, res) => byKey(req, res, keyFromBody(req)));
  return router;
}
