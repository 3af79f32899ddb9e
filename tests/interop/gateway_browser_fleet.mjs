// The gateway's page through HAProxy in front of a gateway fleet (tests/realtime_app_fleet).
//
//   node gateway_browser_fleet.mjs <balancerUrl> <apiKey> <tokensJson> [timeoutMs] [killPid]
//
// tokensJson: {"alice": {"token": "...", "node": "node1"}, "bob": {...}}. The fleet runs with
// a shared JWT_SECRET (no development mode), so the page asks for a token: each user opens
// the page, clicks Connect (no dev token: the JWT field appears), pastes its token, connects.
// Each browser context carries HAProxy's cookie SERVERID=<node> before the first request, so
// alice's page lands on one node and bob's on the other. Alice sends bob a private message;
// the service API (through the balancer) notifies bob; /stats says where the sockets are.
// With killPid (the pid of alice's node): that node is killed (SIGKILL), bob sends alice a
// message at once, and alice's page, reconnected through the balancer to the other node,
// shows it once and says that it recovered its session.
// Prints one JSON line: {"ok": true, ...observations} (exit 0) or {"ok": false, "error"}.

import { finish, launchChromium, loopbackContext, observed, startWatchdog } from "./browser_run.mjs";

const [url, apiKey, rawTokens, rawTimeout, rawKillPid] = process.argv.slice(2);
const TIMEOUT = Math.min(Number(rawTimeout) || 45000, 80000);
const STEP = 10000;
const users = JSON.parse(rawTokens);

startWatchdog(TIMEOUT);

function step(name) {
  observed.steps.push(name);
}

async function openAs(user) {
  const context = await loopbackContext();
  const { hostname } = new URL(url);
  await context.addCookies([
    { name: "SERVERID", value: users[user].node, domain: hostname, path: "/" },
  ]);
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on("console", (msg) => {
    if (msg.type() === "error") observed.consoleErrors.push(`${user}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => observed.pageErrors.push(`${user}: ${err.message}`));
  await page.goto(`${url}/?user=${user}`, { waitUntil: "load" });
  await page.getByTestId("login-user").waitFor({ state: "visible" });
  await page.getByTestId("login-button").click();
  // No development mode in a fleet: the page asks for a token.
  const field = page.getByPlaceholder("paste a token");
  await field.waitFor({ state: "visible" });
  await field.fill(users[user].token);
  await page.getByTestId("login-button").click();
  await page.locator('[data-testid="status"].connected').waitFor({ state: "visible" });
  // The user id comes with the gateway's "connected" event, a moment after the connection.
  await page.getByTestId("me").filter({ hasText: users[user].id }).waitFor({ state: "visible" });
  const status = (await page.getByTestId("status").innerText()).replace(/\s+/g, " ").trim();
  const me = await page.getByTestId("me").innerText();
  const cookies = (await context.cookies()).map((c) => `${c.name}=${c.value}`);
  return { page, status, me, cookies };
}

async function api(method, path, body) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP),
  });
  return { status: response.status, body: await response.json() };
}

async function main() {
  const browser = await launchChromium(STEP * 2);
  step("launched");
  observed.browserVersion = browser.version();
  const alice = await openAs("alice");
  const bob = await openAs("bob");
  step("signed in");
  for (const [name, who] of [["alice", alice], ["bob", bob]]) {
    observed[name] = { status: who.status, me: who.me, cookies: who.cookies };
  }
  observed.stats = await api("GET", "/stats");

  const text = `hello bob from alice across nodes ${Date.now()}`;
  await alice.page.getByTestId("pm-target").fill(users.bob.id);
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

  observed.notify = await api("POST", "/api/notifications", {
    userIds: [users.bob.id], type: "info", message: "hello through the balancer",
  });
  const note = bob.page.getByTestId("notification").filter({ hasText: "hello through the balancer" });
  await note.waitFor({ state: "visible" });
  observed.bobNotification = (await note.innerText()).replace(/\s+/g, " ").trim();
  step("notification shown");

  if (rawKillPid) {
    process.kill(Number(rawKillPid), "SIGKILL");
    step("alice's node killed");
    const text2 = `while alice moves ${Date.now()}`;
    await bob.page.getByTestId("pm-target").fill(users.alice.id);
    await bob.page.getByTestId("pm-text").fill(text2);
    await bob.page.getByTestId("pm-send").click();
    const moved = alice.page.getByTestId("message").filter({ hasText: text2 });
    await moved.waitFor({ state: "visible", timeout: STEP * 2 });
    await alice.page.locator('[data-testid="status"].connected').waitFor({ state: "visible" });
    const recovery = alice.page.getByTestId("recovery");
    await recovery.waitFor({ state: "visible" });
    observed.aliceRecovery = (await recovery.innerText()).replace(/\s+/g, " ").trim();
    await alice.page.waitForTimeout(1000); // a second copy would be shown by now
    observed.text2 = text2;
    observed.aliceMovedMessages = await moved.count();
    observed.aliceStatusAfter = (await alice.page.getByTestId("status").innerText())
      .replace(/\s+/g, " ").trim();
    observed.aliceCookiesAfter = (await alice.page.context().cookies())
      .map((c) => `${c.name}=${c.value}`);
    observed.statsAfter = await api("GET", "/stats");
    step("message shown after the move");
  }
  finish({ ok: true }, 0);
}

main().catch((err) => finish({ ok: false, error: String(err && err.stack || err) }, 1));
