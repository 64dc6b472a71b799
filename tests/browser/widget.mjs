// Drives the chat widget on the local runner's site page (`/site`: the one script tag, a strict
// Content Security Policy) in headless Chromium, desktop and phone, through a whole conversation with
// the widget only; the sandbox agent answers through the sandbox MSC, as MSC would.
// Usage: node widget.mjs <base URL> [screenshot prefix]. On failure it saves widget-failure.png.
import { chromium, devices } from "playwright-core";

const base = process.argv[2];
const screenshots = process.argv[3];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking"],
});
let passed = 0;
let page;

const run = async (name, options, steps) => {
  const context = await browser.newContext(options);
  page = await context.newPage();
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  await page.goto(base + "/site");
  await steps();
  if (violations.length) throw new Error(`${name}: CSP violations: ${violations.join("; ")}`);
  const elsewhere = requests.filter((url) => !url.startsWith(base) && !url.startsWith(base.replace(/^http/, "ws")));
  if (elsewhere.length) throw new Error(`${name}: requests outside the service: ${elsewhere.join(", ")}`);
  await context.close();
};
const step = async (name, body) => {
  await body();
  passed += 1;
  console.log(`ok - ${name}`);
};
const shows = (kind, text) =>
  page.locator(`[data-handover-widget] .msg.${kind}`, { hasText: text }).first().waitFor({ timeout: 10_000 });
const say = async (text) => {
  await page.locator("[data-handover-widget] input").fill(text);
  await page.locator("[data-handover-widget] input").press("Enter");
};
const session = () =>
  page.evaluate(() => JSON.parse(localStorage.getItem("handover:" + location.origin) || "{}").sessionId);
const agentSays = async (text) => {
  const response = await page.request.post(base + "/sandbox/msc/agent/reply", { data: { sessionId: await session(), text } });
  if (!response.ok()) throw new Error(`sandbox agent reply: ${response.status()}`);
};

try {
  await run("desktop", { viewport: { width: 1280, height: 800 } }, async () => {
    await step("desktop: the launcher opens the panel, and the bot answers", async () => {
      await page.locator("[data-handover-widget] .launcher").click();
      await say("hello");
      await shows("bot", 'You said "hello"');
    });
    await step("desktop: the intake and the handover, told as they happen", async () => {
      await say("I want an agent");
      await shows("bot", "What is your name?");
      await say("Jane Doe");
      await shows("bot", "e-mail address");
      await say("jane@example.com");
      await shows("bot", "A colleague will take over this chat.");
    });
    await step("desktop: the agent's reply arrives without a poll", async () => {
      await agentSays("Hello Jane, I am looking at your invoice.");
      await shows("agent", "Hello Jane, I am looking at your invoice.");
      await shows("notice", "You are now chatting with a colleague.");
      if (screenshots) await page.screenshot({ path: `${screenshots}-desktop.png` });
    });
    await step("desktop: after a reload the history is there and the next reply arrives live", async () => {
      await page.reload();
      await page.locator("[data-handover-widget] .launcher").click();
      await shows("agent", "Hello Jane, I am looking at your invoice.");
      await agentSays("It is corrected now.");
      await shows("agent", "It is corrected now.");
      const count = await page.locator("[data-handover-widget] .msg.agent", { hasText: "looking at your invoice" }).count();
      if (count !== 1) throw new Error(`the first reply is shown ${count} times`);
    });
    await step("desktop: the agent closes, and the bot answers again", async () => {
      const response = await page.request.post(base + "/sandbox/msc/agent/archive", { data: { sessionId: await session() } });
      if (!response.ok()) throw new Error(`sandbox archive: ${response.status()}`);
      await shows("notice", "closed the conversation");
      await say("hello again");
      await shows("bot", 'You said "hello again"');
    });
    await step("desktop: Escape closes the panel and gives the focus back to the launcher", async () => {
      await page.keyboard.press("Escape");
      await page.locator("[data-handover-widget] .launcher").waitFor();
      const focused = await page.evaluate(() => document.querySelector("[data-handover-widget]").shadowRoot.activeElement?.className);
      if (focused !== "launcher") throw new Error(`focus on ${focused}`);
    });
  });

  await run("phone", { ...devices["Pixel 7"] }, async () => {
    await step("phone: keyboard only, the panel fills the screen, and the bot answers", async () => {
      await page.keyboard.press("Tab");
      await page.keyboard.press("Tab");
      await page.keyboard.press("Enter");
      await page.keyboard.type("hello");
      await page.keyboard.press("Enter");
      await shows("bot", 'You said "hello"');
      const box = await page.locator("[data-handover-widget] .panel").boundingBox();
      const viewport = page.viewportSize();
      if (!box || box.width < viewport.width - 1) throw new Error(`the panel is ${box && box.width} px wide on a ${viewport.width} px screen`);
      if (screenshots) await page.screenshot({ path: `${screenshots}-phone.png` });
    });
  });
  console.log(`widget: ${passed} passed, 0 failed`);
} catch (error) {
  console.error(`not ok - after ${passed} steps: ${error.message}`);
  if (page) await page.screenshot({ path: new URL("widget-failure.png", import.meta.url).pathname }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
