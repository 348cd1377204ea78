// Loads the API docs page in headless Chromium (Debian's, driven by playwright-core) and prints
// what a reader sees: the title, every operation listed, and any script error. Usage:
//   node docs-page.cjs PAGE_URL SCREENSHOT_PNG
const { chromium } = require("playwright-core");

(async () => {
  const [pageUrl, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    // This machine's network is closed: no background connections, no QUIC, no sandbox as root.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto(pageUrl);
    await page.waitForSelector(".opblock-summary", { timeout: 20000 });
    const operations = await page.$$eval(".opblock-summary", (summaries) =>
      summaries.map((summary) => {
        const method = summary.querySelector(".opblock-summary-method")?.textContent ?? "";
        const path = summary.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "";
        return `${method.toUpperCase()} ${path}`;
      }));
    const title = (await page.textContent(".info .title")) ?? "";
    await page.screenshot({ path: screenshot });
    console.log(JSON.stringify({ title, operations, errors }));
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
