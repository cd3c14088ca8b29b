import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { AppError } from './errors.js';
import { wantsPage } from './link-previews.js';

const READS = new Set(['GET', 'HEAD']);
const CROSS = new Set(['cross-site', 'same-site']);
const DOWNLOAD_BY_KEY = /^\/download\/[^/]+\/?$/;

const crossOriginForbidden = () =>
  new AppError({ code: 'CROSS_ORIGIN_FORBIDDEN', status: 403, message: 'Requests from other sites are not accepted.' });

/** What another site may make a visitor's browser fetch here: the pages, their files, and a share link's 303 to the page. */
function openToOtherSites(req: Request): boolean {
  if (!READS.has(req.method)) return false;
  if (req.path === '/' || req.path === '/d' || req.path === '/d/' || req.path.startsWith('/static/')) return true;
  return DOWNLOAD_BY_KEY.test(req.path) && wantsPage(req);
}

/**
 * Same origin only (SPEC §10.4, docs/SECURITY.md). No response ever carries
 * `Access-Control-Allow-*`, so no other site can read an answer, and preflights are refused. A page
 * elsewhere can still make a visitor's browser *send* requests (forms, iframes, images, no-cors
 * fetches), and on a key route those would spend the visitor's lookup budget and failed-lookup
 * slots — twelve hidden iframes would get the visitor (and their whole NAT) blocked. So a request a
 * browser marks as coming from another site (`Sec-Fetch-Site: cross-site|same-site`, or, without
 * that header, an `Origin` that is not ours) reaches only the pages, their static files and the 303
 * that turns a shared `/download/<key>` link into the page; anything else is refused here, before
 * any limiter counts it. Requests without browser headers (curl, scripts) are not affected: they
 * spend their own budget.
 */
export function sameOriginOnly(options: { publicUrl: string | undefined }): RequestHandler {
  const publicOrigin = options.publicUrl ? new URL(options.publicUrl).origin : undefined;
  const fromAnotherSite = (req: Request): boolean => {
    const site = req.get('sec-fetch-site')?.toLowerCase();
    if (site !== undefined) return CROSS.has(site);
    const origin = req.get('origin');
    if (origin === undefined) return false;
    return origin !== publicOrigin && origin !== `${req.protocol}://${req.get('host') ?? ''}`;
  };
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.method === 'OPTIONS') {
      // A CORS preflight: never granted. (A plain OPTIONS without Origin gets the same answer.)
      res.setHeader('Cache-Control', 'no-store');
      return next(crossOriginForbidden());
    }
    if (fromAnotherSite(req) && !openToOtherSites(req)) return next(crossOriginForbidden());
    next();
  };
}
