import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const LOCAL_SECRET_FILE = 'var/cinderbox-secret';

/** Shorter than this, a secret file is damaged (an interrupted write), not a secret. */
const MIN_SECRET_LENGTH = 32;

/**
 * Outside production a developer should not have to invent a secret: the first start writes 48
 * random bytes to `var/cinderbox-secret` (mode 0600) and every later start reuses them, so keys
 * stay valid across restarts. Production must set CINDERBOX_SECRET (config refuses to start).
 *
 * The file appears whole or not at all (written aside, then linked into place, which fails if another
 * process got there first), so the API and the worker starting together read the same secret, and a
 * file cut short by a crash or a full disk is refused with a clear message instead of used.
 */
export async function loadOrCreateLocalSecret(file = LOCAL_SECRET_FILE): Promise<string> {
  const existing = await readSecretFile(file);
  if (existing !== null) return existing;
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const secret = randomBytes(48).toString('base64');
  const aside = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(aside, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await link(aside, file);
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return (await readSecretFile(file))!; // another process's, whole
  } finally {
    await unlink(aside).catch(() => undefined);
  }
}

async function readSecretFile(file: string): Promise<string | null> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  if (text.length < MIN_SECRET_LENGTH)
    throw new Error(
      `${file} holds ${text.length} characters, too few for a secret (an interrupted write?): delete it and start again (files uploaded under the old secret cannot be opened any more)`,
    );
  return text;
}
