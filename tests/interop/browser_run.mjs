// What every browser scenario of the gateway shares: Chromium (Debian's, with the flags this
// machine needs), a context that can only reach 127.0.0.1, the observations printed as one
// JSON line at the end, and a watchdog so that the process always exits.

import { chromium } from "playwright-core";

const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/** What the scenario saw; printed with the result. */
export const observed = { steps: [], consoleErrors: [], pageErrors: [], requests: [] };
let browser = null;
let finished = false;

/** Print the observations and the result as one JSON line, close the browser, exit. */
export function finish(result, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify({ ...observed, ...result }) + "\n");
  const close = browser ? browser.close().catch(() => {}) : Promise.resolve();
  const hard = setTimeout(() => process.exit(code), 5000);
  hard.unref();
  close.finally(() => process.exit(code));
}

/** Fail the run after `timeout` ms whatever it is waiting for. */
export function startWatchdog(timeout) {
  setTimeout(() => finish({ ok: false, error: `watchdog: ${timeout} ms elapsed` }, 1), timeout)
    .unref();
}

export async function launchChromium(timeout) {
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS, timeout,
  });
  return browser;
}

/** A browser context whose requests to anything but 127.0.0.1 are blocked and recorded. */
export async function loopbackContext() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  await context.route(/.*/, (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === "127.0.0.1") return route.continue();
    observed.requests.push(`blocked: ${route.request().url()}`);
    return route.abort();
  });
  return context;
}
