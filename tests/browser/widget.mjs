// Drives the chat widget on the local runner's site page (`/site`: the one script tag, a strict
// Content Security Policy) in headless Chromium, desktop and phone, through a whole conversation with
// the widget only; the sandbox agent answers through the sandbox MSC, as MSC would.
// Usage: node widget.mjs <base URL> [screenshot prefix]. On failure it saves widget-failure.png.
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium, devices } from "playwright-core";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const base = process.argv[2];
const screenshots = process.argv[3];
// A runner whose business hours are closed today and tomorrow, if given.
const closedBase = process.argv[4];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking"],
});
let passed = 0;
let page;

const run = async (name, options, steps, path = "/site") => {
  const { host, base: _, ...contextOptions } = options;
  const context = await browser.newContext(contextOptions);
  page = await context.newPage();
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  const at = options.base || base;
  await page.goto((options.host ? at.replace("127.0.0.1", options.host) : at) + path);
  await steps();
  if (violations.length) throw new Error(`${name}: CSP violations: ${violations.join("; ")}`);
  const origin = new URL(page.url()).origin;
  const elsewhere = requests.filter((url) => !url.startsWith(origin) && !url.startsWith(origin.replace(/^http/, "ws")));
  if (elsewhere.length) throw new Error(`${name}: requests outside the service: ${elsewhere.join(", ")}`);
  await context.close();
};
// axe-core in the page (evaluated through the DevTools protocol, which the page's CSP does not govern):
// no serious or critical violation, inside the widget's shadow root included.
const axe = async (state) => {
  await page.evaluate(axeSource);
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) {
    throw new Error(`axe, ${state}: ${bad.map((v) => `${v.id} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`).join("; ")}`);
  }
};
const step = async (name, body) => {
  await body();
  passed += 1;
  console.log(`ok - ${name}`);
};
const shows = (kind, text) =>
  page.locator(`[data-handover-widget] .msg.${kind}`, { hasText: text }).first().waitFor({ timeout: 10_000 });
const say = async (text) => {
  await page.locator("[data-handover-widget] input[type=text]").fill(text);
  await page.locator("[data-handover-widget] input[type=text]").press("Enter");
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
      await axe("closed");
      await page.locator("[data-handover-widget] .launcher").click();
      await say("hello");
      await shows("bot", 'You said "hello"');
      await axe("open, with the bot");
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
      // MSC says who took the conversation (the sandbox does after the first reply): the name shows.
      await shows("notice", "Sam (sandbox agent) has joined the conversation.");
      await axe("with the agent");
      if (screenshots) await page.screenshot({ path: `${screenshots}-desktop.png` });
    });
    await step("desktop: a photo to the agent (a progress bar, byte for byte), the agent's PDF and picture back", async () => {
      const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "base64");
      await page.locator("[data-handover-widget] .attach").waitFor();
      const picker = page.locator("[data-handover-widget] input[type=file]");
      // What the widget refuses before a byte is sent, and says why.
      await picker.setInputFiles({ name: "notes.zip", mimeType: "application/zip", buffer: Buffer.from("PK") });
      await page.locator("[data-handover-widget] .status", { hasText: "cannot be sent" }).waitFor({ timeout: 10_000 });
      // The upload held a moment, so that its progress bar can be seen.
      await page.route("**/v1/local-files/**", async (route) => {
        if (route.request().method() === "PUT") await new Promise((resolve) => setTimeout(resolve, 700));
        await route.continue();
      });
      await picker.setInputFiles({ name: "kettle.png", mimeType: "image/png", buffer: png });
      await page.locator("[data-handover-widget] .status progress[aria-label='Sending kettle.png']").waitFor({ timeout: 10_000 });
      await shows("user", "kettle.png");
      await page.unroute("**/v1/local-files/**");
      const id = await session();
      let received;
      for (let i = 0; i < 50 && !received; i++) {
        const inbox = await (await page.request.get(base + "/sandbox/msc/api/messages")).json();
        received = inbox.messages.filter((m) => m.ConversationExternalIdentifier === id).find((m) => (m.Attachments || []).length);
        if (!received) await page.waitForTimeout(200);
      }
      if (!received || received.Attachments[0].FileName !== "kettle.png") throw new Error(`the agent did not get the photo: ${JSON.stringify(received)}`);
      const bytes = Buffer.from(await (await page.request.get(base + received.Attachments[0].Url)).body());
      if (!bytes.equals(png)) throw new Error(`the agent's copy differs: ${bytes.length} bytes`);

      const pdf = Buffer.from("%PDF-1.7\n%\u00e2\u00e3\u00cf\u00d3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n", "latin1");
      const reply = await page.request.post(base + "/sandbox/msc/agent/reply", { data: { sessionId: id, text: "Your invoice, and the part we replace.",
        files: [{ name: "invoice.pdf", base64: pdf.toString("base64") }, { name: "part.png", base64: png.toString("base64") }] } });
      if (!reply.ok()) throw new Error(`sandbox agent reply: ${reply.status()}`);
      await shows("agent", "Your invoice, and the part we replace.");
      const link = page.locator("[data-handover-widget] .msg.agent a[download]", { hasText: "invoice.pdf" });
      await link.waitFor({ timeout: 10_000 });
      const href = await link.getAttribute("href");
      const fetched = await page.evaluate(async (url) => {
        const response = await fetch(url);
        return { disposition: response.headers.get("content-disposition"), bytes: Array.from(new Uint8Array(await response.arrayBuffer())) };
      }, href);
      if (!Buffer.from(fetched.bytes).equals(pdf)) throw new Error("the end user's PDF differs from the agent's");
      if (!fetched.disposition.startsWith("attachment;")) throw new Error(`the PDF is served ${fetched.disposition}`);
      const thumb = page.locator("[data-handover-widget] .msg.agent img.thumb[alt='part.png']");
      await thumb.waitFor({ timeout: 10_000 });
      await page.waitForFunction((img) => img.complete && img.naturalWidth === 1, await thumb.elementHandle());
      await axe("with files");
    });
    await step("desktop: after a reload the history is there and the next reply arrives live", async () => {
      await page.reload();
      await page.locator("[data-handover-widget] .launcher").click();
      await shows("agent", "Hello Jane, I am looking at your invoice.");
      await agentSays("It is corrected now.");
      await shows("agent", "It is corrected now.");
      const count = await page.locator("[data-handover-widget] .msg.agent", { hasText: "looking at your invoice" }).count();
      if (count !== 1) throw new Error(`the first reply is shown ${count} times`);
      await axe("after a reload");
    });
    await step("desktop: a second tab shows the same conversation, and a reply reaches both", async () => {
      const first = page;
      const second = await page.context().newPage();
      await second.goto(page.url());
      await second.locator("[data-handover-widget] .launcher").click();
      await second.locator("[data-handover-widget] .msg.agent", { hasText: "It is corrected now." }).first().waitFor({ timeout: 10_000 });
      await agentSays("Both of your tabs see this.");
      for (const tab of [first, second]) {
        await tab.locator("[data-handover-widget] .msg.agent", { hasText: "Both of your tabs see this." }).first().waitFor({ timeout: 10_000 });
      }
      await second.close();
    });
    await step("desktop: closed, the widget counts what arrived; opened, the count is gone", async () => {
      await page.keyboard.press("Escape");
      await agentSays("One more thing.");
      const badge = page.locator("[data-handover-widget] .badge", { hasText: "1" });
      await badge.waitFor({ timeout: 10_000 });
      const name = await page.locator("[data-handover-widget] .launcher").getAttribute("aria-label");
      if (!name.includes("1 unread")) throw new Error(`the launcher is named "${name}"`);
      await page.locator("[data-handover-widget] .launcher").click();
      await badge.waitFor({ state: "hidden" });
    });
    await step("desktop: a message that fails to send says so, and Try again sends it once", async () => {
      let refused = false;
      await page.route("**/v1/messages", (route) => {
        if (refused) return route.continue();
        refused = true;
        return route.abort("connectionrefused");
      });
      await say("are you there?");
      await page.locator("[data-handover-widget] .status", { hasText: "could not be sent" }).waitFor({ timeout: 10_000 });
      await page.locator("[data-handover-widget] .status button", { hasText: "Try again" }).click();
      await page.locator("[data-handover-widget] .status", { hasText: "could not be sent" }).waitFor({ state: "hidden" });
      await page.unroute("**/v1/messages");
      const sent = await page.locator("[data-handover-widget] .msg.user", { hasText: "are you there?" }).count();
      if (sent !== 1) throw new Error(`the message is shown ${sent} times`);
      // Marked sent once held, delivered once MSC has it (a mark, not words the log reads out).
      await page.locator("[data-handover-widget] .msg.user", { hasText: "are you there?" })
        .locator(".mark[data-mark=delivered][aria-label='Delivered']").waitFor({ timeout: 10_000 });
      await axe("with a delivered mark");
      const inbox = await (await page.request.get(base + "/sandbox/msc/api/messages")).json();
      const relayed = inbox.messages.filter((m) => m.Content === "are you there?").length;
      if (relayed !== 1) throw new Error(`the agent got the message ${relayed} times`);
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
      await axe("phone");
    });
    await step("phone: the whole conversation, touch: the handover, the agent live, the end, the bot again", async () => {
      for (const [text, answer] of [["agent", "What is your name?"], ["Jane Doe", "e-mail address"], ["jane@example.com", "take over"]]) {
        await say(text);
        await shows("bot", answer);
      }
      await agentSays("Hello from the agent, on your phone.");
      await shows("agent", "Hello from the agent, on your phone.");
      if (screenshots) await page.screenshot({ path: `${screenshots}-phone.png` });
      await axe("phone, with the agent");
      const response = await page.request.post(base + "/sandbox/msc/agent/archive", { data: { sessionId: await session() } });
      if (!response.ok()) throw new Error(`sandbox archive: ${response.status()}`);
      await shows("notice", "closed the conversation");
      await page.locator("[data-handover-widget] form button[type=submit]").tap();
      await say("hello again");
      await shows("bot", 'You said "hello again"');
    });
  });

  await run("keyboard only", { viewport: { width: 1280, height: 800 } }, async () => {
    await step("keyboard only: Tab to the launcher, the whole handover typed, the agent's reply, Escape", async () => {
      // The page's one link, then the launcher.
      await page.keyboard.press("Tab");
      await page.keyboard.press("Tab");
      await page.keyboard.press("Enter");
      for (const [text, answer] of [["help", "talk to a colleague"]]) {
        await page.keyboard.type(text);
        await page.keyboard.press("Enter");
        await shows("bot", answer);
      }
      // Shift+Tab from the input reaches the answer buttons (focus stays in the panel): pick Yes.
      const focusedText = () => page.evaluate(() => document.querySelector("[data-handover-widget]").shadowRoot.activeElement?.textContent);
      for (let i = 0; i < 8 && (await focusedText()) !== "Yes"; i++) await page.keyboard.press("Shift+Tab");
      if ((await focusedText()) !== "Yes") throw new Error("the Yes button was not reached by keyboard");
      await page.keyboard.press("Enter");
      await shows("bot", "What is your name?");
      for (const [text, answer] of [["Jane Doe", "e-mail address"], ["jane@example.com", "take over"]]) {
        await page.keyboard.type(text);
        await page.keyboard.press("Enter");
        await shows("bot", answer);
      }
      await agentSays("Hello from the keyboard test.");
      await shows("agent", "Hello from the keyboard test.");
      // Focus stays in the open panel, whichever way Tab goes.
      for (const key of [...Array(8).fill("Tab"), ...Array(8).fill("Shift+Tab")]) {
        await page.keyboard.press(key);
        const inside = await page.evaluate(() => {
          const root = document.querySelector("[data-handover-widget]").shadowRoot;
          return Boolean(root.activeElement && root.querySelector(".panel").contains(root.activeElement));
        });
        if (!inside) throw new Error(`${key} took the focus out of the open panel`);
      }
      await page.keyboard.press("Escape");
      const focused = await page.evaluate(() => document.querySelector("[data-handover-widget]").shadowRoot.activeElement?.className);
      if (focused !== "launcher") throw new Error(`focus on ${focused}`);
    });
  });

  await run("live connection refused", { viewport: { width: 1280, height: 800 } }, async () => {
    await page.routeWebSocket(/\/v1\/live/, (socket) => socket.close());
    await step("live connection refused: the widget polls, and the agent's reply still arrives", async () => {
      await page.locator("[data-handover-widget] .launcher").click();
      for (const [text, answer] of [["agent", "What is your name?"], ["Jane Doe", "e-mail address"], ["jane@example.com", "take over"]]) {
        await say(text);
        await shows("bot", answer);
      }
      await agentSays("Hello, the socket is down but I am here.");
      await page.locator("[data-handover-widget] .msg.agent", { hasText: "the socket is down" }).first().waitFor({ timeout: 30_000 });
      await axe("polling");
    });
  });

  // On localhost: a named host, so the widget sends its page (the service takes no IP address), and
  // presence is asked for this page rather than answered from the cache the other pages filled.
  await run("agents offline", { viewport: { width: 1280, height: 800 }, host: "localhost" }, async () => {
    await step("agents offline: the end user is told, and the intake goes on", async () => {
      await page.request.post(base + "/sandbox/settings", { data: { agentsOnline: false } });
      try {
        await page.locator("[data-handover-widget] .launcher").click();
        await page.locator("[data-handover-widget] .availability", { hasText: "not available right now" }).waitFor({ timeout: 10_000 });
        await say("agent");
        await shows("bot", "offline");
        await axe("agents offline");
      } finally {
        await page.request.post(base + "/sandbox/settings", { data: { agentsOnline: true } });
      }
    });
  }, "/site?agents=offline");

  await run("hostile host page", { viewport: { width: 1280, height: 800 }, bypassCSP: true }, async () => {
    // Every element of the page hidden but html and body (which hold the widget: hidden, nothing in
    // them could show), and a huge font and colour on everything.
    await step("the host page's CSS (its elements hidden, a huge font) does not reach the widget", async () => {
      await page.addStyleTag({
        content: "body * { display: none !important; } * { font-size: 40px !important; color: red !important; line-height: 3 !important; }",
      });
      const launcher = page.locator("[data-handover-widget] .launcher");
      await launcher.click();
      await say("hello");
      await shows("bot", 'You said "hello"');
      const size = await page.locator("[data-handover-widget] .msg.bot").first().evaluate((node) => getComputedStyle(node).fontSize);
      if (size !== "15px") throw new Error(`the widget's text is ${size}`);
    });
  });
  // A site that vouches for its customer (the runner's IDENTITY_SECRET) and speaks Dutch: a page of
  // its own, served here as the site would, with the widget's one tag carrying the signed identity.
  const identitySecret = process.env.WIDGET_IDENTITY_SECRET;
  if (identitySecret) {
    const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "customer-42", name: "Jane Doe", exp: Math.floor(Date.now() / 1000) + 600 })}`;
    const identity = `${unsigned}.${createHmac("sha256", identitySecret).update(unsigned).digest("base64url")}`;
    await run("verified identity, in Dutch", { viewport: { width: 1280, height: 800 } }, async () => {
      await page.route("**/site-nl", (route) =>
        route.fulfill({
          contentType: "text/html",
          headers: { "content-security-policy": "default-src 'none'; script-src 'self'; connect-src 'self' ws:" },
          body: `<!doctype html><html lang="nl"><head><meta charset="utf-8"><title>Winkel</title></head><body><main><h1>Winkel</h1></main>`
            + `<script src="/widget.js" data-api="" data-lang="nl" data-identity-token="${identity}" async></script></body></html>`,
        }));
      await page.goto(base + "/site-nl");
      await step("in Dutch, with the customer the site signed: the agent's handover names the verified customer", async () => {
        const launcher = page.locator("[data-handover-widget] .launcher", { hasText: "Chat met ons" });
        await launcher.click();
        for (const [text, answer] of [["agent", "What is your name?"], ["Jane Doe", "e-mail address"], ["jane@example.com", "take over"]]) {
          await say(text);
          await shows("bot", answer);
        }
        const inbox = await (await page.request.get(base + "/sandbox/msc/api/messages")).json();
        const id = await session();
        const handover = inbox.messages.filter((m) => m.ConversationExternalIdentifier === id).find((m) => m.Subject);
        if (!handover || !handover.Content.includes("Verified by the site:") || !handover.Content.includes("customer-42")) {
          throw new Error(`the handover does not name the verified customer: ${handover && handover.Content}`);
        }
        await page.locator("[data-handover-widget] input[placeholder='Schrijf een bericht']").waitFor();
        await axe("in Dutch");
      });
    });
  }

  if (closedBase) {
    await run("closed", { viewport: { width: 1280, height: 800 }, base: closedBase }, async () => {
      await step("outside business hours: closed, and when it opens again", async () => {
        await page.locator("[data-handover-widget] .launcher").click();
        const notice = page.locator("[data-handover-widget] .availability", { hasText: "We are closed." });
        await notice.waitFor({ timeout: 10_000 });
        const text = await notice.textContent();
        if (!/9:00|09:00/.test(text)) throw new Error(`no opening time in "${text}"`);
        await axe("closed");
      });
    });
    // That runner asks after 2 s without an agent (AGENT_WAIT_SECS=2).
    const handOver = async () => {
      await page.locator("[data-handover-widget] .launcher").click();
      for (const [text, answer] of [["agent", "What is your name?"], ["Jane Doe", "e-mail address"], ["jane@example.com", "take over"]]) {
        await say(text);
        await shows("bot", answer);
      }
    };
    const question = () => page.locator("[data-handover-widget] .msg.notice", { hasText: "No colleague has taken your conversation yet" });
    await run("nobody came: back to the bot", { viewport: { width: 1280, height: 800 }, base: closedBase }, async () => {
      await step("nobody came: the end user is asked, told when agents are back, and goes back to the bot", async () => {
        await handOver();
        await question().first().waitFor({ timeout: 15_000 });
        const text = await question().first().textContent();
        if (!/closed now and open again .*(9:00|09:00)/.test(text)) throw new Error(`no opening time in "${text}"`);
        await axe("asked to keep waiting or go back");
        const back = page.locator("[data-handover-widget] .options button", { hasText: "Back to the assistant" });
        await back.focus();
        await page.keyboard.press("Enter");
        await shows("notice", "You are back with the chatbot");
        await say("hello again");
        await shows("bot", 'You said "hello again"');
        const id = await session();
        let inbox;
        let notes = [];
        // The note goes through the runner's outbound queue: a moment after the choice.
        for (let i = 0; i < 50 && notes.length === 0; i++) {
          if (i) await page.waitForTimeout(100);
          inbox = await (await page.request.get(closedBase + "/sandbox/msc/api/messages")).json();
          notes = inbox.messages.filter((m) => m.ConversationExternalIdentifier === id && m.IsPrivate);
        }
        if (notes.length !== 1 || !notes[0].Content.includes("went back to the chatbot")) {
          throw new Error(`the agents' side was not told once: ${JSON.stringify(notes)}`);
        }
        const relayed = inbox.messages.filter((m) => m.ConversationExternalIdentifier === id && /Back to the|hello again/.test(m.Content));
        if (relayed.length) throw new Error(`the choice or the next message reached the agent: ${JSON.stringify(relayed)}`);
      });
    });
    await run("nobody came: keep waiting", { viewport: { width: 1280, height: 800 }, base: closedBase }, async () => {
      await step("nobody came: keep waiting, asked again after another wait, and the agent's reply still arrives", async () => {
        await handOver();
        await question().first().waitFor({ timeout: 15_000 });
        await page.locator("[data-handover-widget] .options button", { hasText: "Keep waiting" }).click();
        await shows("notice", "We keep your place");
        await question().nth(1).waitFor({ timeout: 15_000 });
        const response = await page.request.post(closedBase + "/sandbox/msc/agent/reply", { data: { sessionId: await session(), text: "Sorry for the wait, Jane." } });
        if (!response.ok()) throw new Error(`sandbox agent reply: ${response.status()}`);
        await shows("agent", "Sorry for the wait, Jane.");
        await axe("the agent after a wait");
      });
    });
  }
  console.log(`widget: ${passed} passed, 0 failed`);
} catch (error) {
  console.error(`not ok - after ${passed} steps: ${error.message}`);
  if (page) await page.screenshot({ path: new URL("widget-failure.png", import.meta.url).pathname }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
