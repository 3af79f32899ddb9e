// Browser scenario of the gateway's page with playwright-core and the system Chromium.
//
//   node gateway_browser.mjs <gatewayUrl> <apiKey> <screenshotPath> [timeoutMs]
//
// The gateway must run in development mode (no JWT_SECRET) with API_KEY and WEB_DIR set.
// Two browser contexts sign in as alice and bob; alice sends bob a private message; the
// service API sends bob a notification; bob's page is photographed. Prints one JSON line:
// {"ok": true, ...observations} (exit 0) or {"ok": false, "error", ...} (exit 1).
// Only 127.0.0.1 is contacted; the process exits by timeoutMs (default 45000) at the latest.

import { finish, launchChromium, loopbackContext, observed, startWatchdog } from "./browser_run.mjs";

const [url, apiKey, screenshotPath, rawTimeout] = process.argv.slice(2);
const TIMEOUT = Math.min(Number(rawTimeout) || 45000, 80000);
const STEP = 10000;

startWatchdog(TIMEOUT);

function step(name) {
  observed.steps.push(name);
}

async function openAs(context, user) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on("console", (msg) => {
    if (msg.type() === "error") observed.consoleErrors.push(`${user}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => observed.pageErrors.push(`${user}: ${err.message}`));
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (u.hostname !== "127.0.0.1") observed.requests.push(`${user}: ${req.url()}`);
  });
  await page.goto(`${url}/?user=${user}`, { waitUntil: "load" });
  const login = page.getByTestId("login-user");
  await login.waitFor({ state: "visible" });
  const prefilled = await login.inputValue();
  await page.getByTestId("login-button").click();
  await page.locator('[data-testid="status"].connected').waitFor({ state: "visible" });
  const status = (await page.getByTestId("status").innerText()).replace(/\s+/g, " ").trim();
  const me = await page.getByTestId("me").innerText();
  return { page, prefilled, status, me };
}

async function main() {
  const browser = await launchChromium(STEP * 2);
  step("launched");
  observed.browserVersion = browser.version();
  // Two users, each in a context that can reach nothing but the gateway on 127.0.0.1.
  const contexts = [await loopbackContext(), await loopbackContext()];
  const alice = await openAs(contexts[0], "alice");
  const bob = await openAs(contexts[1], "bob");
  step("signed in");
  observed.alice = { prefilled: alice.prefilled, status: alice.status, me: alice.me };
  observed.bob = { prefilled: bob.prefilled, status: bob.status, me: bob.me };

  const text = `hello bob from alice ${Date.now()}`;
  await alice.page.getByTestId("pm-target").fill("bob");
  await alice.page.getByTestId("pm-text").fill(text);
  await alice.page.getByTestId("pm-send").click();
  const incoming = bob.page.getByTestId("message").filter({ hasText: text });
  await incoming.waitFor({ state: "visible" });
  observed.bobMessage = (await incoming.innerText()).replace(/\s+/g, " ").trim();
  const outgoing = alice.page.getByTestId("message").filter({ hasText: text });
  await outgoing.waitFor({ state: "visible" });
  observed.aliceMessage = (await outgoing.innerText()).replace(/\s+/g, " ").trim();
  observed.text = text;
  step("message shown");

  const response = await fetch(`${url}/api/notifications`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ userIds: ["bob"], type: "info", message: "hello from the API" }),
    signal: AbortSignal.timeout(STEP),
  });
  observed.notifyStatus = response.status;
  observed.notifyBody = await response.json();
  const note = bob.page.getByTestId("notification").filter({ hasText: "hello from the API" });
  await note.waitFor({ state: "visible" });
  observed.bobNotification = (await note.innerText()).replace(/\s+/g, " ").trim();
  observed.aliceNotifications = await alice.page.getByTestId("notification").count();
  step("notification shown");

  await bob.page.screenshot({ path: screenshotPath, fullPage: true });
  step("screenshot");
  finish({ ok: true }, 0);
}

main().catch((err) => finish({ ok: false, error: String(err && err.stack || err) }, 1));
