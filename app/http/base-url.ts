import type { Request } from 'express';
import type { Config } from '../config.js';

const SAFE_HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Base of the links we hand out: PUBLIC_URL when set. Otherwise the request's own Host header (only
 * when it is a plain host name), never X-Forwarded-Host, so a forged header cannot point links
 * elsewhere. The scheme honours X-Forwarded-Proto only from a trusted proxy (Express's req.protocol).
 */
export function baseUrl(req: Request, config: Pick<Config, 'publicUrl' | 'host' | 'port'>): string {
  if (config.publicUrl) return config.publicUrl;
  const host = req.headers.host;
  return `${req.protocol}://${host && SAFE_HOST.test(host) ? host : `${config.host}:${config.port}`}`;
}
