/** What an engine holds, for MAX_STORAGE_BYTES: `get` may serve a figure up to `maxAgeMs` old. */
export interface Usage {
  get(): Promise<number>;
  /** This process committed `name` with `bytes` (> 0), or removed it, `bytes` < 0: counted at once. */
  add(bytes: number, name: string): void;
}

/**
 * Bytes an engine holds without a full count per upload: one count (a listing, a directory scan) at
 * most every `maxAgeMs`, one at a time (stale answers are served while the next one runs), plus this
 * process's own commits and removals since that count. Other processes' changes show up with the
 * next count. A count takes time, and this process's own changes during it may or may not be in
 * it: `list` gives each name it saw with its size, and every name changed meanwhile is counted as it
 * is now (committed: its size; removed: nothing) whatever the count saw of it.
 */
export function createUsage({
  now,
  maxAgeMs,
  list,
  onRefreshFailed,
}: {
  now: () => number;
  maxAgeMs: number;
  list: () => Promise<Map<string, number>>;
  /** A background count failed: the last figure stays in use. */
  onRefreshFailed: (error: unknown) => void;
}): Usage {
  let listed: { bytes: number; at: number } | null = null;
  /** Own changes since the last count was taken. */
  let delta = 0;
  let refreshing: Promise<void> | null = null;
  /** Names this process changed while the running count runs, with their size now (0: removed). */
  let changedDuringCount: Map<string, number> | null = null;

  const refresh = () => {
    if (refreshing) return refreshing;
    const startedAt = now();
    const changed = new Map<string, number>();
    changedDuringCount = changed;
    refreshing = list()
      .then((sizes) => {
        let bytes = 0;
        for (const [name, size] of sizes) if (!changed.has(name)) bytes += size;
        for (const size of changed.values()) bytes += size;
        // Every own change so far is in that figure: those before the count began, as the count saw
        // them; those during it, as they are now.
        listed = { bytes, at: startedAt };
        delta = 0;
      })
      .finally(() => {
        refreshing = null;
        changedDuringCount = null;
      });
    return refreshing;
  };

  return {
    async get() {
      if (listed === null) await refresh();
      else if (now() - listed.at >= maxAgeMs && refreshing === null) refresh().catch(onRefreshFailed);
      return Math.max(0, (listed?.bytes ?? 0) + delta);
    },
    add(bytes, name) {
      delta += bytes;
      changedDuringCount?.set(name, Math.max(0, bytes));
    },
  };
}
