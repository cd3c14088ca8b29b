import { fileTypeFromBuffer } from 'file-type';

/** Bytes file-type needs to recognise any format it knows. */
export const SNIFF_BYTES = 4100;

/**
 * The type by content, never by the client's claim (SPEC §3). Unknown binary content is
 * `application/octet-stream`; unknown content that is valid UTF-8 without NULs is `text/plain`.
 */
export async function detectType(sample: Buffer): Promise<string> {
  const found = await fileTypeFromBuffer(sample);
  if (found) return found.mime;
  if (sample.length === 0) return 'application/octet-stream';
  if (!sample.includes(0) && isUtf8Prefix(sample)) return markupType(sample) ?? 'text/plain';
  return 'application/octet-stream';
}

// file-type does not recognise HTML or SVG text: without this, a page would be labelled text/plain
// and could never be told apart from an active type (SPEC §3 serves active types as octet-stream).
// Linear by construction: leading comments are skipped with indexOf, never with a nested regex
// quantifier (`(?:<!--[\s\S]*?-->\s*)*` backtracked exponentially on `<!---->` repeated).
const MARKUP_WINDOW = 1024;
const SPACE = /\s*/y; // \s includes the BOM (U+FEFF)
const MARKUP_TAG = /<(!doctype\s+html|html|head|body|script|iframe|meta|title|style|div|a|img|svg|form)[\s/>]/iy;

function markupType(sample: Buffer): string | null {
  const start = sample.subarray(0, MARKUP_WINDOW).toString('utf8');
  let at = skipSpace(start, 0);
  // A comment ends at the first `-->` after its `<!--`, as an HTML parser ends it.
  while (start.startsWith('<!--', at)) {
    const end = start.indexOf('-->', at + 4);
    if (end === -1) return null;
    at = skipSpace(start, end + 3);
  }
  MARKUP_TAG.lastIndex = at;
  const match = MARKUP_TAG.exec(start);
  if (!match) return null;
  return match[1]!.toLowerCase() === 'svg' ? 'image/svg+xml' : 'text/html';
}

function skipSpace(text: string, from: number): number {
  SPACE.lastIndex = from;
  SPACE.exec(text);
  return SPACE.lastIndex;
}

function isUtf8Prefix(sample: Buffer): boolean {
  // The sample may end inside a multi-byte character: retry without up to three trailing bytes.
  for (let cut = 0; cut <= 3 && cut < sample.length; cut += 1) {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(sample.subarray(0, sample.length - cut));
      return true;
    } catch {
      // try a shorter prefix
    }
  }
  return false;
}

/** `ALLOWED_MIME_TYPES` check: empty = all; `type/*` wildcards. */
export function isAllowedType(type: string, allowed: string[]): boolean {
  if (allowed.length === 0) return true;
  return allowed.some((pattern) => (pattern.endsWith('/*') ? type.startsWith(pattern.slice(0, -1)) : pattern === type));
}

// Types a browser would execute or render: always sent as a download of octet-stream (SPEC §3).
const ACTIVE =
  /^(text\/html|application\/xhtml\+xml|image\/svg\+xml|text\/xml|application\/xml|[a-z]+\/[a-z.+-]*\+xml|text\/javascript|application\/javascript|application\/ecmascript|text\/ecmascript|application\/x-javascript|text\/css|application\/wasm)$/;

export function servedContentType(type: string): string {
  return ACTIVE.test(type) ? 'application/octet-stream' : type;
}

// Path parts, C0/C1 controls, bidi marks, overrides and isolates (the Arabic letter mark too), zero-width
// and invisible characters (the word joiner and invisible operators, the Mongolian vowel separator)
// and line separators.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/g;

/**
 * Longest stored filename, in UTF-16 code units: what common filesystems accept (NTFS, APFS), and
 * what sizes the first sealed-metadata bucket (at most 3 UTF-8 bytes per unit: docs/FORMAT.md).
 */
export const MAX_FILENAME_UNITS = 255;

/**
 * The client's filename as safe metadata: no path, no control or bidi characters, at most 255
 * UTF-16 units, always a well-formed string (a lone surrogate becomes U+FFFD), cut at a character
 * boundary with a short extension kept — so no header built from it can fail later.
 */
export function sanitiseFilename(raw: string | undefined): string {
  const name = sanitiseSegment((raw ?? '').toWellFormed().split(/[/\\]/).pop() ?? '');
  return name === '' ? 'file' : name;
}

/** One path segment cleaned as a filename is (see sanitiseFilename); '' when nothing is left. */
export function sanitiseSegment(raw: string): string {
  const name = raw.toWellFormed().replace(UNSAFE, '').replace(/\s+/g, ' ').trim().replace(/^\.+/, '');
  if (name.length <= MAX_FILENAME_UNITS) return name;
  const ext = /\.[A-Za-z0-9]{1,10}$/.exec(name)?.[0] ?? '';
  return truncateUnits(name, MAX_FILENAME_UNITS - ext.length) + ext;
}

/** At most the first `max` UTF-16 units of a well-formed `text`, never half of a surrogate pair. */
export function truncateUnits(text: string, max: number): string {
  if (text.length <= max) return text;
  // Well-formed: a high surrogate just before the cut has its pair just after it.
  return text.slice(0, isHighSurrogate(text.charCodeAt(max - 1)) ? max - 1 : max);
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

/**
 * The `filename=` fallback of Content-Disposition: printable ASCII only (accents dropped, other
 * characters and quotes as `_`); the exact name travels in RFC 5987 `filename*` (SPEC §3). The
 * compatibility decomposition turns look-alikes into ASCII (`․` U+2024 and `．` into `.`, `／` into
 * `/`): what the name's own sanitising removed must not come back here, since `curl -J` saves under
 * this fallback (`․bashrc` would land as `.bashrc`). So no `/` and no leading dot.
 */
export function asciiFallback(name: string): string {
  const ascii = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^\x20-\x7e]|["\\%/]/g, '_')
    .replace(/^[. ]+/, '');
  return ascii === '' ? 'file' : ascii;
}
