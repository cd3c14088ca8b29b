// Part of `npm run build`: compiles native/scrypt.c (scrypt's memory-hard core, docs/DECISIONS.md)
// into build/scrypt.node (or into the directory given as the first argument) with the C compiler in
// $CC (default `cc`) and the Node-API headers of the node-api-headers package. Node-API is ABI-stable, so one build serves Node 20 and 22.
// Without a C compiler the build goes on without it, and the API falls back to node:crypto's scrypt
// (the same keys, 5–10 % less KDF throughput under load) and says so in its start line.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, URL } from 'node:url';

const require = createRequire(import.meta.url);
const include = path.join(path.dirname(require.resolve('node-api-headers/package.json')), 'include');
const cc = process.env.CC || 'cc';
const source = fileURLToPath(new URL('../native/scrypt.c', import.meta.url));
const outDir = process.argv[2] ?? 'build';
const out = path.join(outDir, 'scrypt.node');
const flags = [
  ...['-std=c11', '-O3', '-fPIC', '-shared', '-Wall', '-Wextra', '-Werror', '-fvisibility=hidden'],
  // Hardened like Debian's packages: stack protector, fortified libc calls, read-only relocations.
  ...['-fstack-protector-strong', '-D_FORTIFY_SOURCE=2', '-Wl,-z,relro,-z,now', '-Wl,-z,noexecstack'],
];

const probe = spawnSync(cc, ['--version'], { stdio: 'ignore' });
if (probe.error || probe.status !== 0) {
  console.warn(`build-native: no C compiler (${cc}); the API will use node:crypto's scrypt (apt-get install -y gcc)`);
  process.exit(0);
}
mkdirSync(outDir, { recursive: true });
const compile = spawnSync(cc, [...flags, '-I', include, source, '-o', out], { stdio: 'inherit' });
if (compile.status !== 0) process.exit(compile.status ?? 1);
