// Part of `npm run build`: tsc compiles TypeScript only, so the files the code reads at run time
// (Lua scripts, the pages' static files) are copied next to their compiled modules in dist/
// (or the directory given as the first argument).
import { cp, readdir } from 'node:fs/promises';
import path from 'node:path';

const ASSET_DIRS = new Set(['lua', 'static']);
const outDir = process.argv[2] ?? 'dist';

async function copyAssets(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const from = path.join(dir, entry.name);
    if (ASSET_DIRS.has(entry.name)) await cp(from, path.join(outDir, from), { recursive: true });
    else await copyAssets(from);
  }
}

await copyAssets('app');
