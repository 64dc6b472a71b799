// The handover chat widget: one script tag on a site's page,
//   <script src=".../widget.js" data-api="https://<api>" async></script>
// Plain modern JavaScript, no build step and no dependency; it talks to the service only (its public
// routes with a conversation token, and the live connection) and works under a strict Content Security
// Policy (no eval, no inline script or style: its styles are a constructed stylesheet in its shadow root).
// Optional attributes: data-live (the WebSocket URL, deployed the stack's LiveUrl; by default the API's
// origin at /v1/live), data-title, data-lang (en, nl), data-position (right, left), data-channel (MSC's
// channel, for presence), data-identity-token (the customer, signed by the site's backend), data-texts
// (JSON: any of the strings below replaced).
(() => {
  "use strict";
  const script = /** @type {HTMLScriptElement | null} */ (document.currentScript);
  if (!script || script.dataset.api === undefined) return;
  // An empty data-api: the service is the page's own origin.
  const api = (script.dataset.api || location.origin).replace(/\/+$/, "");
  const liveUrl = script.dataset.live || api.replace(/^http/, "ws") + "/v1/live";
  const lang = (script.dataset.lang || document.documentElement.lang || "en").slice(0, 2) === "nl" ? "nl" : "en";

  /** @type {Record<string, Record<string, string>>} */
  const TEXTS = {
    en: {
      title: "Chat with us", close: "Close chat", message: "Message", send: "Send",
      placeholder: "Write a message", typing: "typing…", agent: "Agent", colleague: "You are now chatting with a colleague.",
      ended: "The conversation with our colleague has ended.", retry: "Try again", failed: "The message could not be sent.",
      unread: "unread", you: "You", bot: "Assistant", queued: "Your message is kept until a colleague takes over.",
      offline: "Connection lost; reconnecting…", away: "Our colleagues are not available right now; the assistant can help you.",
      closed: "We are closed. We open again {at}.",
      attach: "Attach a file", uploading: "Sending {name}", fileFailed: "The file could not be sent:", tooBig: "the file is larger than {size}.",
      fileType: "files of this type cannot be sent.", file: "File",
      noAgent: "No colleague has taken your conversation yet. Would you like to keep waiting, or go back to the assistant?",
      noAgentAway: "No colleague has taken your conversation yet: our colleagues were not available when you asked. Would you like to keep waiting, or go back to the assistant?",
      noAgentClosed: "No colleague has taken your conversation yet: we are closed now and open again {at}. Would you like to keep waiting, or go back to the assistant?",
      keepWaiting: "Keep waiting", backToBot: "Back to the assistant", kept: "We keep your place; a colleague will answer here.",
      sent: "Sent", delivered: "Delivered", notDelivered: "Not delivered",
    },
    nl: {
      title: "Chat met ons", close: "Chat sluiten", message: "Bericht", send: "Versturen",
      placeholder: "Schrijf een bericht", typing: "typt…", agent: "Medewerker", colleague: "U chat nu met een collega.",
      ended: "Het gesprek met onze collega is beëindigd.", retry: "Opnieuw proberen", failed: "Het bericht kon niet worden verstuurd.",
      unread: "ongelezen", you: "U", bot: "Assistent", queued: "Uw bericht wordt bewaard tot een collega het overneemt.",
      offline: "Verbinding verbroken; opnieuw verbinden…", away: "Onze collega's zijn nu niet beschikbaar; de assistent helpt u graag.",
      closed: "We zijn gesloten. We zijn weer open {at}.",
      attach: "Bestand toevoegen", uploading: "{name} wordt verstuurd", fileFailed: "Het bestand kon niet worden verstuurd:", tooBig: "het bestand is groter dan {size}.",
      fileType: "bestanden van dit type kunnen niet worden verstuurd.", file: "Bestand",
      noAgent: "Er heeft nog geen collega op uw gesprek gereageerd. Wilt u blijven wachten, of terug naar de assistent?",
      noAgentAway: "Er heeft nog geen collega op uw gesprek gereageerd: onze collega's waren niet beschikbaar toen u het vroeg. Wilt u blijven wachten, of terug naar de assistent?",
      noAgentClosed: "Er heeft nog geen collega op uw gesprek gereageerd: we zijn nu gesloten en weer open {at}. Wilt u blijven wachten, of terug naar de assistent?",
      keepWaiting: "Blijven wachten", backToBot: "Terug naar de assistent", kept: "We houden uw plek vast; een collega antwoordt hier.",
      sent: "Verzonden", delivered: "Afgeleverd", notDelivered: "Niet afgeleverd",
    },
  };
  // Any string can be replaced: data-texts='{"title": "Ask us"}'.
  try { Object.assign(TEXTS[lang], JSON.parse(script.dataset.texts || "{}")); } catch (_) { /* keep the built-in ones */ }
  const t = (/** @type {string} */ key) => TEXTS[lang][key] || TEXTS.en[key];
  const title = script.dataset.title || t("title");

  // The conversation, kept in the page's storage so a reload or a second tab shows the same one.
  const storageKey = "handover:" + api;
  /** @typedef {{name: string, type: string, size: number, url?: string | null}} FileInfo */
  /** @typedef {{kind: string, text: string, who?: string, id?: string, mid?: string, mark?: string, options?: {label: string, send: string, choice?: string}[], links?: {label: string, url: string}[], files?: FileInfo[]}} Item */
  /** @type {{token?: string, expiresAt?: string, sessionId?: string, cursor: number, handledBy: string, items: Item[], files?: {types: string[], maxBytes: number} | null}} */
  let state = { cursor: 0, handledBy: "bot", items: [] };
  try {
    state = Object.assign(state, JSON.parse(localStorage.getItem(storageKey) || "{}"));
  } catch (_) { /* a broken entry starts a new conversation */ }
  const save = () => {
    state.items = state.items.slice(-100);
    try { localStorage.setItem(storageKey, JSON.stringify(state)); } catch (_) { /* storage full or off */ }
  };

  const host = document.createElement("div");
  host.setAttribute("data-handover-widget", "");
  // The host page's styles stop at the shadow root; `all: initial` undoes what inherits into it.
  host.style.cssText = "all: initial; position: fixed; z-index: 2147483000; bottom: 0; display: block !important;"
    + (script.dataset.position === "left" ? "left: 0;" : "right: 0;");
  const root = host.attachShadow({ mode: "open" });
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`
    :host { --handover-accent: #1d4ed8; --handover-text: #111827; --handover-bg: #ffffff; --handover-muted: #4b5563; }
    * { box-sizing: border-box; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
    [hidden] { display: none !important; }
    button { cursor: pointer; min-height: 44px; min-width: 44px; border-radius: 8px; border: 1px solid var(--handover-accent); }
    .launcher { position: fixed; bottom: 20px; right: 20px; background: var(--handover-accent); color: #fff; padding: 0 18px; border-radius: 24px; font-weight: 600; }
    .left .launcher { right: auto; left: 20px; }
    .badge { display: inline-block; margin-left: 8px; background: #fff; color: var(--handover-accent); border-radius: 10px; padding: 0 7px; font-size: 13px; }
    .panel { position: fixed; bottom: 20px; right: 20px; width: 370px; height: min(560px, calc(100vh - 40px)); display: flex; flex-direction: column;
      background: var(--handover-bg); color: var(--handover-text); border: 1px solid #d1d5db; border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.2); }
    .left .panel { right: auto; left: 20px; }
    header { display: flex; align-items: center; justify-content: space-between; padding: 6px 8px 6px 14px; background: var(--handover-accent); color: #fff; border-radius: 12px 12px 0 0; }
    h2 { margin: 0; font-size: 16px; font-weight: 600; }
    header button { background: transparent; color: #fff; border-color: transparent; font-size: 20px; }
    .log { flex: 1; overflow-y: auto; padding: 10px; }
    .msg { margin: 6px 0; padding: 7px 10px; border-radius: 10px; max-width: 85%; white-space: pre-wrap; overflow-wrap: anywhere; }
    .user { background: #dbeafe; margin-left: auto; }
    .bot { background: #f3f4f6; }
    .agent { background: #dcfce7; }
    .notice { color: var(--handover-muted); font-style: italic; text-align: center; max-width: 100%; }
    .who { display: block; font-size: 12px; color: var(--handover-muted); }
    .mark { display: block; text-align: right; font-size: 11px; color: var(--handover-muted); }
    .mark[data-mark=sent]::after { content: "✓"; }
    .mark[data-mark=delivered]::after { content: "✓✓"; }
    .mark[data-mark=notDelivered]::after { content: "!"; color: #b91c1c; }
    .options { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0; }
    .options button, .status button { background: #fff; color: var(--handover-accent); padding: 0 12px; }
    a { color: var(--handover-accent); }
    .typing, .status { padding: 0 12px; color: var(--handover-muted); min-height: 22px; }
    .availability { padding: 4px 12px; margin: 0; }
    .availability:empty { display: none; }
    form { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #e5e7eb; }
    input { flex: 1; min-height: 44px; padding: 0 10px; border: 1px solid #9ca3af; border-radius: 8px; color: var(--handover-text); background: #fff; }
    form button { background: var(--handover-accent); color: #fff; padding: 0 14px; }
    form .attach { background: #fff; color: var(--handover-accent); padding: 0 10px; }
    .thumb { display: block; max-width: 100%; max-height: 180px; margin-top: 4px; border-radius: 6px; }
    .file { display: block; margin-top: 4px; }
    progress { width: 100%; }
    :focus-visible { outline: 3px solid #f59e0b; outline-offset: 1px; }
    @media (max-width: 480px) { .panel { inset: 0; width: auto; height: var(--handover-height, 100%); border-radius: 0; } header { border-radius: 0; } }
  `);
  root.adoptedStyleSheets = [sheet];

  const el = (/** @type {string} */ tag, /** @type {Record<string, string>} */ attrs = {}, text = "") => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  };
  const wrap = el("div", { class: script.dataset.position === "left" ? "left" : "right" });
  const launcher = el("button", { type: "button", class: "launcher", "aria-expanded": "false", "aria-label": title }, title);
  const badge = el("span", { class: "badge", hidden: "" });
  launcher.appendChild(badge);
  const panel = el("div", { class: "panel", role: "dialog", "aria-label": title, hidden: "" });
  const header = el("header");
  const closeButton = el("button", { type: "button", "aria-label": t("close") }, "×");
  header.append(el("h2", {}, title), closeButton);
  // Focusable, so that a keyboard can scroll the conversation.
  const log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": title, tabindex: "0" });
  const typing = el("div", { class: "typing", "aria-live": "polite" });
  const status = el("div", { class: "status", role: "status" });
  const form = el("form");
  const input = /** @type {HTMLInputElement} */ (el("input", { type: "text", "aria-label": t("message"), placeholder: t("placeholder"), autocomplete: "off", maxlength: "2000" }));
  // Files go to a colleague only: the button shows once one has the conversation and files are on.
  const attach = el("button", { type: "button", class: "attach", "aria-label": t("attach"), title: t("attach"), hidden: "" }, "📎");
  const picker = /** @type {HTMLInputElement} */ (el("input", { type: "file", hidden: "", tabindex: "-1", "aria-hidden": "true" }));
  form.append(attach, picker, input, el("button", { type: "submit" }, t("send")));
  panel.append(header, log, typing, status, form);
  wrap.append(launcher, panel);
  root.appendChild(wrap);

  let unread = 0;
  const isOpen = () => !panel.hidden;
  const showUnread = () => {
    badge.hidden = unread === 0;
    badge.textContent = String(unread);
    // The visible text first, as the accessible name must contain it.
    launcher.setAttribute("aria-label", title + (unread ? `, ${unread} ${t("unread")}` : ""));
  };

  // A message for a colleague is marked sent once it is held, delivered once MSC has it. The mark is
  // an attribute, not text, so the log (a live region) does not read each one out.
  const rows = new WeakMap();
  const setMark = (/** @type {Item} */ item, /** @type {string} */ mark) => {
    item.mark = mark;
    const row = rows.get(item);
    if (!row) return;
    let span = row.querySelector(".mark");
    if (!span) row.appendChild(span = el("span", { class: "mark", role: "img" }));
    span.setAttribute("data-mark", mark);
    span.setAttribute("aria-label", t(mark));
  };
  /** @type {string[]} */
  const deliveredEarly = [];

  /** Adds an item to the log (and, unless `restoring`, to the stored conversation). */
  const render = (/** @type {Item} */ item, restoring = false) => {
    if (item.id && !restoring && state.items.some((i) => i.id === item.id)) return;
    if (!restoring) { state.items.push(item); save(); }
    const row = el("div", { class: "msg " + item.kind });
    if (item.kind === "agent" || item.kind === "bot") {
      row.appendChild(el("span", { class: "who" }, item.kind === "bot" ? t("bot") : item.who || t("agent")));
    }
    row.appendChild(document.createTextNode(item.text));
    // Images as thumbnails, anything else as a download; the links are short-lived, made for this page.
    for (const file of item.files || []) {
      if (!file.url || !/^https?:\/\//i.test(file.url)) { row.appendChild(el("span", { class: "file" }, "📄 " + file.name)); continue; }
      const link = el("a", { href: file.url, target: "_blank", rel: "noopener noreferrer", class: "file" });
      if (/^image\/(png|jpeg|gif|webp)$/.test(file.type)) link.appendChild(el("img", { src: file.url, alt: file.name, class: "thumb" }));
      else { link.setAttribute("download", file.name); link.textContent = "📄 " + file.name + " (" + kb(file.size) + ")"; }
      row.appendChild(link);
    }
    log.appendChild(row);
    rows.set(item, row);
    if (item.mark) setMark(item, item.mark);
    if (item.options && item.options.length) {
      const group = el("div", { class: "options", role: "group" });
      for (const option of item.options) {
        const button = el("button", { type: "button" }, option.label);
        button.addEventListener("click", () => {
          for (const b of group.querySelectorAll("button")) b.setAttribute("disabled", "");
          // The buttons are spent: the keyboard goes on in the input.
          input.focus();
          send(option.send, option.label, option.choice);
        });
        group.appendChild(button);
      }
      log.appendChild(group);
    }
    for (const link of item.links || []) {
      if (!/^https?:\/\//i.test(link.url)) continue;
      const p = el("div", { class: "msg bot" });
      p.appendChild(el("a", { href: link.url, target: "_blank", rel: "noopener noreferrer" }, link.label));
      log.appendChild(p);
    }
    log.scrollTop = log.scrollHeight;
    if (!restoring && !isOpen() && item.kind !== "user") { unread += 1; showUnread(); }
  };

  // A time in the end user's own zone and language.
  const when = (/** @type {string} */ at) => new Intl.DateTimeFormat(lang, { weekday: "long", hour: "2-digit", minute: "2-digit" }).format(new Date(at));
  const kb = (/** @type {number} */ n) => n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";
  const showAttach = () => { attach.hidden = !(state.files && state.handledBy === "agent"); };

  /** @param {string} path @param {RequestInit} init */
  const call = async (path, init = {}) => {
    const headers = /** @type {Record<string, string>} */ ({ "content-type": "application/json" });
    if (state.token) headers.authorization = "Bearer " + state.token;
    const response = await fetch(api + path, Object.assign({ headers, credentials: "omit" }, init));
    const body = await response.json().catch(() => ({}));
    return { status: response.status, body };
  };

  const ensureToken = async () => {
    const expires = state.expiresAt ? Date.parse(state.expiresAt) : 0;
    if (state.token && expires - Date.now() > 3600e3) return;
    if (state.token && expires > Date.now()) {
      const refreshed = await call("/v1/conversations/refresh", { method: "POST", body: "{}" });
      if (refreshed.status === 200) { state.token = refreshed.body.token; state.expiresAt = refreshed.body.expiresAt; save(); return; }
    }
    state.token = undefined;
    // The customer the site's backend vouches for, if it signed one (IDENTITY_SECRET).
    const identity = script.dataset.identityToken ? { identityToken: script.dataset.identityToken } : {};
    const minted = await call("/v1/conversations", { method: "POST", body: JSON.stringify(identity) });
    if (minted.status !== 201) throw new Error("no conversation token (" + minted.status + ")");
    state = { cursor: 0, handledBy: "bot", items: state.items, token: minted.body.token, expiresAt: minted.body.expiresAt, files: minted.body.files };
    save();
  };

  const setHandledBy = (/** @type {string} */ who) => {
    if (who === "agent" && state.handledBy !== "agent") render({ kind: "notice", text: t("colleague") });
    state.handledBy = who;
    showAttach();
    save();
  };

  /** A message to the service; `attachments`: the upload a file message names. */
  const post = async (/** @type {Record<string, any>} */ body) => {
    // The page the end user is on: MSC routes on it, and the agent sees it (the service takes pages
    // of named hosts only).
    if (/[a-z]/i.test(location.hostname.split(".").pop() || "") && location.href.length <= 2048) body.endUserUrl = location.href;
    if (state.sessionId) body.sessionId = state.sessionId;
    const { status: code, body: reply } = await call("/v1/messages", { method: "POST", body: JSON.stringify(body) });
    if (code !== 200) throw new Error((reply.error && reply.error.message) || String(code));
    if (reply.token && reply.token !== state.token) { state.token = reply.token; state.expiresAt = reply.tokenExpiresAt || state.expiresAt; closeLive(); }
    state.sessionId = reply.sessionId;
    for (const output of reply.outputs || []) render({ kind: "bot", text: output.text || "", options: output.options, links: output.links });
    if (reply.queued) render({ kind: "notice", text: t("queued") });
    if (reply.delivery === "on_its_way") {
      const mine = state.items.filter((i) => i.kind === "user" && !i.mid).pop();
      if (mine) { mine.mid = reply.messageId; setMark(mine, deliveredEarly.includes(reply.messageId) ? "delivered" : "sent"); }
    }
    if (reply.choice === "kept_waiting") render({ kind: "notice", text: t("kept") });
    setHandledBy(reply.handledBy);
    save();
    connectLive();
  };

  // A file for the colleague: asked for (its name, type and size), sent straight to the store with
  // a progress bar, then named in a message.
  const sendFile = async (/** @type {File} */ file) => {
    const refuse = (/** @type {string} */ why) => status.replaceChildren(document.createTextNode(t("fileFailed") + " " + why));
    const files = state.files;
    if (!files) return;
    if (file.size > files.maxBytes) return refuse(t("tooBig").replace("{size}", kb(files.maxBytes)));
    if (!files.types.includes(file.type)) return refuse(t("fileType"));
    const progress = el("progress", { max: "100", value: "0", "aria-label": t("uploading").replace("{name}", file.name) });
    status.replaceChildren(progress);
    try {
      await ensureToken();
      const asked = await call("/v1/uploads", { method: "POST", body: JSON.stringify({ sessionId: state.sessionId, name: file.name, type: file.type, size: file.size }) });
      if (asked.status !== 201) throw new Error((asked.body.error && asked.body.error.message) || String(asked.status));
      await new Promise((resolve, reject) => {
        // XMLHttpRequest rather than fetch: only it reports an upload's progress.
        const xhr = new XMLHttpRequest();
        xhr.open("PUT", asked.body.url);
        for (const [name, value] of Object.entries(asked.body.headers || {})) xhr.setRequestHeader(name, String(value));
        xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.setAttribute("value", String(Math.round(e.loaded / e.total * 100))); };
        xhr.onload = () => (xhr.status < 300 ? resolve(null) : reject(new Error(String(xhr.status))));
        xhr.onerror = () => reject(new Error("network"));
        xhr.send(file);
      });
      render({ kind: "user", text: "", files: [{ name: file.name, type: file.type, size: file.size }] });
      await post({ text: "", attachments: [{ uploadId: asked.body.uploadId }] });
      status.replaceChildren();
    } catch (err) {
      refuse(err instanceof Error ? err.message : String(err));
    }
  };
  attach.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    const file = picker.files && picker.files[0];
    picker.value = "";
    if (file) sendFile(file);
  });

  /** `choice`: the answer to a question of the service's (nobody came yet), not words for anyone. */
  const send = async (/** @type {string} */ text, shown = text, /** @type {string | undefined} */ choice = undefined) => {
    render({ kind: "user", text: shown });
    status.replaceChildren();
    typing.textContent = state.handledBy === "agent" || choice ? "" : t("typing");
    try {
      await ensureToken();
      await post(choice ? { text, choice } : { text });
    } catch (err) {
      const retry = el("button", { type: "button" }, t("retry"));
      retry.addEventListener("click", () => { state.items.pop(); save(); log.lastChild && log.removeChild(log.lastChild); send(text, shown, choice); });
      status.replaceChildren(document.createTextNode(t("failed") + " "), retry);
    } finally {
      typing.textContent = "";
    }
  };

  /** A message of the outbox, from the live connection or a poll: shown once, by id. */
  const outbox = (/** @type {any} */ m) => {
    state.cursor = Math.max(state.cursor, m.cursor || 0);
    // The turn that completes a handover is still the bot's: the agent's first words say it is over.
    if (m.from === "agent") { setHandledBy("agent"); render({ kind: "agent", id: m.id, who: m.agentName, text: m.text, files: m.files }); }
    else if (m.event === "agent_joined") { setHandledBy("agent"); render({ kind: "notice", id: m.id, text: m.text }); }
    else if (m.event === "delivered" || m.event === "not_delivered") {
      // In the order they were written: a delivery says as much of every earlier message.
      const ok = m.event === "delivered";
      if (ok) deliveredEarly.push(m.messageId);
      for (const item of state.items) {
        if (item.kind !== "user" || !item.mid) continue;
        if (item.mid === m.messageId) { setMark(item, ok ? "delivered" : "notDelivered"); break; }
        if (ok && item.mark === "sent") setMark(item, "delivered");
      }
      if (!ok) render({ kind: "notice", id: m.id, text: m.text });
    }
    else if (m.event === "no_agent_yet") {
      // The question in the page's language; the buttons answer it with the choice's id.
      const at = m.opensAt ? when(m.opensAt) : "";
      const text = m.round === 1 && at ? t("noAgentClosed").replace("{at}", at) : t(m.round === 1 && m.agentsOffline ? "noAgentAway" : "noAgent");
      const options = (m.choices || []).map((/** @type {{id: string}} */ c) => {
        const label = t(c.id === "keep_waiting" ? "keepWaiting" : "backToBot");
        return { label, send: label, choice: c.id };
      });
      render({ kind: "notice", id: m.id, text, options });
    }
    else { render({ kind: "notice", id: m.id, text: m.text || t("ended") }); setHandledBy("bot"); }
    save();
  };

  // The live connection: opened once the token names the conversation; resumed from the last cursor;
  // reconnected with jittered backoff; after three failures in a row, the outbox is polled instead.
  /** @type {WebSocket | null} */
  let socket = null;
  let failures = 0;
  /** @type {number | undefined} */
  let poller;
  const closeLive = () => { if (socket) { const s = socket; socket = null; s.close(); } };
  const poll = async () => {
    if (!state.sessionId || !state.token) return;
    const { status: code, body } = await call(`/v1/sessions/${encodeURIComponent(state.sessionId)}/messages?after=${state.cursor}`).catch(() => ({ status: 0, body: {} }));
    if (code === 200) { for (const m of body.messages) outbox(m); if (body.handledBy) setHandledBy(body.handledBy); }
  };
  const connectLive = () => {
    if (socket || !state.token || !state.sessionId || typeof WebSocket === "undefined") return;
    if (failures >= 3) { if (!poller) poller = window.setInterval(poll, 3000); return; }
    const mine = new WebSocket(liveUrl + "?token=" + encodeURIComponent(state.token));
    socket = mine;
    let opened = false;
    mine.onopen = () => { opened = true; mine.send(JSON.stringify({ type: "resume", token: state.token, after: state.cursor })); };
    mine.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "message") outbox(frame.message);
      else if (frame.type === "resumed") { failures = 0; status.replaceChildren(); setHandledBy(frame.handledBy); }
    };
    mine.onclose = () => {
      if (socket !== mine) return;
      socket = null;
      failures = opened ? 0 : failures + 1;
      if (opened) status.textContent = t("offline");
      const wait = Math.min(30e3, 500 * 2 ** failures) * (0.5 + Math.random());
      window.setTimeout(connectLive, wait);
    };
  };
  window.setInterval(() => { if (socket && socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}'); }, 5 * 60e3);

  // Whether a colleague could take over now, told when the panel opens; closed: when it opens again,
  // in the end user's own time zone.
  const availability = el("div", { class: "notice availability", role: "status" });
  log.before(availability);
  const askPresence = async () => {
    try {
      await ensureToken();
      const query = new URLSearchParams({ channel: script.dataset.channel || "WebChat" });
      if (/[a-z]/i.test(location.hostname.split(".").pop() || "")) query.set("referrer", location.href.slice(0, 2048));
      const { status: code, body } = await call("/v1/presence?" + query);
      if (code !== 200 || body.agentStatus === "online") { availability.textContent = ""; return; }
      const at = body.opensAt ? when(body.opensAt) : "";
      availability.textContent = body.reason === "closed" && at ? t("closed").replace("{at}", at) : t("away");
    } catch (_) { availability.textContent = ""; }
  };

  const open = () => {
    if (state.handledBy !== "agent") askPresence();
    panel.hidden = false;
    launcher.hidden = true;
    launcher.setAttribute("aria-expanded", "true");
    unread = 0;
    showUnread();
    input.focus();
  };
  const close = () => {
    panel.hidden = true;
    launcher.hidden = false;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  };
  launcher.addEventListener("click", open);
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { close(); return; }
    if (event.key !== "Tab") return;
    // Focus stays in the open panel.
    const focusable = /** @type {HTMLElement[]} */ ([...panel.querySelectorAll("button:not([disabled]), input, a[href]")]);
    const first = focusable[0], last = focusable[focusable.length - 1];
    if (event.shiftKey && root.activeElement === first) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && root.activeElement === last) { event.preventDefault(); first.focus(); }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });
  // On a phone the panel follows the visible viewport, so the input stays above the keyboard.
  const viewport = window.visualViewport;
  if (viewport) {
    const fit = () => host.style.setProperty("--handover-height", viewport.height + "px");
    viewport.addEventListener("resize", fit);
    fit();
  }

  for (const item of state.items) render(item, true);
  showAttach();
  const start = () => { document.body.appendChild(host); connectLive(); };
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
