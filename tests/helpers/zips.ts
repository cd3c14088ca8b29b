import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** Debian's Info-ZIP unzip; a UTF-8 locale, or it escapes non-ASCII names as #Uxxxx. */
const UNZIP = '/usr/bin/unzip';
const UTF8 = { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };

export interface ZipEntryDigest {
  name: string;
  size: number;
  sha256: string;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** What Python's zipfile reads: every entry's name, size and the SHA-256 of its bytes (CRC checked on read). */
export async function readWithPython(zipPath: string): Promise<ZipEntryDigest[]> {
  const script = [
    'import hashlib, json, sys, zipfile',
    'with zipfile.ZipFile(sys.argv[1]) as z:',
    '    bad = z.testzip()',
    '    if bad is not None: sys.exit("bad CRC: " + bad)',
    '    print(json.dumps([{"name": i.filename, "size": i.file_size, "sha256": hashlib.sha256(z.read(i)).hexdigest()} for i in z.infolist()]))',
  ].join('\n');
  const { stdout } = await run('python3', ['-c', script, zipPath], { maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as ZipEntryDigest[];
}

/** `unzip -t`: every entry's CRC checked; returns unzip's output (throws when unzip exits non-zero). */
export async function testWithUnzip(zipPath: string): Promise<string> {
  const { stdout } = await run(UNZIP, ['-t', zipPath], { env: UTF8, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** Extracts with Debian's unzip into a fresh directory; returns every file under it (relative paths, sorted). */
export async function extractWithUnzip(zipPath: string, parent: string): Promise<{ dir: string; files: ZipEntryDigest[] }> {
  const dir = await mkdtemp(path.join(parent, 'unzipped-'));
  await run(UNZIP, ['-q', zipPath, '-d', dir], { env: UTF8, maxBuffer: 64 * 1024 * 1024 });
  const files: ZipEntryDigest[] = [];
  const walk = async (at: string) => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) await walk(full);
      else {
        const bytes = await readFile(full);
        files.push({ name: path.relative(dir, full).split(path.sep).join('/'), size: (await stat(full)).size, sha256: sha256(bytes) });
      }
    }
  };
  await walk(dir);
  files.sort((a, b) => a.name.localeCompare(b.name));
  return { dir, files };
}

export function digest(name: string, bytes: Buffer): ZipEntryDigest {
  return { name, size: bytes.length, sha256: sha256(bytes) };
}

export const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);

export async function tempDir(label: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `cbx-${label}-`));
}
