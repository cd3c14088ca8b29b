// Part of `npm run build`: compiles native/scrypt.c (scrypt's memory-hard core, docs/DECISIONS.md)
// into build/scrypt.node (or into the directory given as the first argument) with the C compiler in
// $CC (default `cc`) and the Node-API headers of the node-api-headers package. Node-API is ABI-stable, so one build serves Node 20 and 22.
// Without a C compiler (or where it cannot compile it: it is written for Linux) the build goes on
// without it, and the API falls back to node:crypto's scrypt (the same keys, 15–20 % less KDF
// throughput under load) and says so in its start line. Tests require the native engine.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
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
  ...['-std=c11', '-O3', '-fPIC', '-shared', '-Wall', '-Wextra', '-fvisibility=hidden'],
  // Hardened like Debian's packages: stack protector and clash protection, fortified libc calls,
  // read-only relocations, no executable stack (and control-flow protection on x86-64).
  ...['-fstack-protector-strong', '-fstack-clash-protection', '-D_FORTIFY_SOURCE=2'],
  ...['-Wl,-z,relro,-z,now', '-Wl,-z,noexecstack'],
  ...(process.arch === 'x64' ? ['-fcf-protection'] : []),
];

const probe = spawnSync(cc, ['--version'], { stdio: 'ignore' });
if (probe.error || probe.status !== 0) {
  console.warn(`build-native: no C compiler (${cc}); the API will use node:crypto's scrypt (apt-get install -y gcc)`);
  process.exit(0);
}
mkdirSync(outDir, { recursive: true });
const compile = spawnSync(cc, [...flags, '-I', include, source, '-o', out], { stdio: 'inherit' });
// It is written for Linux (mmap's advice, explicit_bzero); elsewhere the fallback is the answer.
if (compile.status !== 0) {
  rmSync(out, { force: true });
  console.warn(`build-native: ${cc} could not compile native/scrypt.c (above); the API will use node:crypto's scrypt`);
}
