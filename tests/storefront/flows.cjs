// Drives the storefront in headless Chromium (Debian's, through playwright-core) over each
// protocol: list and page through the items, open one, sign up, buy, and the refusals the
// page must explain (401 signed out, 403 restricted, 429 too many purchases). Prints one JSON
// object: per protocol, each flow's outcome as the page reported it, the page's own timing,
// the headers of the cross-origin calls and preflights the browser made, and script errors.
// Usage: node flows.cjs PAGE_URL EDGE_URL SCREENSHOT_DIR RESTRICTED_PREFIX
const { chromium } = require("playwright-core");

const [pageUrl, edgeUrl, shots, restrictedPrefix] = process.argv.slice(2);
const PROTOCOLS = ["json", "connect", "grpc-web"];

async function run(browser, protocol) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  // What the browser sent and got across origins, preflights included (DevTools' view).
  const exchanges = new Map();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.requestWillBeSent", ({ requestId, request, type }) => {
    if (request.url.startsWith(edgeUrl)) {
      exchanges.set(requestId, { type, method: request.method, url: request.url, request: request.headers });
    }
  });
  cdp.on("Network.responseReceived", ({ requestId, response }) => {
    const exchange = exchanges.get(requestId);
    if (exchange) {
      exchange.status = response.status;
      exchange.response = response.headers;
    }
  });

  const flows = {};
  // Runs one action of the page and waits for its report; a screenshot per flow.
  async function act(flow, click) {
    await page.$eval("#status", (s) => { s.textContent = ""; s.dataset.kind = ""; s.dataset.code = ""; });
    await click();
    await page.waitForFunction(() => document.querySelector("#status").dataset.kind !== "", null, { timeout: 15000 });
    const report = await page.$eval("#status", (s) => ({ kind: s.dataset.kind, code: s.dataset.code, text: s.textContent }));
    const timing = /done in (\d+) ms/.exec(report.text);
    flows[flow] = { ...report, ms: timing ? Number(timing[1]) : null };
    await page.screenshot({ path: `${shots}/${protocol}-${flow}.png` });
    return report;
  }
  async function signIn(name, signup) {
    await page.fill("#name", name);
    return act(signup ? "signup" : `signin-${name.split("-")[0]}`, () => page.click(signup ? "#signup" : "#signin"));
  }
  // Pages forward through the list (items come oldest first) until `title` shows, and opens it.
  async function open(flow, title) {
    for (let pages = 0; pages < 20; pages++) {
      const button = page.locator("#items button.item", { hasText: title });
      if (await button.count()) {
        return act(flow, () => button.first().click());
      }
      await act("next-page", () => page.click("#next"));
    }
    throw new Error(`no item ${title}`);
  }

  await page.goto(`${pageUrl}/?protocol=${protocol}&edge=${encodeURIComponent(edgeUrl)}`);
  await page.waitForFunction(() => document.querySelectorAll("#items li").length > 0, null, { timeout: 15000 });
  flows.list = { kind: "ok", items: await page.locator("#items li").count() };
  await page.screenshot({ path: `${shots}/${protocol}-list.png` });

  // Signed out: buying is refused with 401, and the page says to sign in.
  await open("open", `${protocol} item 1`);
  await act("buy-signed-out", () => page.click("#buy"));
  // A new account buys the item.
  await signIn(`shopper-${protocol}-${Date.now()}`, true);
  await act("buy", () => page.click("#buy"));
  flows.after_buy = { state: await page.textContent("#detail-state") };
  // A restricted account is refused with 403.
  await signIn(`${restrictedPrefix}-${protocol}`, false);
  await open("open-2", `${protocol} item 2`);
  await act("buy-restricted", () => page.click("#buy"));
  // Too many purchases: the third within the minute is refused with 429 (the test's limit).
  await signIn(`eager-${protocol}`, false);
  for (const n of [2, 3, 4]) {
    await open(`open-${n}`, `${protocol} item ${n}`);
    await act(`buy-${n}`, () => page.click("#buy"));
  }
  await context.close();
  return { flows, errors, exchanges: [...exchanges.values()] };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    // This machine's network is closed: no background connections, no QUIC, no sandbox as root.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const results = {};
    for (const protocol of PROTOCOLS) {
      results[protocol] = await run(browser, protocol);
    }
    console.log(JSON.stringify(results));
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
