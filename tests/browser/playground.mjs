// Drives the local runner's playground page in headless Chromium through a whole handover, and asserts
// what each pane shows. Usage: node playground.mjs <base URL> [screenshot to write mid-conversation]
// On failure it saves a screenshot next to this file (playground-failure.png) and exits 1.
import { chromium } from "playwright-core";

const base = process.argv[2];
const screenshot = process.argv[3];
const waitingBase = process.argv[4];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const steps = [];
const step = async (name, run) => {
  await run();
  steps.push(name);
  console.log(`ok - ${name}`);
};
// The end user is the chat widget on the site page in the playground's frame.
const site = page.frameLocator("#site");
const userSays = async (text) => {
  await site.locator("[data-handover-widget] input[type=text]").fill(text);
  await site.locator("[data-handover-widget] input[type=text]").press("Enter");
};
const shows = (pane, text) =>
  (pane === "user-log" ? site.locator("[data-handover-widget] .msg", { hasText: text }) : page.locator(`#${pane} .msg`, { hasText: text }))
    .first()
    .waitFor({ timeout: 10_000 });

try {
  await page.goto(base);
  await step("the page loads with its three panes", async () => {
    for (const pane of ["end-user", "agent", "session"]) await page.locator(`#${pane}`).waitFor();
    await site.locator("[data-handover-widget] .launcher").click();
  });
  await step("the bot answers hello", async () => {
    await userSays("hello");
    await shows("user-log", 'You said "hello"');
  });
  await step("the bot's dialog options are buttons; Yes asks for a person and starts the intake", async () => {
    await userSays("help");
    await shows("user-log", "Would you like to talk to a colleague?");
    await site.getByRole("button", { name: "Yes" }).click();
    await shows("user-log", "Yes");
    await shows("user-log", "Let me connect you to a colleague.");
    await shows("user-log", "What is your name?");
  });
  await step("the intake is answered and the handover made", async () => {
    await userSays("Jane Doe");
    await shows("user-log", "e-mail address");
    await userSays("jane@example.com");
    await shows("user-log", "A colleague will take over this chat.");
    await page.locator("#session-state", { hasText: "handed_over" }).waitFor({ timeout: 10_000 });
    await page.locator("#session-handled-by", { hasText: "agent" }).waitFor();
  });
  await step("the agent sees the handover message with the conversation and the intake", async () => {
    await shows("agent-log", "Chatbot handover: support");
    await shows("agent-log", "Customer: I want an agent");
    await shows("agent-log", "email: jane@example.com");
  });
  await step("the end user's next message reaches the agent", async () => {
    await userSays("hi, about my invoice");
    await shows("agent-log", "hi, about my invoice");
  });
  await step("a burst of ten reaches the agent at MSC's pace, each held at once and marked delivered", async () => {
    await page.locator("#burst:not([disabled])").click();
    await page.locator("#burst-note", { hasText: "10 of 10 held at once" }).waitFor({ timeout: 10_000 });
    // Ten turns at once: held in whatever order they came, so wait for all ten, not the tenth.
    const burst = page.locator("#agent-log .msg.user", { hasText: "Burst message" });
    for (let i = 0; i < 100 && (await burst.count()) < 10; i++) await page.waitForTimeout(100);
    const arrived = await burst.allTextContents();
    const times = arrived.map((text) => {
      const [h, m, sec] = text.match(/arrived (\d\d:\d\d:\d\d\.\d+)/)[1].split(":");
      return (Number(h) * 60 + Number(m)) * 60 + Number(sec);
    }).sort((a, b) => a - b);
    if (times.length !== 10) throw new Error(`the agent got ${times.length} of the burst`);
    // 3 a second with a margin: any four are more than a second apart.
    for (let i = 3; i < times.length; i++) {
      if (times[i] - times[i - 3] < 1) throw new Error(`four within a second: ${times.slice(i - 3, i + 1)}`);
    }
    // The widget's own message before the burst is marked delivered (✓✓).
    await site.locator("[data-handover-widget] .msg.user", { hasText: "hi, about my invoice" })
      .locator(".mark[data-mark=delivered]").waitFor({ timeout: 10_000 });
  });
  await step("the agent's reply reaches the end user over the live connection, not by polling", async () => {
    await page.fill("#agent-input", "Hello Jane, I am looking at your invoice.");
    await page.press("#agent-input", "Enter");
    await shows("user-log", "Hello Jane, I am looking at your invoice.");
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  });
  await step("files both ways: the end user's photo in the agent's inbox, the agent's PDF in the widget", async () => {
    const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "base64");
    await site.locator("[data-handover-widget] input[type=file]").setInputFiles({ name: "kettle.png", mimeType: "image/png", buffer: png });
    await page.locator("#agent-log a.attachment", { hasText: "kettle.png" }).waitFor({ timeout: 10_000 });
    await page.setInputFiles("#agent-file", { name: "invoice.pdf", mimeType: "application/pdf", buffer: Buffer.from("%PDF-1.7\n%%EOF\n") });
    await page.fill("#agent-input", "Here is your invoice.");
    await page.press("#agent-input", "Enter");
    await shows("user-log", "Here is your invoice.");
    await site.locator("[data-handover-widget] .msg.agent a[download]", { hasText: "invoice.pdf" }).waitFor({ timeout: 10_000 });
  });
  await step("closing as the agent ends the handover, with its reason", async () => {
    await page.click("#agent-close");
    await shows("user-log", "closed the conversation");
    await page.locator("#session-state", { hasText: "ended (agent_closed)" }).waitFor({ timeout: 10_000 });
    await page.locator("#session-history li", { hasText: "ended: agent_closed" }).waitFor();
  });
  await step("the bot answers again", async () => {
    await userSays("hello again");
    await shows("user-log", 'You said "hello again"');
  });
  if (waitingBase) {
    await page.goto(waitingBase);
    await step("nobody came: the end user is asked, goes back to the bot, and the agent's inbox gets a private note", async () => {
      await site.locator("[data-handover-widget] .launcher").click();
      for (const [text, answer] of [["agent", "What is your name?"], ["Jane Doe", "e-mail address"], ["jane@example.com", "take over"]]) {
        await userSays(text);
        await shows("user-log", answer);
      }
      const question = site.locator("[data-handover-widget] .msg", { hasText: "No colleague has taken your conversation yet" });
      await question.first().waitFor({ timeout: 15_000 });
      await page.locator("#session-history li", { hasText: "no_agent_in_time" }).waitFor({ timeout: 10_000 });
      await site.getByRole("button", { name: "Back to the assistant" }).click();
      await shows("user-log", "You are back with the chatbot");
      await page.locator("#session-state", { hasText: "ended (no_agent)" }).waitFor({ timeout: 10_000 });
      await shows("agent-log", "Private note: The customer waited");
    });
  }
  console.log(`browser: ${steps.length} passed, 0 failed`);
} catch (error) {
  console.error(`not ok - after ${steps.length} steps: ${error.message}`);
  await page.screenshot({ path: new URL("playground-failure.png", import.meta.url).pathname, fullPage: true });
  process.exitCode = 1;
} finally {
  await browser.close();
}
