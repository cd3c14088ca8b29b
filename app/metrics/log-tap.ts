import type { Logger } from '../shared/logger.js';

export type LogObserver = (event: string, fields: Record<string, unknown>) => void;

/**
 * The logger, tapped: every event also reaches `observe`, whatever the log level, before it is
 * written. Domain counters are derived from the events the code already logs, so a count cannot
 * drift from what the log says happened, and no feature module needs to know about metrics.
 */
export function tapLogger(log: Logger, observe: LogObserver): Logger {
  const wrap = (inner: Logger): Logger => ({
    error: (event, fields) => (observe(event, fields ?? {}), inner.error(event, fields)),
    warn: (event, fields) => (observe(event, fields ?? {}), inner.warn(event, fields)),
    info: (event, fields) => (observe(event, fields ?? {}), inner.info(event, fields)),
    debug: (event, fields) => (observe(event, fields ?? {}), inner.debug(event, fields)),
    child: (fields) => wrap(inner.child(fields)),
    close: () => inner.close(),
  });
  return wrap(log);
}
