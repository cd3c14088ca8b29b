import { describe, expect, it } from 'vitest';
import { dropName, EntryNamer, entrySegments, MAX_ENTRY_PATH_CHARACTERS } from '../../app/uploads/drop.models.js';

describe('entry paths of a drop', () => {
  it.each([
    ['photos/2026/a.jpg', ['photos', '2026', 'a.jpg']],
    ['../../etc/passwd', ['etc', 'passwd']],
    ['/abs/path.txt', ['abs', 'path.txt']],
    ['C:\\Users\\me\\a.txt', ['Users', 'me', 'a.txt']],
    ['C:relative.txt', ['relative.txt']],
    ['\\\\server\\share\\x.txt', ['server', 'share', 'x.txt']],
    ['a/./b/../c.txt', ['a', 'b', 'c.txt']],
    ['.git/config', ['git', 'config']],
    ['x/\u202Eevil\u2066.txt', ['x', 'evil.txt']],
    ['x/tab\tand\nnewline.txt', ['x', 'tabandnewline.txt']],
    ['nul.txt', ['_nul.txt']],
    ['COM1', ['_COM1']],
    ['ab:c|d?.txt', ['ab_c_d_.txt']],
    ['folder./file. ', ['folder', 'file']],
    ['..', ['file']],
    ['', ['file']],
    ['\ud800lone.txt', ['\ufffdlone.txt']],
  ])('%j → %j', (raw, segments) => {
    expect(entrySegments(raw)).toEqual(segments);
  });

  it('keeps only the file name of a path longer than the limit, and cuts a long segment keeping its extension', () => {
    const deep = Array.from({ length: 20 }, (_, i) => `folder-${i}-${'x'.repeat(60)}`).join('/') + '/last.txt';
    expect(Array.from(deep).length).toBeGreaterThan(MAX_ENTRY_PATH_CHARACTERS);
    expect(entrySegments(deep)).toEqual(['last.txt']);
    const [long] = entrySegments(`${'é'.repeat(300)}.jpeg`);
    expect(Array.from(long!)).toHaveLength(255);
    expect(long!.endsWith('.jpeg')).toBe(true);
  });
});

describe('EntryNamer', () => {
  it('renames duplicates case-insensitively with the first free number before the extension', () => {
    const namer = new EntryNamer();
    expect(['a.jpg', 'a.jpg', 'A.JPG', 'a (2).jpg', 'README', 'readme'].map((n) => namer.name(n))).toEqual([
      'a.jpg',
      'a (2).jpg',
      'A (3).JPG',
      'a (2) (2).jpg',
      'README',
      'readme (2)',
    ]);
  });

  it('never lets a file and a folder share a name, and renames a folder consistently for every entry under it', () => {
    const namer = new EntryNamer();
    expect(namer.name('docs/a.txt')).toBe('docs/a.txt');
    expect(namer.name('docs')).toBe('docs (2)');
    expect(namer.name('report')).toBe('report');
    expect(namer.name('report/x.txt')).toBe('report (2)/x.txt');
    expect(namer.name('report/y.txt')).toBe('report (2)/y.txt');
  });

  it('folds case as Windows and macOS do: final sigma, and letters that case mapping leaves decomposed', () => {
    const namer = new EntryNamer();
    expect(namer.name('ΟΔΟΣ.txt')).toBe('ΟΔΟΣ.txt');
    expect(namer.name('οδος.txt')).toBe('οδος (2).txt');
    expect(namer.name('J\u030C.txt')).toBe('J\u030C.txt');
    expect(namer.name('\u01F0.txt')).toBe('\u01F0 (2).txt');
  });

  it('keeps a numbered or device name within 255 UTF-16 units, with its number and extension', () => {
    const namer = new EntryNamer();
    const long = `${'a'.repeat(251)}.txt`;
    expect(namer.name(long)).toBe(long);
    const second = namer.name(long.toUpperCase());
    expect(second).toHaveLength(255);
    expect(second.endsWith(' (2).TXT')).toBe(true);
    // An extension that leaves no room for a stem (`a.` and 253 more): the number goes at the end.
    const allExtension = `a.${'x'.repeat(253)}`;
    expect(namer.name(allExtension)).toBe(allExtension);
    const again = namer.name(allExtension);
    expect(again).toHaveLength(255);
    expect(again).toBe(`a.${'x'.repeat(249)} (2)`);
    const [device] = entrySegments(`con.${'x'.repeat(251)}`);
    expect(device).toHaveLength(255);
    expect(device!.startsWith('_con.')).toBe(true);
  });

  it('numbers thousands of one name in order, going on from the last number (no search from 1 each time)', () => {
    const namer = new EntryNamer();
    const names = Array.from({ length: 5_000 }, () => namer.name('dir/a.txt'));
    expect(names[0]).toBe('dir/a.txt');
    expect(names[4_999]).toBe('dir/a (5000).txt');
    expect(new Set(names).size).toBe(5_000);
    expect(namer.name('dir/a (5001).txt')).toBe('dir/a (5001).txt'); // taken by its own spelling first...
    expect(namer.name('dir/a.txt')).toBe('dir/a (5002).txt'); // ...so the next one skips it
  });

  // A hundred entries of 500 nested folders each (about 1,000 characters, within the path limit):
  // keyed by their whole paths, the namer's tables held every prefix of every path, ~200 MB here
  // in two-byte characters, and a request of ~150 KB could make the API hold that.
  it('holds memory in proportion to its entries, not to their depth times their length', () => {
    const before = process.memoryUsage().heapUsed;
    const namer = new EntryNamer();
    const deep = (i: number) => `r${i}/${'ж/'.repeat(500)}f.txt`;
    for (let i = 0; i < 100; i += 1) expect(namer.name(deep(i))).toBe(deep(i));
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(40 * 1024 * 1024);
    expect(namer.name(deep(7))).toBe(`r7/${'ж/'.repeat(500)}f (2).txt`);
    expect(namer.name(`R7/${'Ж/'.repeat(500)}`)).toBe(`r7/${'ж/'.repeat(499)}Ж (2)`);
  });

  it('merges folders that differ only by case under the first spelling', () => {
    const namer = new EntryNamer();
    expect(namer.name('Photos/a.jpg')).toBe('Photos/a.jpg');
    expect(namer.name('photos/b.jpg')).toBe('Photos/b.jpg');
  });
});

describe('dropName', () => {
  it('is the shared top folder, else the first file without its extension and how many follow', () => {
    expect(dropName(['photos/a.jpg', 'photos/2026/b.jpg'])).toBe('photos.zip');
    expect(dropName(['report.pdf', 'b.jpg', 'c.txt'])).toBe('report-and-2-more.zip');
    expect(dropName(['photos/a.jpg', 'notes.txt'])).toBe('a-and-1-more.zip');
    expect(dropName(['photos/a.jpg', 'music/b.mp3'])).toBe('a-and-1-more.zip');
    expect(dropName(['README', 'LICENSE'])).toBe('README-and-1-more.zip');
  });

  it('stays within 255 characters and keeps its suffix', () => {
    const name = dropName([`${'y'.repeat(300)}.txt`, 'b']);
    expect(Array.from(name)).toHaveLength(255);
    expect(name.endsWith('-and-1-more.zip')).toBe(true);
  });

  it('keeps its suffix when the first name is made of characters outside the BMP (two UTF-16 units each)', () => {
    const name = dropName([`${'😀'.repeat(200)}.txt`, 'b']);
    expect(name.endsWith('-and-1-more.zip')).toBe(true);
    expect(name.length).toBeLessThanOrEqual(255);
    expect(name).toBe(`${'😀'.repeat(120)}-and-1-more.zip`);
  });
});
