// The gateway's page when the token expires, with playwright-core and the system Chromium.
//
//   node gateway_browser_expiry.mjs <gatewayUrl> <token> [timeoutMs]
//
// The gateway runs with a JWT key (no development mode, so the page asks for a token) and
// JWT_LEEWAY=0; <token> expires a few seconds after it is minted. The page signs in with
// it, gets disconnected by the gateway when it expires, and must say why. Prints one JSON
// line: {"ok": true, ...observations} (exit 0) or {"ok": false, "error", ...} (exit 1).
// Only 127.0.0.1 is contacted; the process exits by timeoutMs (default 60000) at the latest.

import { finish, launchChromium, loopbackContext, observed, startWatchdog } from "./browser_run.mjs";

const [url, token, rawTimeout] = process.argv.slice(2);
const TIMEOUT = Math.min(Number(rawTimeout) || 60000, 80000);
const STEP = 15000;

startWatchdog(TIMEOUT);

const text = async (locator) => (await locator.innerText()).replace(/\s+/g, " ").trim();

async function main() {
  await launchChromium(STEP);
  const context = await loopbackContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on("console", (msg) => {
    // The dev token endpoint answers 404 without development mode: the page expects it.
    if (msg.type() === "error" && !msg.text().includes("404")) {
      observed.consoleErrors.push(msg.text());
    }
  });
  page.on("pageerror", (err) => observed.pageErrors.push(err.message));
  await page.goto(`${url}/?user=alice`, { waitUntil: "load" });
  // First try: no development mode, the page asks for a token.
  await page.getByTestId("login-button").click();
  const field = page.getByPlaceholder("paste a token");
  await field.waitFor({ state: "visible" });
  observed.steps.push("asked for a token");
  await field.fill(token);
  await page.getByTestId("login-button").click();
  await page.locator('[data-testid="status"].connected').waitFor({ state: "visible" });
  observed.connected = await text(page.getByTestId("status"));
  observed.steps.push("connected");
  // The gateway disconnects the socket when the token expires; the page says why.
  await page.locator('[data-testid="status"]:not(.connected)')
    .waitFor({ state: "visible", timeout: TIMEOUT });
  const error = page.getByTestId("connection-error");
  await error.waitFor({ state: "visible" });
  observed.reason = await text(error);
  observed.status = await text(page.getByTestId("status"));
  observed.loginShown = await page.getByTestId("login-button").isVisible();
  observed.steps.push("expired");
  finish({ ok: true }, 0);
}

main().catch((err) => finish({ ok: false, error: String(err && err.stack || err) }, 1));
