import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../shared/logger.js';

// A client may name its request, but only with a short, plain token: no spaces, quotes or control
// characters can reach our logs or headers through it.
const WELL_FORMED_ID = /^[A-Za-z0-9._:-]{8,128}$/;

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
  }
  interface Locals {
    /** Set by handlers that want fields on their request_completed line (never secrets). */
    logFields?: Record<string, unknown>;
  }
}

export function requestId() {
  return (req: Request, res: Response, next: NextFunction) => {
    const given = req.get('x-request-id');
    req.id = given !== undefined && WELL_FORMED_ID.test(given) ? given : randomUUID();
    res.setHeader('X-Request-ID', req.id);
    next();
  };
}

/**
 * One `request_completed` line per request. The route is Express's template (`/download/:key`),
 * never the raw path, so a key in a URL cannot reach the log. Unmatched paths log as `*`.
 */
export function requestLog(log: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const started = process.hrtime.bigint();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      const route = routeTemplate(req);
      const aborted = !res.writableFinished;
      log.info('request_completed', {
        request_id: req.id,
        method: req.method,
        route,
        status_code: res.statusCode,
        duration_ms: Math.round(durationMs * 100) / 100,
        ...(aborted ? { aborted: true } : {}),
        ...res.locals.logFields,
      });
    };
    res.on('finish', finish);
    res.on('close', finish);
    next();
  };
}

function routeTemplate(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path !== 'string') return '*';
  return (req.baseUrl + path).replace(/\/+$/, '') || '/';
}
