import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const LOCAL_SECRET_FILE = 'var/cinderbox-secret';

/**
 * Outside production a developer should not have to invent a secret: the first start writes 48
 * random bytes to `var/cinderbox-secret` (mode 0600) and every later start reuses them, so keys
 * stay valid across restarts. Production must set CINDERBOX_SECRET (config refuses to start).
 */
export async function loadOrCreateLocalSecret(file = LOCAL_SECRET_FILE): Promise<string> {
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length >= 32) return existing;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const secret = randomBytes(48).toString('base64');
  // 'wx' fails if another process created it first; then read theirs.
  try {
    await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return (await readFile(file, 'utf8')).trim();
  }
}
