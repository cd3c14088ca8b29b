import { readFileSync } from 'node:fs';

/**
 * Multi-step Redis logic lives in Lua files next to the repository that runs them (STYLE §11). They
 * are read relative to the calling module, so the sources and the build (which copies every `lua/`
 * folder into dist/, scripts/copy-assets.mjs) find them the same way.
 */
export function luaScripts(moduleUrl: string) {
  return (name: string): string => readFileSync(new URL(`./lua/${name}.lua`, moduleUrl), 'utf8');
}
