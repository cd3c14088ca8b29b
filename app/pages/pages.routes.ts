import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import type { Request, Response } from 'express';
import { WORDING } from '../shared/wording.js';

interface PageLimits {
  maxFileSize: number;
  maxFilesPerUpload: number;
  defaultExpiryMinutes: number;
  maxExpiryMinutes: number;
  defaultUses: number;
  maxUses: number;
  defaultWords: number;
  minWords: number;
  maxWords: number;
}

/**
 * CSP for the two pages. No 'unsafe-inline' anywhere: scripts and styles are files under /static/,
 * limits reach the scripts as data-* attributes, and scripts style elements through the CSSOM only.
 * img-src allows data: for the blank favicon; the QR code is inline SVG built with DOM APIs.
 */
export const PAGES_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

// The build copies static/ next to the compiled module (scripts/copy-assets.mjs).
const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'static');

/** The package only exports "." (require → qrcode.js); its ES module sits beside it. */
function findQrModule(): string {
  const cjsEntry = createRequire(import.meta.url).resolve('qrcode-generator');
  const path = join(dirname(cjsEntry), 'qrcode.mjs');
  if (!existsSync(path)) throw new Error(`pages: qrcode-generator ES module not found at ${path}`);
  return path;
}

function escapeAttribute(value: string): string {
  return value.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll("'", '&#39;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/**
 * Fills `<body {{limits}}>` with one escaped `data-*` attribute per limit (`maxFileSize` →
 * `data-max-file-size`), so both pages carry the same contract and scripts read it via `dataset`.
 * Any other placeholder is a programming error.
 */
function renderTemplate(template: string, limits: PageLimits): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_match, name: string) => {
    if (name !== 'limits') throw new Error(`pages: unknown template placeholder {{${name}}}`);
    return Object.entries(limits)
      .map(([key, value]) => `data-${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}="${escapeAttribute(String(value))}"`)
      .join(' ');
  });
}

const STATIC_TYPES: Record<string, string> = {
  'app.css': 'text/css; charset=utf-8',
  'common.js': 'text/javascript; charset=utf-8',
  'upload.js': 'text/javascript; charset=utf-8',
  'download.js': 'text/javascript; charset=utf-8',
};

interface Asset {
  body: Buffer;
  type: string;
}

export function createPagesRouter(opts: { limits: PageLimits }): express.Router {
  const staticDir = STATIC_DIR;
  // Files are read once at startup: the set is small and fixed, and a missing file fails fast.
  const pages = {
    upload: Buffer.from(renderTemplate(readFileSync(join(staticDir, 'index.html'), 'utf8'), opts.limits)),
    download: Buffer.from(renderTemplate(readFileSync(join(staticDir, 'd.html'), 'utf8'), opts.limits)),
  };
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(STATIC_TYPES)) {
    assets.set(name, { body: readFileSync(join(staticDir, name)), type });
  }
  assets.set('qrcode.mjs', { body: readFileSync(findQrModule()), type: 'text/javascript; charset=utf-8' });
  // The sentences the API's errors use too (app/shared/wording.ts), as a module the pages import.
  assets.set('wording.js', {
    body: Buffer.from(`export const WORDING = ${JSON.stringify(WORDING)};\n`),
    type: 'text/javascript; charset=utf-8',
  });

  const router = express.Router({ strict: false });

  const sendPage = (body: Buffer) => (_req: Request, res: Response) => {
    res.set({
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-store',
      'Referrer-Policy': 'no-referrer',
      'Content-Security-Policy': PAGES_CSP,
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
    });
    res.send(body);
  };

  router.get('/', sendPage(pages.upload));
  // The recipient's key travels in the fragment, which browsers and link-preview bots never send,
  // so serving /d is the same static page for everyone and spends nothing.
  router.get('/d', sendPage(pages.download));

  router.get('/static/:name', (req: Request<{ name: string }>, res: Response, next: express.NextFunction) => {
    const asset = assets.get(req.params.name);
    if (!asset) {
      next();
      return;
    }
    res.set({
      'Content-Type': asset.type,
      // Revalidate every time (cheap 304 via ETag) so a deploy never mixes old and new scripts.
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
    });
    res.send(asset.body);
  });

  return router;
}
