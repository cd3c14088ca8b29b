import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../scripts/admin/cli.js';
import { judgeClock, judgeMemory, judgePersistence } from '../../scripts/admin/doctor.js';

describe('admin arguments', () => {
  it('reads a verb, its argument and the flags in any order', () => {
    expect(parseArgs(['unblock', '--json', '203.0.113.7'])).toEqual({ verb: 'unblock', args: ['203.0.113.7'], json: true, yes: false });
    expect(parseArgs(['--yes', 'purge'])).toEqual({ verb: 'purge', args: [], json: false, yes: true });
    expect(parseArgs(['help'])).toEqual({ help: true });
  });

  it('refuses what it does not know, with a reason', () => {
    expect(parseArgs([])).toEqual({ error: 'no verb given' });
    expect(parseArgs(['unblock'])).toEqual({ error: 'unblock takes one argument' });
    expect(parseArgs(['sweep', 'now'])).toEqual({ error: 'sweep takes no argument' });
    expect(parseArgs(['stats', '--yes'])).toEqual({ error: '--yes belongs to purge only' });
    expect(parseArgs(['doctor', '--fix'])).toEqual({ error: 'unknown option --fix' });
  });
});

describe('doctor judgements', () => {
  it('fails any persistence, and says when it cannot look', () => {
    const clean = { save: '', appendonly: 'no', 'repl-diskless-sync': 'yes', 'repl-diskless-load': 'on-empty-db' };
    expect(judgePersistence(clean).status).toBe('ok');
    expect(judgePersistence({ ...clean, save: '3600 1 300 100' })).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('save "3600 1 300 100"'),
    });
    expect(judgePersistence({ ...clean, appendonly: 'yes' }).status).toBe('fail');
    expect(judgePersistence({ ...clean, 'repl-diskless-sync': 'no' }).status).toBe('fail');
    expect(judgePersistence({ save: null, appendonly: null, 'repl-diskless-sync': null, 'repl-diskless-load': null }).status).toBe('warn');
  });

  it('warns from 75 % of maxmemory, fails from 90 %, and warns when there is no maxmemory', () => {
    expect(judgeMemory(70, 100).status).toBe('ok');
    expect(judgeMemory(75, 100).status).toBe('warn');
    expect(judgeMemory(90, 100).status).toBe('fail');
    expect(judgeMemory(5_000_000, 0).status).toBe('warn');
  });

  it('fails a clock more than a second off Redis, counting the round trip in its favour', () => {
    expect(judgeClock(12, 1)).toMatchObject({ status: 'ok', detail: '+12 ms against Redis TIME (±1 ms)' });
    expect(judgeClock(-1500, 1).status).toBe('fail');
    expect(judgeClock(1200, 300).status).toBe('ok');
  });
});
