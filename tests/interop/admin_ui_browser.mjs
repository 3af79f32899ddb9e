// The official Socket.IO Admin UI (@socket.io/admin-ui 0.5.1's built page, served by the
// server under test at /admin/) in Chromium, driven like an operator would.
//
//   node admin_ui_browser.mjs <serverUrl> <password> <screenshotPath> [timeoutMs]
//
// Two test clients (npm socket.io-client) connect to "/" in rooms "red" and "blue". The
// page's connection form is filled in (server URL, user "admin", a wrong password, then
// the right one); the Sockets view must list both clients, the Rooms view their rooms;
// the Sockets view's disconnect button of client B must disconnect it, and B's row go.
// Prints one JSON line {"ok", ...observations}; exits by timeoutMs (default 60000).

import { io } from "socket.io-client";
import { finish, launchChromium, loopbackContext, observed, startWatchdog } from "./browser_run.mjs";

const [url, password, screenshotPath, rawTimeout] = process.argv.slice(2);
const TIMEOUT = Math.min(Number(rawTimeout) || 60000, 90000);
const STEP = 15000;
const clients = [];

startWatchdog(TIMEOUT);

function step(name) {
  observed.steps.push(name);
}

function client(room) {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ["websocket"], auth: { room } });
  clients.push(socket);
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

async function login(page, pass) {
  await page.getByLabel("Server URL").fill(url);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(pass);
  await page.getByRole("button", { name: "Connect" }).click();
}

async function show(page, hash) {
  await page.evaluate((h) => { window.location.hash = h; }, hash);
}

/** Views slide in and out: the old one stays in the page for a moment. Wait until exactly
 * `n` elements match (polled, bounded). */
async function waitCount(locator, n, what) {
  const deadline = Date.now() + STEP;
  for (;;) {
    const count = await locator.count();
    if (count === n) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${count} elements, expected ${n}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function rowTexts(page, words) {
  const texts = await page.locator("tbody tr").allInnerTexts();
  return [...new Set(texts.map((t) => t.replace(/\s+/g, " ").trim()))]
    .filter((t) => words.some((w) => t.includes(w)));
}

async function main() {
  const a = await client("red");
  const b = await client("blue");
  let bReason = null;
  b.on("disconnect", (reason) => { bReason = reason; });
  observed.ids = { a: a.id, b: b.id };
  step("clients connected");

  const browser = await launchChromium(STEP * 2);
  observed.browserVersion = browser.version();
  const context = await loopbackContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on("console", (msg) => {
    if (msg.type() === "error") observed.consoleErrors.push(msg.text());
  });
  page.on("pageerror", (err) => observed.pageErrors.push(err.message));
  await page.goto(`${url}/admin/`, { waitUntil: "load" });
  observed.title = await page.title();
  step("page loaded");

  await login(page, "wrong");
  const refused = page.getByText("Invalid credentials");
  await refused.waitFor({ state: "visible" });
  observed.refusedText = await refused.innerText();
  step("wrong password refused");
  await login(page, password);
  await page.locator(".v-dialog--active").waitFor({ state: "detached" });
  step("logged in");

  await show(page, "#/sockets/");
  const rowA = page.locator("tr", { hasText: a.id });
  const rowB = page.locator("tr", { hasText: b.id });
  await waitCount(rowA, 1, "row of A");
  await waitCount(rowB, 1, "row of B");
  observed.socketRows = await rowTexts(page, [a.id, b.id]);
  step("sockets listed");

  await show(page, "#/rooms/");
  await waitCount(page.locator("tr", { hasText: a.id }), 0, "sockets view gone");
  await waitCount(page.locator("tr", { hasText: "red" }), 1, "row of red");
  await waitCount(page.locator("tr", { hasText: "blue" }), 1, "row of blue");
  observed.roomRows = await rowTexts(page, ["red", "blue"]);
  step("rooms listed");

  await show(page, "#/sockets/");
  await waitCount(page.locator("tr", { hasText: "red" }), 0, "rooms view gone");
  await waitCount(rowB, 1, "row of B");
  await rowB.locator("button").first().click();
  const deadline = Date.now() + STEP;
  while (bReason === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  observed.bReason = bReason;
  await show(page, "#/sockets/");  // (a click on a row also opens its details)
  await waitCount(rowB, 0, "row of B after its disconnection");
  await waitCount(rowA, 1, "row of A after B's disconnection");
  observed.socketRowsAfter = await rowTexts(page, [a.id, b.id]);
  observed.aConnected = a.connected;
  step("B disconnected from the UI");

  await show(page, "#/servers/");
  await waitCount(rowA, 0, "sockets view gone");
  await page.locator("tr", { hasText: "python" }).first().waitFor({ state: "visible" });
  observed.serverRows = await rowTexts(page, ["python"]);
  step("server listed");
  await show(page, "#/sockets/");
  await waitCount(rowA, 1, "row of A");
  await page.screenshot({ path: screenshotPath, fullPage: true });
  for (const c of clients) c.disconnect();
  finish({ ok: true }, 0);
}

main().catch((err) => {
  for (const c of clients) c.disconnect();
  finish({ ok: false, error: String((err && err.stack) || err) }, 1);
});
