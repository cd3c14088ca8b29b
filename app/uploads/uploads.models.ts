import { z } from 'zod';
import type { Config } from '../config.js';
import { KEY_WORDS } from '../diceware/wordlist.js';

const UPLOAD_OPTION_NAMES = ['expiry', 'uses', 'words'] as const;

// Plain decimals only: no exponents, hex, signs or blanks inside (`1e-9`, `0x5`, `+3` are refused).
const decimal = (name: string) =>
  z
    .string()
    .regex(/^\d{1,9}(\.\d{1,6})?$/, `${name} must be a plain number such as 10 or 2.5`)
    .transform(Number);
const whole = (name: string) =>
  z
    .string()
    .regex(/^\d{1,9}$/, `${name} must be a whole number`)
    .transform(Number);

/** Upload options, from multipart fields or PUT query parameters (SPEC §3). */
export function uploadOptionsSchema(
  config: Pick<Config, 'minExpiryMinutes' | 'maxExpiryMinutes' | 'defaultExpiryMinutes' | 'maxUses' | 'defaultUses' | 'dicewareWords'>,
) {
  return z.object({
    expiry: decimal('expiry')
      .refine((n) => n >= config.minExpiryMinutes, `expiry must be at least ${config.minExpiryMinutes} minutes`)
      .refine((n) => n <= config.maxExpiryMinutes, `expiry must be at most ${config.maxExpiryMinutes} minutes`)
      .default(config.defaultExpiryMinutes),
    uses: whole('uses')
      .refine((n) => n >= 1, 'uses must be at least 1')
      .refine((n) => n <= config.maxUses, `uses must be at most ${config.maxUses}`)
      .default(config.defaultUses),
    words: whole('words')
      .refine((n) => n >= config.dicewareWords, `words must be at least ${config.dicewareWords}`)
      .refine((n) => n <= KEY_WORDS.max, `words must be at most ${KEY_WORDS.max}`)
      .default(config.dicewareWords),
  });
}

export type UploadOptions = z.output<ReturnType<typeof uploadOptionsSchema>>;

/**
 * The option fields a client sent, trimmed; an empty field means "use the default". A field sent
 * twice (`?words=8&words=8`, two `-F words=…`) arrives as a list: it is named in `repeated`, never
 * dropped for the default (which would have given a 12-word request a 4-word passphrase).
 */
export function presentOptions(source: Record<string, unknown>): { options: Record<string, string>; repeated: string[] } {
  const options: Record<string, string> = {};
  const repeated: string[] = [];
  for (const name of UPLOAD_OPTION_NAMES) {
    const value = source[name];
    if (typeof value === 'string') {
      if (value.trim() !== '') options[name] = value.trim();
    } else if (value !== undefined) repeated.push(name);
  }
  return { options, repeated };
}
