import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { AppError } from './errors.js';

const SAFE_METHODS = new Set(['GET', 'HEAD']);
const CROSS = new Set(['cross-site', 'same-site']);

export const crossOriginForbidden = () =>
  new AppError({ code: 'CROSS_ORIGIN_FORBIDDEN', status: 403, message: 'Requests from other sites are not accepted.' });

/**
 * Same-origin only (docs/SECURITY.md). No response ever carries `Access-Control-Allow-*`, so no
 * other site can read an answer; preflights are refused. Because a page elsewhere can still *send*
 * simple requests (a form post, an <img> or no-cors fetch of /status/<guess>), and those would
 * spend a visitor's IP budget, uses and lookup guesses, this guard also refuses, before any limiter
 * counts them:
 * - any request other than GET/HEAD that a browser marks cross-site or same-site
 *   (`Sec-Fetch-Site`), or, when that header is absent, whose `Origin` is not this service;
 * - a GET/HEAD that a browser marks cross-site and is not a top-level navigation (a shared link
 *   to /download/<key> still works: it is a navigation and answers 303 to the page).
 * Requests without browser headers (curl, scripts) are not affected: they spend their own budget.
 */
export function sameOriginOnly(options: { publicUrl: string | undefined }): RequestHandler {
  const publicOrigin = options.publicUrl ? new URL(options.publicUrl).origin : undefined;
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.method === 'OPTIONS') {
      // A CORS preflight: never granted. (A plain OPTIONS without Origin gets the same answer.)
      res.setHeader('Cache-Control', 'no-store');
      next(crossOriginForbidden());
      return;
    }
    const site = req.get('sec-fetch-site')?.toLowerCase();
    if (SAFE_METHODS.has(req.method)) {
      const mode = req.get('sec-fetch-mode')?.toLowerCase();
      if (site !== undefined && CROSS.has(site) && mode !== undefined && mode !== 'navigate') return next(crossOriginForbidden());
      return next();
    }
    if (site !== undefined) return CROSS.has(site) ? next(crossOriginForbidden()) : next();
    const origin = req.get('origin');
    if (origin === undefined) return next();
    const own = [publicOrigin, `${req.protocol}://${req.get('host') ?? ''}`];
    return own.includes(origin) ? next() : next(crossOriginForbidden());
  };
}
