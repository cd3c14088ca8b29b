import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startTestApp, type TestApp } from './app.js';

// Real Chromium from Debian (DEVELOPERS.md); CHROMIUM_PATH overrides it.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const AXE_SOURCE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
// The API answers 4xx on purpose; any other failed response (a missing script or stylesheet) is a problem.
const API_PATHS = /^\/(status|download|files|upload|preview)(\/|$)/;

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A context whose console errors, page errors, CSP violations and failed assets land in `problems`. */
export async function watchedContext(browser: Browser, problems: string[], label: string, width = 1280): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width, height: 900 }, acceptDownloads: true });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
    });
  });
  context.on('page', (page) => {
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      if (/^Failed to load resource: the server responded with a status of \d+/.test(message.text())) return;
      problems.push(`${label} ${page.url()} console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`${label} ${page.url()} pageerror: ${error.message}`));
    page.on('response', (response) => {
      const { pathname } = new URL(response.url());
      if (response.status() >= 400 && !API_PATHS.test(pathname)) problems.push(`${label} ${response.status()} for ${pathname}`);
    });
  });
  return context;
}

/** Serious and critical WCAG 2.2 AA findings (axe runs over CDP, which the page's CSP does not govern). */
export async function axeViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (
      window as unknown as {
        axe: { run(options: object): Promise<{ violations: { id: string; impact: string | null; nodes: { target: unknown[] }[] }[] }> };
      }
    ).axe;
    const result = await axe.run({ runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'wcag22aa'] } });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => JSON.stringify(n.target)) }));
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.targets.join(', ')}`);
}

/**
 * A real app and Chromium for the enclosing describe block. `newContext` opens a watched context
 * (its console errors and failed requests land in `problems`); each closes after its test, and
 * `problems` starts empty for every test.
 */
export function useBrowserStack(): {
  readonly app: TestApp;
  readonly browser: Browser;
  problems: string[];
  newContext(label: string, width?: number): Promise<BrowserContext>;
  /** A context opened otherwise, closed after its test like the others. */
  adopt(context: BrowserContext): BrowserContext;
} {
  let app: TestApp | undefined;
  let browser: Browser | undefined;
  const problems: string[] = [];
  const contexts: BrowserContext[] = [];
  beforeAll(async () => {
    app = await startTestApp();
    browser = await launchChromium();
  });
  afterEach(async () => {
    for (const context of contexts.splice(0)) await context.close().catch(() => undefined);
    problems.length = 0;
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });
  return {
    get app() {
      return app!;
    },
    get browser() {
      return browser!;
    },
    problems,
    async newContext(label, width = 1280) {
      const context = await watchedContext(browser!, problems, label, width);
      contexts.push(context);
      return context;
    },
    adopt(context) {
      contexts.push(context);
      return context;
    },
  };
}
