// The chat example's page (examples/chat) in Chromium: two pages load the socket.io client
// from the server itself (serve_client), one sends a line, both show it.
//
//   node chat_example_browser.mjs <url> [timeoutMs]
//
// Prints one JSON line {"ok": true, ...} (exit 0) or {"ok": false, "error"} (exit 1).

import { finish, launchChromium, loopbackContext, observed, startWatchdog } from "./browser_run.mjs";

const [url, rawTimeout] = process.argv.slice(2);
const TIMEOUT = Math.min(Number(rawTimeout) || 30000, 60000);
startWatchdog(TIMEOUT);

async function open(context, who) {
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.on("console", (msg) => {
    if (msg.type() === "error") observed.consoleErrors.push(`${who}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => observed.pageErrors.push(`${who}: ${err.message}`));
  await page.goto(url, { waitUntil: "load" });
  // Connected once the client's socket says so.
  await page.waitForFunction(() => typeof socket !== "undefined" && socket.connected);
  return page;
}

async function main() {
  const browser = await launchChromium(20000);
  observed.browserVersion = browser.version();
  const [ann, bob] = [await open(await loopbackContext(), "ann"),
                      await open(await loopbackContext(), "bob")];
  observed.steps.push("connected");
  await ann.fill("#name", "ann");
  await ann.fill("#text", "hello from the browser");
  await ann.click("button");
  const line = "ann: hello from the browser";
  await bob.locator("#log li", { hasText: line }).waitFor();
  await ann.locator("#log li", { hasText: line }).waitFor();
  observed.bobLines = await bob.locator("#log li").allInnerTexts();
  observed.transport = await bob.evaluate(() => socket.io.engine.transport.name);
  finish({ ok: true }, 0);
}

main().catch((err) => finish({ ok: false, error: String(err && err.stack || err) }, 1));
