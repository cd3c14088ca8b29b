import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Label values come only from these functions: each maps whatever it is given onto a small fixed
 * set, so no request, file or client can add a series (a raw path or a key never becomes a label).
 */

const OTHER = 'other';

/** `value` when it is one of `allowed`, else `other`. */
export function oneOf<T extends string>(allowed: readonly T[], value: unknown): T | typeof OTHER {
  return typeof value === 'string' && (allowed as readonly string[]).includes(value) ? (value as T) : OTHER;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'] as const;

export function methodLabel(method: unknown): string {
  return oneOf(METHODS, method);
}

/** `2xx`, `4xx`, …; anything that is not an HTTP status is `other`. */
export function statusClass(status: unknown): string {
  return typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : OTHER;
}

/**
 * The route label is Express's template as the request log writes it (`/download/:key`, `*` for
 * no route). A template is code, not input, but the shape is checked anyway: a label that could
 * hold a key or an id would defeat the point.
 */
export function routeLabel(route: unknown): string {
  if (route === '*') return '*';
  return typeof route === 'string' && route.length <= 64 && /^\/[A-Za-z0-9/:._-]*$/.test(route) ? route : OTHER;
}

/** A count or size that may be added to a counter: finite and not negative, else nothing. */
export function amount(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;
}

/** The `name:value` lines of a Redis INFO answer (sections and blank lines skipped). */
export function redisInfoFields(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}

/**
 * Checks `Authorization: Bearer <token>` against METRICS_TOKEN. Both sides are hashed first, so
 * the comparison takes the same time whatever the length or the first wrong character.
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '')?.[1] ?? '';
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}
