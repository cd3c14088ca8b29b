import { z } from 'zod';
import type { Request } from 'express';
import type { RuntimeConfig } from '../config.js';
import { KEY_WORDS } from '../diceware/wordlist.js';

/** Upload options, from multipart fields or PUT query parameters (SPEC §3). */
export function uploadOptionsSchema(config: RuntimeConfig) {
  const number = (name: string) => z.coerce.number({ message: `${name} must be a number` });
  return z.object({
    expiry: number('expiry')
      .positive('expiry must be more than 0 minutes')
      .max(config.maxExpiryMinutes, `expiry must be at most ${config.maxExpiryMinutes} minutes`)
      .default(config.defaultExpiryMinutes),
    uses: number('uses').int('uses must be a whole number').min(1, 'uses must be at least 1').max(config.maxUses, `uses must be at most ${config.maxUses}`).default(config.defaultUses),
    words: number('words').int('words must be a whole number').min(config.dicewareWords, `words must be at least ${config.dicewareWords}`).max(KEY_WORDS.max, `words must be at most ${KEY_WORDS.max}`).default(config.dicewareWords),
  });
}

export type UploadOptions = z.infer<ReturnType<typeof uploadOptionsSchema>>;

/** Drops empty strings so an empty form field means "use the default". */
export function presentFields(source: Record<string, unknown>, names: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const value = source[name];
    if (typeof value === 'string' && value.trim() !== '') out[name] = value.trim();
  }
  return out;
}

const SAFE_HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Base of the links we hand out: PUBLIC_URL when set. Otherwise the request's own Host header (only
 * when it is a plain host name), never X-Forwarded-Host, so a forged header cannot point links
 * elsewhere. The scheme honours X-Forwarded-Proto only from a trusted proxy (Express's req.protocol).
 */
export function baseUrl(req: Request, config: RuntimeConfig): string {
  if (config.publicUrl) return config.publicUrl;
  const host = req.headers.host;
  return `${req.protocol}://${host && SAFE_HOST.test(host) ? host : `${config.host}:${config.port}`}`;
}

export function fileLinks(base: string, key: string) {
  return {
    share_url: `${base}/d#${key}`,
    download_url: `${base}/download/${key}`,
    preview_url: `${base}/preview/${key}`,
    status_url: `${base}/status/${key}`,
    delete_url: `${base}/files/${key}`,
  };
}

export function minutesLeft(expires: number, now: number): number {
  return Math.max(0, Math.round(((expires - now) / 60_000) * 10) / 10);
}
