/** A rate such as `30/hour`, as the configuration writes it. */
export interface Rate {
  limit: number;
  windowMs: number;
  text: string;
}

const UNIT_MS: Record<string, number> = {
  s: 1_000,
  sec: 1_000,
  second: 1_000,
  seconds: 1_000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
};

/** Parses `N/unit` (`30/hour`, `1/second`, `60 / minute`); null when it is not one. */
export function parseRate(text: string): Rate | null {
  const match = /^\s*(\d+)\s*\/\s*([a-z]+)\s*$/i.exec(text);
  if (!match) return null;
  const limit = Number(match[1]);
  const windowMs = UNIT_MS[match[2]!.toLowerCase()];
  if (windowMs === undefined || !Number.isSafeInteger(limit) || limit < 1) return null;
  return { limit, windowMs, text: text.trim() };
}
