import { randomInt } from 'node:crypto';
import type { Wordlist } from './wordlist.js';

/** A fresh passphrase: `count` words drawn uniformly with a CSPRNG (12.92 bits a word). */
export function generatePassphrase(wordlist: Wordlist, count: number): string {
  const words: string[] = [];
  for (let i = 0; i < count; i += 1) words.push(wordlist.words[randomInt(wordlist.words.length)]!);
  return words.join('-');
}
