/**
 * A strict parser of the Prometheus text format 0.0.4, for tests: it throws on anything a
 * Prometheus server would refuse or that hides a mistake (a sample before its TYPE, a family
 * declared twice, a duplicate series, a bad name or escape, buckets that are not cumulative, a
 * +Inf bucket that differs from the count, a negative counter).
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** The sample's own name (`x_bucket`, `x_sum`, … for histograms). */
  name: string;
  /** The family it belongs to. */
  family: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string | undefined;
  samples: Sample[];
}

export interface Scrape {
  families: Map<string, Family>;
  samples: Sample[];
  /** The value of the one sample named `name` whose labels include `labels`; throws when there is not exactly one. */
  value(name: string, labels?: Record<string, string>): number;
  /** Like value(), but undefined when no sample matches. */
  find(name: string, labels?: Record<string, string>): number | undefined;
  /** Sum of every sample named `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

/** As Prometheus reads a value (Go's ParseFloat): special values in any case; prom-client writes `Nan`. */
function parseValue(text: string, line: string): number {
  if (/^\+?inf(inity)?$/i.test(text)) return Infinity;
  if (/^-inf(inity)?$/i.test(text)) return -Infinity;
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value "${text}" in: ${line}`);
  return Number(text);
}

/** Labels `{a="x",b="y"}` from position `start` (at `{`); returns them and the position after `}`. */
function parseLabels(line: string, start: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    if (line[i] === '}') return { labels, end: i + 1 };
    const eq = line.indexOf('=', i);
    if (eq === -1) throw new Error(`unterminated labels in: ${line}`);
    const name = line.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`bad label name "${name}" in: ${line}`);
    if (name in labels) throw new Error(`label "${name}" twice in: ${line}`);
    if (line[eq + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let value = '';
    let j = eq + 2;
    for (;;) {
      const c = line[j];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === '"') break;
      if (c === '\\') {
        const next = line[j + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new Error(`bad escape in label value in: ${line}`);
        j += 2;
        continue;
      }
      value += c;
      j += 1;
    }
    labels[name] = value;
    i = j + 1;
    if (line[i] === ',') i += 1;
    else if (line[i] !== '}') throw new Error(`expected , or } after a label in: ${line}`);
  }
}

function familyOf(sampleName: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sampleName);
  if (direct && direct.type !== 'histogram') return direct;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sampleName.endsWith(suffix)) continue;
    const family = families.get(sampleName.slice(0, -suffix.length));
    if (family && (family.type === 'histogram' || (family.type === 'summary' && suffix !== '_bucket'))) return family;
  }
  return direct;
}

const seriesKey = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',')}}`;

function checkHistograms(families: Map<string, Family>): void {
  for (const family of families.values()) {
    if (family.type !== 'histogram') continue;
    const groups = new Map<string, { buckets: { le: number; value: number }[]; count?: number; sum?: number }>();
    for (const s of family.samples) {
      const { le, ...rest } = s.labels;
      const key = seriesKey(family.name, rest);
      const group = groups.get(key) ?? { buckets: [] };
      groups.set(key, group);
      if (s.name.endsWith('_bucket')) {
        if (le === undefined) throw new Error(`${s.name} without le`);
        group.buckets.push({ le: parseValue(le, s.name), value: s.value });
      } else if (s.name.endsWith('_count')) group.count = s.value;
      else group.sum = s.value;
    }
    for (const [key, group] of groups) {
      const sorted = [...group.buckets].sort((a, b) => a.le - b.le);
      if (sorted.at(-1)?.le !== Infinity) throw new Error(`${key}: no +Inf bucket`);
      sorted.reduce((previous, b) => {
        if (b.value < previous) throw new Error(`${key}: buckets are not cumulative`);
        return b.value;
      }, 0);
      if (group.count === undefined || group.sum === undefined) throw new Error(`${key}: _count or _sum missing`);
      if (sorted.at(-1)!.value !== group.count)
        throw new Error(`${key}: +Inf bucket ${sorted.at(-1)!.value} differs from _count ${group.count}`);
    }
  }
}

export function parsePrometheus(text: string): Scrape {
  const families = new Map<string, Family>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const helps = new Map<string, string>();
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) continue; // a plain comment
      const [, kind, name, rest] = match as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      if (kind === 'HELP') {
        if (helps.has(name)) throw new Error(`HELP twice for ${name}`);
        helps.set(name, rest);
        const family = families.get(name);
        if (family) family.help = rest;
        continue;
      }
      if (!TYPES.includes(rest as MetricType)) throw new Error(`bad type in: ${line}`);
      if (families.has(name)) throw new Error(`TYPE twice for ${name}`);
      families.set(name, { name, type: rest as MetricType, help: helps.get(name), samples: [] });
      continue;
    }
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) throw new Error(`bad sample line: ${line}`);
    const name = line.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') ({ labels, end: i } = parseLabels(line, i));
    if (line[i] !== ' ') throw new Error(`expected a space before the value in: ${line}`);
    const parts = line.slice(i + 1).split(' ');
    if (parts.length < 1 || parts.length > 2) throw new Error(`bad value part in: ${line}`);
    const value = parseValue(parts[0]!, line);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`bad timestamp in: ${line}`);
    const family = familyOf(name, families);
    if (!family) throw new Error(`sample before (or without) its TYPE: ${line}`);
    if (family.type === 'counter' && !(value >= 0)) throw new Error(`negative or NaN counter: ${line}`);
    const key = seriesKey(name, labels);
    if (seen.has(key)) throw new Error(`duplicate series ${key}`);
    seen.add(key);
    const sample = { name, family: family.name, labels, value };
    family.samples.push(sample);
    samples.push(sample);
  }
  checkHistograms(families);

  const matching = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    families,
    samples,
    value: (name, labels) => {
      const found = matching(name, labels);
      if (found.length !== 1) throw new Error(`${found.length} samples of ${seriesKey(name, labels ?? {})}`);
      return found[0]!.value;
    },
    find: (name, labels) => {
      const found = matching(name, labels);
      if (found.length > 1) throw new Error(`${found.length} samples of ${seriesKey(name, labels ?? {})}`);
      return found[0]?.value;
    },
    sum: (name, labels) => matching(name, labels).reduce((total, s) => total + s.value, 0),
  };
}
