/**
 * The admin command's words (pure): `admin <verb> [args] [--json] [--yes]`. Exit codes mean one
 * thing each, so scripts can branch on them.
 */
export const EXIT = { ok: 0, problem: 1, usage: 2 } as const;

const VERBS = ['stats', 'blocks', 'unblock', 'sweep', 'purge', 'doctor'] as const;
type Verb = (typeof VERBS)[number];

export interface Invocation {
  verb: Verb;
  /** Positional arguments after the verb. */
  args: string[];
  json: boolean;
  yes: boolean;
}

export const USAGE = `usage: npm run admin -- <verb> [--json]     (in the image: node dist/scripts/admin.js <verb>)

  stats              live files and their bytes, blocked clients, janitor queue, worker
  blocks             blocked clients (keyed hashes, as logged) and when each block ends
  unblock <ip|hash>  lift a block now; an IPv6 address lifts its /64
  sweep              queue an orphan sweep now (the worker logs orphan_swept with its job_id)
  purge --yes        crypto-shred every live file now, for an incident; refuses without --yes
  doctor             check the config, Redis (reachable, eviction policy, persistence, memory),
                     storage, the worker's heartbeat and the clock against Redis

  --json             one JSON object on stdout instead of text

exit codes: 0 ok, 1 a problem was found (or unblock found no such block), 2 usage
`;

const ARITY: Record<Verb, number> = { stats: 0, blocks: 0, unblock: 1, sweep: 0, purge: 0, doctor: 0 };

/** The invocation, `help`, or a usage error to print with USAGE (exit 2). */
export function parseArgs(argv: string[]): Invocation | { help: true } | { error: string } {
  const flags = new Set<string>();
  const words: string[] = [];
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') return { help: true };
    if (arg.startsWith('-')) flags.add(arg);
    else words.push(arg);
  }
  const unknown = [...flags].filter((f) => f !== '--json' && f !== '--yes');
  if (unknown.length > 0) return { error: `unknown option ${unknown[0]}` };
  const [verb, ...args] = words;
  if (verb === undefined) return { error: 'no verb given' };
  if (verb === 'help') return { help: true };
  if (!(VERBS as readonly string[]).includes(verb)) return { error: `unknown verb "${verb}"` };
  const expected = ARITY[verb as Verb];
  if (args.length !== expected) return { error: expected === 0 ? `${verb} takes no argument` : `${verb} takes one argument` };
  if (flags.has('--yes') && verb !== 'purge') return { error: '--yes belongs to purge only' };
  return { verb: verb as Verb, args, json: flags.has('--json'), yes: flags.has('--yes') };
}
