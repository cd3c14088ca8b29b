/** A small HTTP load client for the bench: keep-alive agent, N requests at concurrency C, latency percentiles. */
import http from 'node:http';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface LoadStats {
  concurrency: number;
  requests: number;
  errors: number;
  errorSamples: string[];
  seconds: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
}

/** One request; the body (Buffer) is sent with Content-Length, the reply is collected in full. */
export function request(agent: http.Agent, url: string, options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...options.headers };
    if (options.body) headers['Content-Length'] = options.body.length;
    const req = http.request(url, { method: options.method ?? 'GET', agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end(options.body);
  });
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? NaN;
}

/**
 * Runs `count` calls of `one(i)` with at most `concurrency` in flight. `one` resolves to null on
 * success or an error description. Latency is measured per call in milliseconds.
 */
/** `latencies`, when given, receives every request's latency (ms), for percentiles over several runs. */
export async function runLoad(
  concurrency: number,
  count: number,
  one: (i: number) => Promise<string | null>,
  latencies: number[] = [],
): Promise<LoadStats> {
  const mine: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  let next = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const t0 = process.hrtime.bigint();
      let failure: string | null;
      try {
        failure = await one(i);
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
      }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      mine.push(ms);
      latencies.push(ms);
      if (failure !== null) {
        errors += 1;
        if (errorSamples.length < 5 && !errorSamples.includes(failure)) errorSamples.push(failure);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  mine.sort((a, b) => a - b);
  return {
    concurrency,
    requests: count,
    errors,
    errorSamples,
    seconds,
    rps: count / seconds,
    p50: percentile(mine, 50),
    p95: percentile(mine, 95),
    p99: percentile(mine, 99),
  };
}

/** `size` bytes of `chunk` repeated, as pieces of at most `chunk.length`. */
function* repeated(chunk: Buffer, size: number): Generator<Buffer> {
  for (let sent = 0; sent < size; sent += chunk.length) yield size - sent >= chunk.length ? chunk : chunk.subarray(0, size - sent);
}

/** Sends `body` piece by piece (waiting for drain); resolves with the reply and the seconds the whole request took. */
function sendBody(agent: http.Agent, url: string, options: { method: string; headers: http.OutgoingHttpHeaders }, body: Iterator<Buffer>): Promise<{ reply: Reply; seconds: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(url, { ...options, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () =>
        resolve({ reply: { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }),
      );
      res.once('error', reject);
    });
    req.once('error', reject);
    const pump = () => {
      for (let next = body.next(); !next.done; next = body.next()) {
        if (!req.write(next.value)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** Streams `total` bytes made of `chunk` repeated as a PUT body; resolves with the reply and the seconds. */
export function streamUpload(agent: http.Agent, url: string, total: number, chunk: Buffer, headers: http.OutgoingHttpHeaders = {}): Promise<{ reply: Reply; seconds: number }> {
  return sendBody(agent, url, { method: 'PUT', headers: { ...headers, 'Content-Length': total } }, repeated(chunk, total));
}

/** GETs a URL and discards the body, counting bytes; resolves with status, bytes, seconds and the ETag. */
export function streamDownload(agent: http.Agent, url: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; bytes: number; seconds: number; complete: boolean; etag: string | undefined }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(url, { method: 'GET', agent, headers }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9, complete: res.complete, etag: res.headers.etag }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}

/**
 * A multipart POST of several files, each `size` bytes of `chunk` repeated, with a Content-Length
 * (as a browser sends): resolves with the reply and the seconds the whole request took.
 */
export function streamMultipartUpload(agent: http.Agent, url: string, files: { name: string; size: number }[], chunk: Buffer, headers: http.OutgoingHttpHeaders = {}): Promise<{ reply: Reply; seconds: number }> {
  const boundary = `benchboundary${Date.now()}`;
  const heads = files.map((f, i) => Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${f.name}"\r\nContent-Type: application/octet-stream\r\n\r\n`));
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const total = heads.reduce((n, h) => n + h.length, 0) + files.reduce((n, f) => n + f.size, 0) + tail.length;
  // Every piece in order: a part's head, its bytes in `chunk`-sized pieces, then the closing boundary.
  function* pieces(): Generator<Buffer> {
    for (const [i, f] of files.entries()) {
      yield heads[i]!;
      yield* repeated(chunk, f.size);
    }
    yield tail;
  }
  return sendBody(agent, url, { method: 'POST', headers: { ...headers, 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': total } }, pieces());
}
