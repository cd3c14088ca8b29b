import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/** The import rules of docs/ARCHITECTURE.md, read from the source: use cases and crypto know nothing of HTTP. */
const APP = path.resolve(import.meta.dirname, '..', '..', 'app');

async function sources(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await sources(full)));
    else if (entry.name.endsWith('.ts')) found.push(full);
  }
  return found;
}

/** Every module a file imports or re-exports, static or dynamic, as written. */
function importsOf(text: string): string[] {
  const specifiers = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
  return [...new Set(specifiers)];
}

const relative = (file: string) => path.relative(APP, file).split(path.sep).join('/');

describe('the layers', () => {
  it('lets only app/http, the routers, app.ts and main.ts import Express', async () => {
    const files = await sources(APP);
    expect(files.length).toBeGreaterThan(20);
    const allowed = (name: string) => name.startsWith('http/') || name.endsWith('.routes.ts') || name === 'app.ts' || name === 'main.ts';
    const offenders: string[] = [];
    for (const file of files) {
      const imports = importsOf(await readFile(file, 'utf8'));
      if (imports.some((m) => m === 'express' || m.startsWith('express/')) && !allowed(relative(file))) offenders.push(relative(file));
    }
    expect(offenders).toEqual([]);
  });

  it('keeps app/crypto free of app/http', async () => {
    const files = await sources(path.join(APP, 'crypto'));
    expect(files.length).toBeGreaterThan(3);
    const offenders: string[] = [];
    for (const file of files) {
      for (const specifier of importsOf(await readFile(file, 'utf8'))) {
        if (!specifier.startsWith('.')) continue;
        const target = relative(path.resolve(path.dirname(file), specifier));
        if (target.startsWith('http/')) offenders.push(`${relative(file)} → ${specifier}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('reads the imports it checks (the rule would pass vacuously otherwise)', () => {
    const sample =
      "import express from 'express';\nimport type { Request } from \"express\";\nexport { x } from '../http/errors.js';\nconst m = await import('./lazy.js');";
    expect(importsOf(sample)).toEqual(['express', '../http/errors.js', './lazy.js']);
  });
});
