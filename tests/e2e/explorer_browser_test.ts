/**
 * The EDR explorer in a real browser: headless Chromium (the system's `chromium`) driven by
 * playwright-core, against `deno task serve` after real requests. One browser for the whole file.
 * With HI_UPDATE_SCREENSHOT=1 the request page is saved to docs/explorer-request.png (the README shows it).
 */
import assert from "node:assert/strict";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { hashClientKey } from "../../lib/authority/mod.ts";
import { sendLocalAndCloud } from "./explorer_requests.ts";
import { policyWith, REPO_ROOT, startServeHealthy } from "./serve_harness.ts";

const CHROMIUM = "/usr/bin/chromium";
const LAUNCH_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const TIMEOUT_MS = 15_000;

const chromiumPresent = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!chromiumPresent && !Deno.env.get("CI")) {
  console.warn(`explorer browser tests skipped: ${CHROMIUM} is absent (apt-get install -y chromium)`);
}

/** A page that records every request it makes and every console error it logs. */
interface WatchedPage {
  page: Page;
  requests: string[];
  errors: string[];
}

async function watchedPage(context: BrowserContext): Promise<WatchedPage> {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  const watched: WatchedPage = { page, requests: [], errors: [] };
  page.on("request", (request) => watched.requests.push(request.url()));
  page.on("console", (message) => {
    if (message.type() === "error") watched.errors.push(message.text());
  });
  page.on("pageerror", (error) => watched.errors.push(`uncaught: ${error.message}`));
  return watched;
}

/** The request ids the table shows, top to bottom. */
async function tableIds(page: Page): Promise<string[]> {
  return await page.locator("#requests tbody tr").evaluateAll((rows) =>
    rows.map((row) => row.getAttribute("data-request-id") ?? "")
  );
}

/** Waits until the table shows exactly `ids` (the page re-renders after each filter). */
async function expectTable(page: Page, ids: string[]): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  let shown: string[] = [];
  while (Date.now() < deadline) {
    shown = await tableIds(page).catch(() => []);
    if (JSON.stringify(shown) === JSON.stringify(ids)) return;
    await page.waitForTimeout(50);
  }
  assert.deepEqual(shown, ids);
}

/** Opens a view of the page by its hash and waits until that view has rendered. */
async function open(page: Page, base: string, hash: string): Promise<void> {
  await page.goto(`${base}/ui${hash}`);
  await page.waitForSelector(`main > .view[data-route="${hash}"]`);
}

Deno.test({
  name: "explorer in headless Chromium: table, filters, request page, replay, day view, client keys",
  ignore: !chromiumPresent && !Deno.env.get("CI"),
  async fn(t) {
    const profile = await Deno.makeTempDir({ prefix: "hi-chromium-" });
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: LAUNCH_ARGS,
      viewport: { width: 1280, height: 900 },
    });
    try {
      await t.step("without client keys", async (t) => {
        const s = await startServeHealthy();
        try {
          const ids = await sendLocalAndCloud(s);
          const { page, requests, errors } = await watchedPage(context);
          const origin = new URL(s.url).origin;

          await t.step("the table lists the requests, newest first", async () => {
            await open(page, s.url, "#/");
            await expectTable(page, [ids.cloud, ids.local]);
          });

          await t.step("a provider filter and a status filter narrow the table", async () => {
            await page.selectOption("#filter-provider", "local");
            await expectTable(page, [ids.local]);
            await page.selectOption("#filter-provider", "");
            await expectTable(page, [ids.cloud, ids.local]);
            await page.selectOption("#filter-provider", "anthropic");
            await expectTable(page, [ids.cloud]);
            await page.selectOption("#filter-provider", "");
            await page.selectOption("#filter-status", "ok");
            await expectTable(page, [ids.cloud, ids.local]);
          });

          await t.step("the request id search finds one request", async () => {
            await open(page, s.url, "#/");
            await page.fill("#search-request-id", ids.local.slice(0, 14));
            await page.click(".filters button[type=submit]");
            await expectTable(page, [ids.local]);
          });

          await t.step("opening a request shows its provider, reasons, attempts and chain", async () => {
            await open(page, s.url, "#/");
            await expectTable(page, [ids.cloud, ids.local]);
            await page.click(`a[href="#/request/${ids.cloud}"]`);
            await page.waitForSelector(`main > .view[data-route="#/request/${ids.cloud}"]`);
            assert.equal(await page.textContent("#record-id"), ids.cloud);
            assert.equal(await page.textContent("#record-provider"), "anthropic");
            const record = await s.record(ids.cloud);
            assert.equal(await page.textContent("#record-reasons"), record.decision_factors.join(", "));
            const attempts = await page.locator("#attempts tbody tr").allTextContents();
            assert.equal(attempts.length, 2);
            assert.match(attempts[0], /local.*fallback/);
            assert.match(attempts[1], /anthropic.*ok/);
            assert.match(await page.locator("#candidates").textContent() ?? "", /taken: it answered/);
            assert.equal(await page.textContent("#record-sequence"), String(record.sequence));
            assert.equal(await page.textContent("#record-policy-version"), record.policy_version);
            assert.match(
              await page.textContent("#chain-link") ?? "",
              new RegExp(`${ids.local}.*is this record's`),
            );
          });

          await t.step("the replay button shows MATCH for a local record", async () => {
            await open(page, s.url, `#/request/${ids.local}`);
            assert.equal(await page.textContent("#record-provider"), "local");
            await page.click("#replay");
            await page.waitForSelector("#replay-status");
            assert.equal(await page.textContent("#replay-status"), "MATCH");
            if (Deno.env.get("HI_UPDATE_SCREENSHOT") === "1") {
              await page.evaluate("window.scrollTo(0, 0)");
              await page.screenshot({ path: `${REPO_ROOT}docs/explorer-request.png` });
            }
          });

          await t.step("the day view shows an intact chain, counts and charts", async () => {
            const day = (await s.record(ids.local)).timestamp.slice(0, 10);
            await open(page, s.url, "#/days");
            await page.click(`a[href="#/day/${day}"]`);
            await page.waitForSelector(`main > .view[data-route="#/day/${day}"]`);
            assert.match(await page.textContent("#chain-status") ?? "", /intact/);
            assert.equal(await page.locator("#latency-chart rect").count(), 11);
            assert.equal(await page.locator("#provider-chart rect").count(), 2);
          });

          await t.step("a record's text is shown as text, never run as HTML", async () => {
            // A forged record in a past day's folder (no log: the explorer reads its file), with markup
            // where a message goes. The page must show the characters, not make elements of them.
            const forged = structuredClone(await s.record(ids.local));
            const markup = `<img src="/ui/forged.png" id="forged"><script>window.forged = 1</script>`;
            forged.request_id = `req_${"f".repeat(32)}`;
            forged.timestamp = "2020-01-01T00:00:00.000Z";
            forged.failure = { code: "FORGED", type: "provider_error", stage: "execute", message: markup };
            await Deno.mkdir(`${s.artifactsDir}/edr/2020/01/01`, { recursive: true });
            await Deno.writeTextFile(
              `${s.artifactsDir}/edr/2020/01/01/${forged.decision_core_hash}.json`,
              JSON.stringify(forged),
            );
            await open(page, s.url, `#/request/${forged.request_id}`);
            assert.match(await page.locator("main").textContent() ?? "", /<img src="\/ui\/forged\.png"/);
            assert.equal(await page.locator("#forged").count(), 0);
            assert.equal(await page.evaluate("typeof window.forged"), "undefined");
          });

          await t.step("the page reached no host but the router and logged no console error", () => {
            assert.ok(requests.length > 5, `only ${requests.length} requests recorded`);
            const elsewhere = requests.filter((url) => new URL(url).origin !== origin);
            assert.deepEqual(elsewhere, []);
            assert.deepEqual(errors, []);
          });
          await page.close();
        } finally {
          await s.close();
        }
      });

      await t.step("with client keys the page asks for one and then works", async () => {
        const key = `sk-hi-${crypto.randomUUID()}`;
        const s = await startServeHealthy({
          noCloudKeys: true,
          policy: policyWith({ client_keys: [{ id: "team", sha256: hashClientKey(key) }] }),
        });
        try {
          const response = await fetch(`${s.url}/api/records`);
          await response.body?.cancel();
          assert.equal(response.status, 401);
          const local = await s.client.chat.completions
            .create({ model: "auto", messages: [{ role: "user", content: "hi" }] }, {
              headers: { authorization: `Bearer ${key}` },
            })
            .withResponse();
          const id = local.response.headers.get("x-request-id")!;
          const { page, requests, errors } = await watchedPage(context);
          await page.goto(`${s.url}/ui`);
          await page.waitForSelector("#client-key");
          await page.fill("#client-key", key);
          await page.click(".key-form button[type=submit]");
          await expectTable(page, [id]);
          // Kept for the tab's session: another view needs no new prompt.
          await page.click(`a[href="#/request/${id}"]`);
          await page.waitForSelector(`main > .view[data-route="#/request/${id}"]`);
          assert.equal(await page.textContent("#record-provider"), "local");
          const origin = new URL(s.url).origin;
          assert.deepEqual(requests.filter((url) => new URL(url).origin !== origin), []);
          // The only console errors are the browser's own notes of the first, keyless 401 answers.
          assert.deepEqual(errors.filter((text) => !/status of 401/.test(text)), []);
          await page.close();
        } finally {
          await s.close();
        }
      });
    } finally {
      await context.close();
      await Deno.remove(profile, { recursive: true });
    }
  },
});
