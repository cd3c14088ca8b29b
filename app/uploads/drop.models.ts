/**
 * Names inside a drop (SPEC §10.7): the client's relative paths, made safe to extract anywhere, and
 * the drop's own name. Pure functions; docs/DECISIONS.md "Drops" lists the rules.
 */
import { MAX_FILENAME_UNITS, sanitiseFilename, sanitiseSegment, truncateUnits } from './content-type.models.js';
import { archiveOverheadBound } from './drop-archive.js';

/** A path longer than this (in characters) keeps only its file name: no extractor chokes on it. */
export const MAX_ENTRY_PATH_CHARACTERS = 1024;
/** The most UTF-8 bytes an entry name can take (4 per character at worst). */
export const MAX_ENTRY_NAME_BYTES = 4 * MAX_ENTRY_PATH_CHARACTERS;

/**
 * The largest plaintext any upload stores: a drop's archive, MAX_FILE_SIZE of its files' bytes plus
 * the zip's own records for MAX_FILES_PER_UPLOAD entries (a single file is never larger).
 */
export function maxArchiveBytes(config: { maxFileSize: number; maxFilesPerUpload: number }): number {
  return config.maxFileSize + archiveOverheadBound({ entries: config.maxFilesPerUpload, nameBytes: MAX_ENTRY_NAME_BYTES });
}

// Characters Windows refuses in a name (Explorer fails the whole extraction on them); `:` would also
// name an NTFS alternate data stream.
const WINDOWS_RESERVED = /[<>:"|?*]/g;
// Device names Windows opens instead of a file, whatever the extension.
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;

/**
 * One segment of an entry path: cleaned like a filename today (no control, bidi or zero-width
 * characters, no leading dots, so never `.` or `..`), then made valid on Windows too.
 */
function entrySegment(raw: string): string {
  let segment = sanitiseSegment(raw.replace(WINDOWS_RESERVED, '_'));
  // Windows drops trailing dots and spaces, which would silently merge two names.
  segment = segment.replace(/[. ]+$/, '');
  if (WINDOWS_DEVICE.test(segment)) segment = `_${truncateUnits(segment, MAX_FILENAME_UNITS - 1)}`;
  return segment;
}

/**
 * A client's relative path (`photos/2026/a.jpg`, a curl filename, anything) as segments that can
 * only land inside the folder it is extracted to: no absolute path, drive letter, UNC prefix, `..`
 * or empty segment. Never empty: a name with nothing left is `file`.
 */
export function entrySegments(raw: string | undefined): string[] {
  const withoutDrive = (raw ?? '').toWellFormed().replace(/^[A-Za-z]:/, '');
  const segments = withoutDrive
    .split(/[/\\]/)
    .map(entrySegment)
    .filter((s) => s !== '');
  if (segments.length === 0) return ['file'];
  if (Array.from(segments.join('/')).length > MAX_ENTRY_PATH_CHARACTERS) return segments.slice(-1);
  return segments;
}

/**
 * `a (2).jpg` for the second `a.jpg`; a name without an extension gets the number at its end. The
 * stem is shortened so that the result stays within MAX_FILENAME_UNITS, as every name does.
 */
function numbered(name: string, n: number): string {
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  const suffix = ` (${n})${ext}`;
  // An extension too long to leave room for the stem is not kept apart: the number goes at the end.
  if (suffix.length >= MAX_FILENAME_UNITS) return truncateUnits(name, MAX_FILENAME_UNITS - ` (${n})`.length) + ` (${n})`;
  return truncateUnits(stem, MAX_FILENAME_UNITS - suffix.length) + suffix;
}

// Case-insensitive and normalised, as on Windows and macOS: `A.jpg` and `a.jpg` are one file there.
// Upper then lower case folds what lower case alone keeps apart (`Σ` and final `ς`), and the second
// normalisation what case mapping leaves decomposed (`J̌` and `ǰ`). Folding too much only numbers a name.
const keyOf = (name: string) => name.normalize('NFD').toUpperCase().toLowerCase().normalize('NFC');

/** A folder of the drop: an id that names it in the tables below, and its path as first spelled. */
interface Folder {
  id: number;
  path: string;
}

const ROOT: Folder = { id: 0, path: '' };

const pathIn = (parent: Folder, name: string) => (parent.path === '' ? name : `${parent.path}/${name}`);

/**
 * Gives each entry of one drop its final path, in arrival order. A name already taken (by a file,
 * or by a folder of another entry) gets the first free ` (n)`; a folder whose name a file already
 * has is renamed the same way, consistently for every entry under it; folders that differ only by
 * case are merged under the first spelling.
 *
 * Names are looked up by their folder's id and their own key, never by their whole path: an entry's
 * work and memory grow with its own length, not with its depth times its length (a hundred entries
 * of 500 one-letter folders each held ~100 MB of path keys when the tables were keyed by path).
 */
export class EntryNamer {
  /** Every file name taken, as `<folder id>/<key>`. */
  private readonly files = new Set<string>();
  /** Every folder, by `<parent id>/<key>`. */
  private readonly folders = new Map<string, Folder>();
  /** The last number given to a name (by its role, folder and key): taken names are never freed, so the search goes on from there. */
  private readonly lastNumber = new Map<string, number>();
  private nextId = 1;

  name(raw: string | undefined): string {
    const segments = entrySegments(raw);
    const fileName = segments.pop() as string;
    let parent = ROOT;
    for (const segment of segments) {
      const name = this.firstFree('folder', parent, segment, (key) => this.files.has(key));
      const key = `${parent.id}/${keyOf(name)}`;
      let folder = this.folders.get(key);
      if (folder === undefined) {
        folder = { id: this.nextId++, path: pathIn(parent, name) };
        this.folders.set(key, folder);
      }
      parent = folder;
    }
    const name = this.firstFree('file', parent, fileName, (key) => this.files.has(key) || this.folders.has(key));
    this.files.add(`${parent.id}/${keyOf(name)}`);
    return pathIn(parent, name);
  }

  /** `name`, or with the first free ` (n)` in `parent`: linear in the entries, however many share a name. */
  private firstFree(role: string, parent: Folder, name: string, taken: (key: string) => boolean): string {
    const keyIn = (segment: string) => `${parent.id}/${keyOf(segment)}`;
    const counter = `${role}:${keyIn(name)}`;
    let n = this.lastNumber.get(counter) ?? 1;
    let candidate = n === 1 ? name : numbered(name, n);
    while (taken(keyIn(candidate))) candidate = numbered(name, ++n);
    this.lastNumber.set(counter, n);
    return candidate;
  }
}

/**
 * The drop's own name: the shared top folder (`photos.zip`) when every entry sits in one, else the
 * first file's name without its extension (`report-and-2-more.zip`). Sanitised like any filename.
 */
export function dropName(entries: string[]): string {
  const tops = new Set(entries.map((name) => (name.includes('/') ? name.slice(0, name.indexOf('/')) : null)));
  const [top] = tops;
  if (tops.size === 1 && typeof top === 'string') return sanitiseFilename(`${top}.zip`);
  const first = entries[0]?.split('/').pop() ?? 'file';
  const dot = first.lastIndexOf('.');
  const stem = dot > 0 ? first.slice(0, dot) : first;
  const suffix = `-and-${entries.length - 1}-more.zip`;
  // Cut the stem, not the suffix, so a long first name still says how many files follow: in UTF-16
  // units, as sanitiseFilename caps a name, so its cap never reaches the suffix.
  return sanitiseFilename(truncateUnits(stem.toWellFormed(), MAX_FILENAME_UNITS - suffix.length) + suffix);
}
