import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { describe, expect, it } from 'vitest';
import { receiveMultipart, requestBody } from '../../app/http/receive-upload.js';
import type { PendingUpload } from '../../app/uploads/uploads.usecases.js';
import { detectType, sanitiseFilename, sanitiseSegment } from '../../app/uploads/content-type.models.js';

describe('detectType on markup (linear time)', () => {
  // The old pattern, (?:<!--[\s\S]*?-->\s*)*, took 1.7 s for 28 empty comments and doubled with each
  // one: 40 of them (280 bytes) would have held the event loop for hours.
  it('answers at once for many empty comments followed by text', { timeout: 2_000 }, async () => {
    expect(await detectType(Buffer.from(`${'<!---->'.repeat(40)}x`))).toBe('text/plain');
    expect(await detectType(Buffer.from(`${'<!---->'.repeat(146)}x`))).toBe('text/plain');
    expect(await detectType(Buffer.from(`${'<!-- -->\n'.repeat(110)}x`))).toBe('text/plain');
  });

  it('still sees a page or an image behind many comments', { timeout: 2_000 }, async () => {
    expect(await detectType(Buffer.from(`${'<!---->'.repeat(40)}<html><body>hi</body></html>`))).toBe('text/html');
    expect(await detectType(Buffer.from(`\ufeff  <!-- a -->\n<!-- b --> <SVG xmlns="http://www.w3.org/2000/svg"/>`))).toBe('image/svg+xml');
    expect(await detectType(Buffer.from('<!-- -- not the end -> --><!DOCTYPE html><p>x'))).toBe('text/html');
  });

  it.each([
    ['a page', '<!DOCTYPE html><html></html>', 'text/html'],
    ['a page without a doctype', '  <html><script>x</script></html>', 'text/html'],
    ['a fragment', '<div>x</div>', 'text/html'],
    ['an anchor', '<a href="x">y</a>', 'text/html'],
    ['an svg', '<svg xmlns="http://www.w3.org/2000/svg"></svg>', 'image/svg+xml'],
    ['an unknown tag', '<audio src="x">', 'text/plain'],
    ['an unclosed comment', '<!-- <html>', 'text/plain'],
    ['text before the tag', 'hello <html>', 'text/plain'],
    ['a tag past the first KiB', `${' '.repeat(1030)}<html>`, 'text/plain'],
  ])('%s is %s', async (_name, text, type) => {
    expect(await detectType(Buffer.from(text))).toBe(type);
  });
});

describe('sanitiseFilename keeps at most 255 UTF-16 units', () => {
  it.each([
    ['four-byte characters', '😀'.repeat(300), '😀'.repeat(127)],
    ['four-byte characters with an extension', `${'😀'.repeat(300)}.pptx`, `${'😀'.repeat(125)}.pptx`],
    ['a pair straddling the cut', `${'a'.repeat(250)}${'\u{1F525}'.repeat(10)}`, `${'a'.repeat(250)}${'\u{1F525}'.repeat(2)}`],
    ['three-byte characters', '語'.repeat(300), '語'.repeat(255)],
  ])('%s', (_name, raw, kept) => {
    const name = sanitiseFilename(raw);
    expect(name).toBe(kept);
    expect(name.length).toBeLessThanOrEqual(255);
    expect(name.isWellFormed()).toBe(true);
  });

  it('removes the invisible characters the bidi and zero-width ranges miss', () => {
    // The Arabic letter mark, the word joiner, an invisible separator, the Mongolian vowel separator.
    expect(sanitiseFilename('x\u061cgpj.exe')).toBe('xgpj.exe');
    expect(sanitiseFilename('a\u2060b\u2063c\u180e.txt')).toBe('abc.txt');
  });

  it('leaves a name of exactly 255 units as it is, and cuts drop entry segments the same way', () => {
    const exact = `${'😀'.repeat(126)}abc`;
    expect(exact.length).toBe(255);
    expect(sanitiseFilename(exact)).toBe(exact);
    expect(sanitiseSegment(`${'😀'.repeat(200)}.jpeg`)).toBe(`${'😀'.repeat(125)}.jpeg`);
  });
});

describe("a raw PUT's body stream (requestBody)", () => {
  // The client may hang up while its upload waits for its keys, before anything reads the stream:
  // the stream is destroyed with the hang-up, and that must not be an unhandled 'error' (which ends the
  // process; vitest fails the run on one). The pipeline, once it starts, still sees the failure.
  it('survives a client that hangs up before the stream is read, and fails the read that follows', async () => {
    let received!: () => void;
    const arrived = new Promise<void>((resolve) => (received = resolve));
    let sourceClosed!: (source: Readable) => void;
    const closed = new Promise<Readable>((resolve) => (sourceClosed = resolve));
    const server = http.createServer((req) => {
      const body = requestBody(req as Request);
      req.once('close', () => setImmediate(() => sourceClosed(body.source)));
      received();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const { port } = server.address() as AddressInfo;
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.write('PUT /upload/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789');
      await arrived;
      socket.destroy();
      const source = await closed;
      expect(source.destroyed).toBe(true);
      await expect(pipeline(source, new PassThrough())).rejects.toBeInstanceOf(Error);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("a drop's parts (receiveMultipart)", () => {
  /** Until every pending macrotask-free stream step has run: no I/O and no timers are involved here. */
  const settle = async () => {
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  };

  // A part waits for its turn while the archive writes the ones before it. Its bytes must wait in
  // the kernel, not in a buffer of ours: piped at once into a stream nobody read yet, every part
  // under ~48 KiB was taken whole, so a drop of many small files held all of them in memory.
  it('reads no further into the request while a part waits for its turn in the archive', async () => {
    const boundary = 'cbx-boundary';
    const part = (name: string, bytes: number) =>
      Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: text/plain\r\n\r\n`),
        Buffer.alloc(bytes, 0x61),
        Buffer.from('\r\n'),
      ]);
    const count = 60;
    const body = Buffer.concat([
      part('first.txt', 1024),
      ...Array.from({ length: count }, (_, i) => part(`p${i}.txt`, 8 * 1024)),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    // The request: its body handed out 16 KiB at a time, only as fast as it is read.
    let pulled = 0;
    const req = Object.assign(
      new Readable({
        read() {
          const piece = body.subarray(pulled, pulled + 16 * 1024);
          pulled += piece.length;
          this.push(piece.length > 0 ? piece : null);
        },
      }),
      {
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(body.length) },
        ip: '127.0.0.1',
        complete: false,
      },
    );
    const pending = { stored: { size: 1024 }, discard: async () => undefined } as unknown as PendingUpload;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const added: string[] = [];
    const consumed: string[] = [];
    let chain = Promise.resolve();
    const receive = receiveMultipart(
      async ({ source }) => {
        for await (const chunk of source) void chunk;
        return pending;
      },
      () => ({
        // Like the archive: one entry at a time, in order; the first waits for the gate.
        add: ({ source, filename }) => {
          added.push(String(filename));
          const previous = chain;
          chain = (async () => {
            await previous;
            await gate;
            let bytes = 0;
            for await (const chunk of source) bytes += (chunk as Buffer).length;
            consumed.push(`${filename}:${bytes}`);
          })();
          return chain;
        },
        finish: async () => ({ pending, filename: 'drop.zip' }),
        discard: async () => undefined,
      }),
      { fileSize: 1 << 20, maxFiles: 100 },
    );
    const done = receive(req as unknown as Request, { setHeader: () => undefined } as unknown as Response);

    await settle();
    // The first drop part waits at the gate; busboy stops at it, with only the pieces between the
    // request and the parser taken (measured: 3 of 16 KiB, 4 parts; piped at once: all 60).
    expect(added.length).toBeGreaterThanOrEqual(1);
    expect(added.length).toBeLessThanOrEqual(5);
    expect(pulled).toBeLessThanOrEqual(4 * 16 * 1024);

    openGate();
    const result = await done;
    expect(result.filename).toBe('drop.zip');
    expect(added).toEqual(Array.from({ length: count }, (_, i) => `p${i}.txt`));
    expect(consumed).toEqual(Array.from({ length: count }, (_, i) => `p${i}.txt:${8 * 1024}`));
    expect(pulled).toBe(body.length);
  });
});
