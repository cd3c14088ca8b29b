import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** What the tests read from the Dockerfile; shared by the no-engine checks and the deploy suite. */

export interface Instruction {
  op: string;
  args: string;
  /** 0 for the first FROM's stage, 1 for the next… */
  stage: number;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
export async function dockerfileInstructions(root: string): Promise<Instruction[]> {
  const text = (await readFile(path.join(root, 'Dockerfile'), 'utf8')).replace(/\\\r?\n/g, ' ');
  let stage = -1;
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [op = '', ...rest] = l.split(/\s+/);
      if (op.toUpperCase() === 'FROM') stage += 1;
      return { op: op.toUpperCase(), args: rest.join(' '), stage };
    });
}

export function runtimeStage(instructions: Instruction[]): Instruction[] {
  const last = Math.max(...instructions.map((i) => i.stage));
  return instructions.filter((i) => i.stage === last);
}

/** `COPY --from=build /app/dist/<source> ./dist/<target>` lines of the runtime stage. */
export function copiesFromBuild(runtime: Instruction[]): { source: string; target: string }[] {
  return runtime
    .filter((i) => i.op === 'COPY' && i.args.startsWith('--from='))
    .map((i) => {
      const [source = '', target = ''] = i.args.split(/\s+/).slice(1);
      return { source, target };
    });
}

/** The files the image ships in dist/scripts: one COPY line each. */
export function shippedScripts(runtime: Instruction[]): string[] {
  return copiesFromBuild(runtime)
    .filter((c) => c.source.startsWith('/app/dist/scripts/'))
    .map((c) => path.posix.basename(c.source))
    .sort();
}
