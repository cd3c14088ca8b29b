/**
 * `npm run admin -- <verb> [--json]` (in the image: `node dist/scripts/admin.js <verb>`): operator
 * verbs against the service's own Redis, with the service's configuration (scripts/admin/cli.ts
 * lists them). It never prints a secret: no passphrase, key, lookup id, token, password or
 * CINDERBOX_SECRET; clients appear as the keyed hashes the logs use.
 */
import { ConfigError } from '../app/config.js';
import { EXIT, parseArgs, USAGE } from './admin/cli.js';
import { run } from './admin/verbs.js';

/** Exits once the text is written (a pipe may still hold it when process.exit runs). */
function finish(stream: NodeJS.WriteStream, text: string, code: number): void {
  stream.write(text, () => process.exit(code));
}

const invocation = parseArgs(process.argv.slice(2));
// With --json, stdout is one JSON object whatever happens, usage errors and --help included.
const json = process.argv.includes('--json');
if ('help' in invocation) finish(process.stdout, json ? `${JSON.stringify({ usage: USAGE })}\n` : USAGE, EXIT.ok);
else if ('error' in invocation)
  finish(
    json ? process.stdout : process.stderr,
    json ? `${JSON.stringify({ error: invocation.error })}\n` : `admin: ${invocation.error}\n\n${USAGE}`,
    EXIT.usage,
  );
else {
  try {
    const report = await run(invocation, process.env);
    finish(process.stdout, `${invocation.json ? JSON.stringify(report.json) : report.text}\n`, report.exitCode);
  } catch (error) {
    // A config error never quotes a credential (app/config.ts); other messages are Redis's or ours.
    const message = error instanceof ConfigError ? error.problems.join('; ') : (error as Error).message;
    if (invocation.json) finish(process.stdout, `${JSON.stringify({ error: message })}\n`, EXIT.problem);
    else finish(process.stderr, `admin ${invocation.verb}: ${message}\n`, EXIT.problem);
  }
}
