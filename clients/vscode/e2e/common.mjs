// What the end-to-end scripts share: waiting for a condition, and the headless browser on a page.
import { createRequire } from "node:module";
import * as path from "node:path";

/** Poll fn (every 100 ms) until it returns something truthy; throw after `timeout` ms. */
export async function until(what, fn, timeout = 20000) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/** Headless chromium (CAO_E2E_CHROMIUM) through playwright-core (CAO_E2E_PLAYWRIGHT): {browser, page}. */
export async function openBrowser(env) {
  const require = createRequire(path.join(env.CAO_E2E_PLAYWRIGHT, "package.json"));
  const { chromium } = require(env.CAO_E2E_PLAYWRIGHT);
  const browser = await chromium.launch({
    executablePath: env.CAO_E2E_CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
  return { browser, page };
}
