import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../app/shared/logger.js';

function capture(level: string) {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  stream.on('data', (chunk: Buffer) => {
    for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { log: createLogger({ service: 'worker', level, dir: '', stream, silentStdout: true }), lines };
}

/** A field whose serialisation is observable: formatting a line calls its toJSON. */
function probe() {
  const seen = { formatted: false };
  return { seen, field: { toJSON: () => ((seen.formatted = true), 'probe') } };
}

describe('createLogger', () => {
  it('writes one JSON line per event at or above the level, with event, service and fields', async () => {
    const { log, lines } = capture('info');
    log.info('file_uploaded', { size: 3 });
    log.child({ request_id: 'r1' }).warn('lookup_not_counted', { reason: 'x' });
    await log.close();
    expect(lines.map(({ event, level, service }) => ({ event, level, service }))).toEqual([
      { event: 'file_uploaded', level: 'info', service: 'worker' },
      { event: 'lookup_not_counted', level: 'warn', service: 'worker' },
    ]);
    expect(lines[0]).toMatchObject({ size: 3 });
    expect(lines[1]).toMatchObject({ request_id: 'r1', reason: 'x' });
  });

  it('does not even format a line below the level, for the logger and its children', async () => {
    const { log, lines } = capture('info');
    const own = probe();
    const child = probe();
    log.debug('destroy_deferred', { until: own.field });
    log.child({ job: 'j' }).debug('destroy_deferred', { until: child.field });
    await log.close();
    expect(lines).toEqual([]);
    expect(own.seen.formatted).toBe(false);
    expect(child.seen.formatted).toBe(false);
  });

  it('writes debug lines when the level asks for them', async () => {
    const { log, lines } = capture('debug');
    const { seen, field } = probe();
    log.debug('destroy_deferred', { until: field });
    await log.close();
    expect(lines).toEqual([expect.objectContaining({ event: 'destroy_deferred', level: 'debug', until: 'probe' })]);
    expect(seen.formatted).toBe(true);
  });

  it('writes its file readable by owner and group only (lines may carry client addresses)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cbx-log-'));
    try {
      const log = createLogger({ service: 'api', level: 'info', dir, silentStdout: true });
      log.info('api_started', { port: 1 });
      await log.close();
      expect((await stat(path.join(dir, 'cinderbox-api.log'))).mode & 0o777).toBe(0o640);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
