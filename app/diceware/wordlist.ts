import { readFile } from 'node:fs/promises';

export interface Wordlist {
  words: readonly string[];
  has(word: string): boolean;
}

const EXPECTED_WORDS = 7_776;

/** Words in a key that a lookup accepts; DICEWARE_WORDS and an upload's `words` lie in this range too. */
export const KEY_WORDS = { min: 3, max: 12 } as const;

/**
 * Loads the EFF large wordlist (`11111<TAB>abacus` lines, or one word per line) and checks it is
 * the real thing: 7,776 unique lowercase words. The four words with a hyphen are then left out so a
 * key joined by `-` splits one way only (SPEC §3).
 */
export async function loadWordlist(path: string): Promise<Wordlist> {
  const text = await readFile(path, 'utf8');
  return parseWordlist(text);
}

export function parseWordlist(text: string): Wordlist {
  const all = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => line.split(/\s+/).pop() ?? '');
  if (all.length !== EXPECTED_WORDS) throw new Error(`wordlist has ${all.length} words, expected ${EXPECTED_WORDS}`);
  if (new Set(all).size !== all.length) throw new Error('wordlist has duplicate words');
  const bad = all.find((w) => !/^[a-z]+(-[a-z]+)?$/.test(w));
  if (bad !== undefined) throw new Error('wordlist has a word that is not lowercase letters');
  const words = all.filter((w) => !w.includes('-'));
  const set = new Set(words);
  return { words, has: (word) => set.has(word) };
}

/**
 * Forgiving key input (SPEC §3): case-insensitive; `-`, space, `.`, `_` all separate words;
 * surrounding blanks ignored. Returns the canonical `word-word-word` form, or null when the input
 * is not made of wordlist words — decided without any KDF work.
 */
export function normaliseKey(input: unknown, wordlist: Wordlist): string | null {
  if (typeof input !== 'string' || input.length > 200) return null;
  const words = input
    .trim()
    .toLowerCase()
    .split(/[-\s._]+/)
    .filter(Boolean);
  if (words.length < KEY_WORDS.min || words.length > KEY_WORDS.max) return null;
  if (!words.every((w) => wordlist.has(w))) return null;
  return words.join('-');
}
