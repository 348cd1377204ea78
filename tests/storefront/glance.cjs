// Opens the storefront as `make run` serves it (its page calls the edge on localhost:8080) in
// headless Chromium, once per protocol tab, and prints what shows: the items listed and the
// page's report, and any script error. Usage: node glance.cjs PAGE_URL
const { chromium } = require("playwright-core");

(async () => {
  const [pageUrl] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const seen = {};
    for (const protocol of ["json", "connect", "grpc-web"]) {
      const page = await browser.newPage();
      const errors = [];
      page.on("pageerror", (error) => errors.push(String(error)));
      await page.goto(`${pageUrl}/?protocol=${protocol}`);
      await page.waitForFunction(() => document.querySelector("#status").dataset.kind, null, { timeout: 15000 });
      seen[protocol] = {
        items: await page.locator("#items li").count(),
        report: await page.textContent("#status"),
        errors,
      };
      await page.close();
    }
    console.log(JSON.stringify(seen));
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
