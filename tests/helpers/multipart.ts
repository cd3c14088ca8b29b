import { randomBytes } from 'node:crypto';
import http from 'node:http';

export interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * A multipart/form-data POST written by hand, part by part, chunked: the test decides when each byte
 * goes out, so it can stop half-way through a part, wait for the server, then go on or hang up.
 */
export function openMultipart(url: string, headers: Record<string, string> = {}) {
  const boundary = `cbx${randomBytes(12).toString('hex')}`;
  const req = http.request(url, { method: 'POST', headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`, ...headers } });
  let first = true;
  const answer = new Promise<RawAnswer>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
  });
  answer.catch(() => undefined); // read by the caller
  const write = (data: Buffer | string) =>
    new Promise<void>((resolve) => {
      if (req.destroyed) return resolve();
      if (req.write(data)) resolve();
      else req.once('drain', resolve);
    });
  const opening = () => {
    const prefix = first ? '' : '\r\n';
    first = false;
    return `${prefix}--${boundary}\r\n`;
  };
  return {
    answer,
    /** The headers of a part; its bytes follow with `data()`. */
    startFile: (filename: string, type = 'application/octet-stream') =>
      write(
        `${opening()}Content-Disposition: form-data; name="file"; filename="${filename.replace(/"/g, '%22')}"\r\nContent-Type: ${type}\r\n\r\n`,
      ),
    field: (name: string, value: string) => write(`${opening()}Content-Disposition: form-data; name="${name}"\r\n\r\n${value}`),
    data: write,
    file: async (filename: string, bytes: Buffer) => {
      await write(
        `${opening()}Content-Disposition: form-data; name="file"; filename="${filename.replace(/"/g, '%22')}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      );
      await write(bytes);
    },
    /** Many small files, written in slices of about a MiB rather than one write per part. */
    files: async (entries: Iterable<{ filename: string; bytes: Buffer }>) => {
      let slice: Buffer[] = [];
      let size = 0;
      for (const { filename, bytes } of entries) {
        const head = Buffer.from(
          `${opening()}Content-Disposition: form-data; name="file"; filename="${filename.replace(/"/g, '%22')}"\r\n\r\n`,
        );
        slice.push(head, bytes);
        size += head.length + bytes.length;
        if (size < 1024 * 1024) continue;
        await write(Buffer.concat(slice));
        slice = [];
        size = 0;
      }
      if (slice.length > 0) await write(Buffer.concat(slice));
    },
    end: async () => {
      await write(`\r\n--${boundary}--\r\n`);
      req.end();
    },
    abort: () => req.destroy(),
  };
}
