import { ConfigError, loadConfig } from '../../app/config.js';

/** The problems loadConfig reports for `env` (none when it loads); any other error is thrown. */
export function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
