import type { Logger } from './logger.js';

interface ShutdownStep {
  name: string;
  run: () => Promise<unknown>;
}

/**
 * Ordered, idempotent shutdown (STYLE §10): stop taking work, drain, close connections. Every
 * step is attempted even if an earlier one fails; a timer forces the exit if a step hangs.
 */
export function installShutdown(options: { log: Logger; steps: ShutdownStep[]; timeoutMs?: number; exit?: (code: number) => void }) {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let started: Promise<void> | null = null;

  const shutdown = (signal: string): Promise<void> => {
    if (started) return started;
    started = (async () => {
      options.log.info('shutdown_started', { signal });
      const timer = setTimeout(() => {
        options.log.error('shutdown_timed_out', { timeout_ms: options.timeoutMs ?? 30_000 });
        exit(1);
      }, options.timeoutMs ?? 30_000);
      timer.unref();
      let failed = false;
      for (const step of options.steps) {
        try {
          await step.run();
        } catch (error) {
          failed = true;
          options.log.error('shutdown_step_failed', { step: step.name, error });
        }
      }
      options.log.info('shutdown_completed', { signal });
      // The log closes last, after its final line has been written.
      await options.log.close().catch(() => undefined);
      clearTimeout(timer);
      exit(failed ? 1 : 0);
    })();
    return started;
  };

  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void shutdown(signal));
  return shutdown;
}
