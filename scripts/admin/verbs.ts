import { loadConfig } from '../../app/config.js';
import { purge, purgeRefused, sweep, unblock } from './actions.js';
import type { Invocation } from './cli.js';
import { connect, readSecret } from './context.js';
import { doctor } from './doctor.js';
import { blocks, stats, type Report } from './inventory.js';

/**
 * Runs one verb. The configuration is read as the service reads it (app/config.ts); `doctor`
 * reports a bad one as a finding, every other verb stops on it.
 */
export async function run(invocation: Invocation, env: Record<string, string | undefined>): Promise<Report> {
  if (invocation.verb === 'doctor') return doctor(env);
  if (invocation.verb === 'purge' && !invocation.yes) return purgeRefused();
  const config = loadConfig(env);
  const ctx = await connect(config);
  try {
    switch (invocation.verb) {
      case 'stats':
        return await stats(ctx);
      case 'blocks':
        return await blocks(ctx);
      case 'unblock':
        return await unblock(ctx, invocation.args[0]!, () => readSecret(config));
      case 'sweep':
        return await sweep(ctx);
      case 'purge':
        return await purge(ctx);
    }
  } finally {
    await ctx.close();
  }
}
