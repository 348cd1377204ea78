// A browser's WebSocket to a stream at the edge, in headless Chromium: each case opens one
// socket, sends its messages as text frames, ends its side with an empty text frame (a browser
// drops what arrives after its own close()), and reports what came back and how the socket
// closed. Usage: node websocket.cjs EDGE_WS_URL CASES_JSON
// CASES_JSON: [{"path": "/v1/sinks:collect", "send": [{...}, ...]}, ...]
const { chromium } = require("playwright-core");

(async () => {
  const [edge, casesJson] = process.argv.slice(2);
  const cases = JSON.parse(casesJson);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    const results = [];
    for (const { path, send } of cases) {
      results.push(await page.evaluate(({ url, send }) => new Promise((resolve) => {
        const socket = new WebSocket(url);
        const received = [];
        const timer = setTimeout(() => resolve({ received, timeout: true }), 10000);
        socket.onopen = () => {
          for (const message of send) socket.send(JSON.stringify(message));
          socket.send("");
        };
        socket.onmessage = (event) => received.push(JSON.parse(event.data));
        socket.onclose = (event) => {
          clearTimeout(timer);
          resolve({ received, code: event.code, reason: event.reason });
        };
      }), { url: edge + path, send }));
    }
    console.log(JSON.stringify({ results, errors }));
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
