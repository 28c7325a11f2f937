// Chime playground: a small Slack-like page over the local connector's JSON API.
//
// Everything a message says is untrusted: it is put into the page with textContent and
// createElement only (never innerHTML), links are made only for http(s) URLs, and nothing is
// evaluated. No external resources, no build step.
"use strict";

(() => {
  const BOT = "UCHIME";

  // ---------------------------------------------------------------- state

  const state = {
    workspace: null,
    people: new Map(), // id -> {id, name, role}
    channels: new Map(), // id -> {id, name, is_dm}
    me: null, // who the page posts and clicks as
    messages: new Map(), // ts -> message, everything seen (fetched or streamed)
    latestReply: new Map(), // root ts -> ts of its newest reply
    view: "channel", // "channel" | "sessions"
    channel: null, // open channel id
    thread: null, // open thread root ts
    channelLoaded: null, // the channel whose messages are rendered
    threadLoaded: null, // the thread whose messages are rendered
    channelLoad: 0, // guards against a slow load overwriting a newer one
    threadLoad: 0,
  };

  const $ = (id) => document.getElementById(id);
  const els = {
    live: $("live"),
    channelList: $("channel-list"),
    dmList: $("dm-list"),
    sessionsLink: $("sessions-link"),
    postAs: $("post-as"),
    loadError: $("load-error"),
    channelView: $("channel-view"),
    channelTitle: $("channel-title"),
    channelHint: $("channel-hint"),
    messages: $("messages"),
    composer: $("composer"),
    composerInput: $("composer-input"),
    composerLabel: $("composer-label"),
    composerError: $("composer-error"),
    threadPane: $("thread-pane"),
    threadTitle: $("thread-title"),
    threadHint: $("thread-hint"),
    threadClose: $("thread-close"),
    threadMessages: $("thread-messages"),
    threadComposer: $("thread-composer"),
    threadInput: $("thread-input"),
    threadError: $("thread-error"),
    suggestions: $("suggestions"),
    sessionsView: $("sessions-view"),
    sessionsBody: $("sessions-body"),
    sessionsStatus: $("sessions-status"),
    sessionsRefresh: $("sessions-refresh"),
    digestLink: $("digest-link"),
    digestView: $("digest-view"),
    digestText: $("digest-text"),
    digestNow: $("digest-now"),
    digestStatus: $("digest-status"),
    digestRefresh: $("digest-refresh"),
  };

  // The rendered message elements of each list, by ts: updates replace one element in place.
  const lists = {
    channel: { container: els.messages, nodes: new Map(), kind: "channel" },
    thread: { container: els.threadMessages, nodes: new Map(), kind: "thread" },
  };

  // ---------------------------------------------------------------- small helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") el.className = v;
        else if (k === "text") el.textContent = v;
        else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") el.setAttribute(k, v);
        else if (k === "hidden" || k === "disabled") el[k] = Boolean(v);
        else el.setAttribute(k, v);
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      el.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return el;
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  // This process's token, rendered into the page; every API call sends it (see src/local/guard.rs).
  const tokenMeta = document.querySelector('meta[name="chime-token"]');
  const PAGE_TOKEN = tokenMeta ? tokenMeta.content : "";

  async function api(path, options = {}) {
    const init = { ...options, headers: { Accept: "application/json", "X-Chime-Token": PAGE_TOKEN } };
    if (options.body !== undefined) {
      init.headers = { ...init.headers, "Content-Type": "application/json" };
      init.body = JSON.stringify(options.body);
    }
    const res = await fetch(path, init);
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (!res.ok) {
      const reason = body && typeof body.error === "string" ? body.error : `HTTP ${res.status}`;
      throw new ApiError(reason, res.status);
    }
    return body;
  }

  // Slack timestamps ("1700000000.000123") compare as numbers; as strings when equally long.
  function cmpTs(a, b) {
    return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  }

  function safeHttpUrl(raw) {
    try {
      const u = new URL(raw);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch {
      return null;
    }
  }

  function displayName(person) {
    // "gus (guest)" is shown as "gus" with a "guest" badge.
    return person.name.replace(/\s*\((guest|external|member)\)\s*$/i, "");
  }

  function personName(id) {
    if (id === BOT) return "chime";
    const p = state.people.get(id);
    return p ? displayName(p) : id;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function timeEl(ms) {
    if (!ms) return null;
    const d = new Date(ms);
    return h("time", { datetime: d.toISOString(), title: fullFmt.format(d), text: timeFmt.format(d) });
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || ms < 0) return "–";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    const m = Math.floor(ms / 60000);
    const s = Math.round((ms % 60000) / 1000);
    return `${m} min ${s} s`;
  }

  // ---------------------------------------------------------------- mrkdwn

  const EMOJI = {
    eyes: "👀",
    hourglass_flowing_sand: "⏳",
    hourglass: "⌛",
    test_tube: "🧪",
    x: "❌",
    white_check_mark: "✅",
    clipboard: "📋",
    heavy_check_mark: "✔️",
    octagonal_sign: "🛑",
    card_index_dividers: "🗂️",
    warning: "⚠️",
    tada: "🎉",
    rocket: "🚀",
    "+1": "👍",
    thumbsup: "👍",
    "-1": "👎",
    robot_face: "🤖",
    wave: "👋",
    bulb: "💡",
    memo: "📝",
    mag: "🔍",
    gear: "⚙️",
    construction: "🚧",
    no_entry: "⛔",
    speech_balloon: "💬",
    bell: "🔔",
    link: "🔗",
    lock: "🔒",
    question: "❓",
    heart: "❤️",
    fire: "🔥",
    sparkles: "✨",
  };

  function decodeEntities(s) {
    return s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e) => ({ amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" })[e]);
  }

  function emojiEl(name) {
    const ch = EMOJI[name];
    if (!ch) return null;
    return h("span", { class: "emoji", role: "img", "aria-label": name.replace(/_/g, " "), text: ch });
  }

  function mentionEl(userId, label) {
    const name = label || personName(userId);
    return h("span", { class: "mention", "data-user": userId, text: `@${name}` });
  }

  function linkEl(href, label) {
    return h("a", { href, rel: "noopener noreferrer", target: "_blank", text: label });
  }

  // Inline mrkdwn. `slack` is true for Chime's own (Slack-escaped) text: entities are decoded and
  // <@U…>, <url|label>, <#C…|name> and <!here> are understood. People's typed text is shown as
  // typed (a literal "<" stays a "<"), with *bold*, _italic_, ~strike~, `code` and bare links.
  const INLINE_SOURCE = [
      "`(?<code>[^`\\n]+)`",
      "<(?<angle>[^<>\\n]+)>",
      "(?<![\\w*])\\*(?<bold>[^*\\s](?:[^*\\n]*[^*\\s])?)\\*(?![\\w*])",
      "(?<![\\w_])_(?<italic>[^_\\s](?:[^_\\n]*[^_\\s])?)_(?![\\w_])",
      "(?<![\\w~])~(?<strike>[^~\\s](?:[^~\\n]*[^~\\s])?)~(?![\\w~])",
      "(?<url>https?:\\/\\/[^\\s<>]+)",
      ":(?<emoji>[a-z0-9_+\\-]+):",
      "(?<![\\w@])(?<chime>@chime)\\b",
  ].join("|");

  function renderInline(text, slack, out) {
    const plain = (s) => (slack ? decodeEntities(s) : s);
    let last = 0;
    const re = new RegExp(INLINE_SOURCE, "gi"); // one per call: the search recurses
    let m;
    const pieces = [];
    while ((m = re.exec(text)) !== null) {
      const g = m.groups;
      let node = null;
      if (g.code !== undefined) {
        node = h("code", { text: plain(g.code) });
      } else if (g.angle !== undefined) {
        if (!slack) {
          re.lastIndex = m.index + 1; // typed "<…>" is text; look inside it
          continue;
        }
        node = angleEl(g.angle);
      } else if (g.bold !== undefined) {
        node = h("strong");
        renderInline(g.bold, slack, node);
      } else if (g.italic !== undefined) {
        node = h("em");
        renderInline(g.italic, slack, node);
      } else if (g.strike !== undefined) {
        node = h("s");
        renderInline(g.strike, slack, node);
      } else if (g.url !== undefined) {
        let raw = g.url;
        let trail = "";
        const t = raw.match(/[.,;:!?)\]'"]+$/);
        if (t) {
          trail = t[0];
          raw = raw.slice(0, -trail.length);
        }
        const href = safeHttpUrl(plain(raw));
        if (href) {
          pieces.push([m.index, m.index + m[0].length - trail.length, linkEl(href, plain(raw))]);
          continue;
        }
      } else if (g.emoji !== undefined) {
        node = emojiEl(g.emoji.toLowerCase());
      } else if (g.chime !== undefined) {
        node = slack ? null : mentionEl(BOT, "chime");
      }
      if (node) pieces.push([m.index, m.index + m[0].length, node]);
    }
    for (const [start, end, node] of pieces) {
      if (start > last) out.append(document.createTextNode(plain(text.slice(last, start))));
      out.append(node);
      last = end;
    }
    if (last < text.length) out.append(document.createTextNode(plain(text.slice(last))));
  }

  function angleEl(inner) {
    const [target, label] = splitOnce(inner, "|");
    if (target.startsWith("@")) return mentionEl(target.slice(1), label ? decodeEntities(label) : null);
    if (target.startsWith("#")) {
      const ch = state.channels.get(target.slice(1));
      const name = label ? decodeEntities(label) : ch ? ch.name : target.slice(1);
      return h("span", { class: "mention", text: `#${name}` });
    }
    if (target.startsWith("!")) {
      const special = target.slice(1).split("^")[0];
      return h("span", { class: "mention", text: label ? decodeEntities(label) : `@${special}` });
    }
    const href = safeHttpUrl(decodeEntities(target));
    const text = decodeEntities(label || target);
    return href ? linkEl(href, text) : document.createTextNode(text);
  }

  function splitOnce(s, sep) {
    const i = s.indexOf(sep);
    return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + sep.length)];
  }

  // Block-level mrkdwn: ```code blocks```, "> " quotes, lines.
  function renderMrkdwn(text, slack) {
    const frag = document.createDocumentFragment();
    const parts = String(text ?? "").split("```");
    parts.forEach((part, i) => {
      if (i % 2 === 1 && i < parts.length - 1) {
        const code = (slack ? decodeEntities(part) : part).replace(/^\n/, "");
        frag.append(h("pre", { class: "code-block", tabindex: "0" }, h("code", { text: code })));
        return;
      }
      if (i % 2 === 1) part = "```" + part; // an unclosed fence is text
      if (part === "") return;
      const lines = part.split("\n");
      const quoteMark = slack ? /^&gt;\s?/ : /^>\s?/;
      let quote = null;
      let para = null;
      lines.forEach((line, j) => {
        if (quoteMark.test(line)) {
          if (!quote) {
            quote = h("blockquote");
            frag.append(quote);
          } else {
            quote.append(h("br"));
          }
          renderInline(line.replace(quoteMark, ""), slack, quote);
          para = null;
          return;
        }
        quote = null;
        if (!para) {
          para = h("span", { class: "para" });
          frag.append(para);
        } else {
          para.append(h("br"));
        }
        if (j === lines.length - 1 && line === "" && lines.length > 1) return;
        renderInline(line, slack, para);
      });
    });
    return frag;
  }

  function textObject(obj, cls) {
    // A Block Kit text object: mrkdwn, or plain_text (which may carry emoji shortcodes).
    const el = h("div", { class: cls });
    if (!obj) return el;
    if (obj.type === "plain_text") renderPlain(obj.text, el);
    else el.append(renderMrkdwn(obj.text, true));
    return el;
  }

  // plain_text: no formatting, but :emoji: shortcodes and entities as Slack shows them.
  function renderPlain(text, out) {
    const s = decodeEntities(String(text ?? ""));
    let last = 0;
    for (const m of s.matchAll(/:([a-z0-9_+-]+):/g)) {
      const e = emojiEl(m[1]);
      if (!e) continue;
      if (m.index > last) out.append(document.createTextNode(s.slice(last, m.index)));
      out.append(e);
      last = m.index + m[0].length;
    }
    if (last < s.length) out.append(document.createTextNode(s.slice(last)));
  }

  function plainText(obj) {
    return obj && typeof obj.text === "string" ? decodeEntities(obj.text) : "";
  }

  // All the text in an unknown block, so nothing is silently dropped.
  function collectText(value, out = []) {
    if (typeof value === "string") return out;
    if (Array.isArray(value)) value.forEach((v) => collectText(v, out));
    else if (value && typeof value === "object") {
      if (typeof value.text === "string") out.push(decodeEntities(value.text));
      else if (typeof value.alt_text === "string") out.push(decodeEntities(value.alt_text));
      for (const [k, v] of Object.entries(value)) if (k !== "text" && k !== "alt_text") collectText(v, out);
      if (value.text && typeof value.text === "object") collectText(value.text, out);
    }
    return out;
  }

  // ---------------------------------------------------------------- Block Kit

  function renderBlocks(blocks, msg) {
    const root = h("div", { class: "blocks" });
    for (const block of blocks) {
      if (!block || typeof block !== "object") continue;
      switch (block.type) {
        case "section": {
          const sec = h("div", { class: "block block-section" });
          const body = h("div", { class: "section-body" });
          if (block.text) body.append(textObject(block.text, "section-text"));
          if (Array.isArray(block.fields)) {
            const fields = h("div", { class: "section-fields" });
            for (const f of block.fields) fields.append(textObject(f, "section-field"));
            body.append(fields);
          }
          sec.append(body);
          if (block.accessory) sec.append(h("div", { class: "accessory" }, renderElement(block.accessory, msg)));
          root.append(sec);
          break;
        }
        case "context": {
          const ctx = h("div", { class: "block block-context" });
          for (const e of block.elements || []) {
            if (e.type === "image") ctx.append(h("span", { text: plainText({ text: e.alt_text }) }));
            else {
              const span = h("span", { class: "context-item" });
              if (e.type === "plain_text") renderPlain(e.text, span);
              else span.append(renderMrkdwn(e.text, true));
              ctx.append(span);
            }
          }
          root.append(ctx);
          break;
        }
        case "plan": {
          // A proposed plan (plan approval): drawn like a streamed plan, every step pending.
          const tasks = Array.isArray(block.tasks) ? block.tasks : [];
          const chunks = [{ type: "plan_update", title: block.title }].concat(
            tasks.filter((t) => t && typeof t === "object").map((t) => ({ type: "task_update", id: String(t.task_id), title: t.title, status: t.status })),
          );
          const plan = renderPlan(chunks);
          if (plan) root.append(plan);
          break;
        }
        case "actions": {
          const group = h("div", { class: "block block-actions", role: "group", "aria-label": "Actions" });
          for (const e of block.elements || []) group.append(renderElement(e, msg));
          root.append(group);
          break;
        }
        case "context_actions": {
          // Feedback buttons: thumbs up and down, pressed like any button.
          const group = h("div", { class: "block block-actions block-feedback", role: "group", "aria-label": "Feedback" });
          for (const e of block.elements || []) {
            if (!e || e.type !== "feedback_buttons") continue;
            for (const side of ["positive_button", "negative_button"]) {
              const b = e[side] || {};
              const btn = h("button", {
                type: "button",
                class: "btn",
                "data-action-id": e.action_id || "",
                "data-focus-key": `feedback:${side}`,
                "aria-label": typeof b.accessibility_label === "string" ? b.accessibility_label : plainText(b.text),
                text: plainText(b.text) || (side === "positive_button" ? "Good" : "Bad"),
              });
              btn.addEventListener("click", () => pressAction(btn, msg, e.action_id, b.value ?? "", btn));
              group.append(btn);
            }
          }
          root.append(group);
          break;
        }
        case "divider":
          root.append(h("hr", { class: "block block-divider" }));
          break;
        case "header":
          root.append(h("p", { class: "block block-header", text: plainText(block.text) }));
          break;
        default: {
          const text = collectText(block).join("\n");
          root.append(h("div", { class: "block block-unknown", "data-block-type": String(block.type) }, renderMrkdwn(text, false)));
        }
      }
    }
    return root;
  }

  let selectSeq = 0;

  function renderElement(e, msg) {
    if (e.type === "button") {
      const style = e.style === "primary" || e.style === "danger" ? ` btn-${e.style}` : "";
      const btn = h("button", {
        type: "button",
        class: `btn${style}`,
        "data-action-id": e.action_id || "",
        "data-focus-key": `action:${e.action_id}:${e.value ?? ""}`,
        text: plainText(e.text) || "Button",
      });
      if (e.url) {
        const href = safeHttpUrl(e.url);
        if (href) return linkEl(href, plainText(e.text) || href);
      }
      btn.addEventListener("click", () => pressAction(btn, msg, e.action_id, e.value ?? "", btn));
      return btn;
    }
    if (e.type === "static_select") {
      // A select plus a button: choosing with the keyboard does not send until the button is pressed.
      const id = `select-${++selectSeq}`;
      const placeholder = plainText(e.placeholder) || "Choose";
      const select = h("select", { id, "data-focus-key": `select:${e.action_id}` });
      select.append(h("option", { value: "", text: placeholder, disabled: true }));
      select.firstChild.selected = true;
      const options = [...(e.options || []), ...(e.option_groups || []).flatMap((g) => g.options || [])];
      for (const o of options) select.append(h("option", { value: o.value ?? "", text: plainText(o.text) }));
      const go = h("button", { type: "button", class: "btn btn-primary", "data-focus-key": `choose:${e.action_id}`, text: "Choose" });
      go.addEventListener("click", () => {
        if (!select.value) {
          select.focus();
          return;
        }
        pressAction(go, msg, e.action_id, select.value, select);
      });
      return h(
        "div",
        { class: "select-control" },
        h("label", { class: "visually-hidden", for: id, text: placeholder }),
        select,
        go,
      );
    }
    const text = collectText(e).join(" ");
    return h("span", { class: "element-unknown", text: text || `[${e.type}]` });
  }

  async function pressAction(control, msg, actionId, value, busyEl) {
    if (!state.me) return;
    busyEl.setAttribute("aria-busy", "true");
    control.disabled = true;
    try {
      await api("/api/local/actions", {
        method: "POST",
        body: {
          user: state.me,
          channel: msg.channel,
          thread_ts: msg.thread_ts || msg.ts,
          action_id: actionId,
          value,
        },
      });
      // The message itself changes when Chime handles the click (over the stream).
    } catch (err) {
      showError(msg.thread_ts ? els.threadError : els.composerError, `Could not press the button: ${err.message}`);
    } finally {
      // Re-enabled after a moment unless the message was replaced meanwhile.
      setTimeout(() => {
        if (control.isConnected) {
          control.disabled = false;
          busyEl.removeAttribute("aria-busy");
        }
      }, 1500);
    }
  }

  // ---------------------------------------------------------------- messages

  const AVATAR_COLORS = ["#1b5e8c", "#7a3b8f", "#2e6b3a", "#8a4b08", "#6b3a3a", "#33546e"];

  function avatar(userId) {
    const name = personName(userId);
    let hash = 0;
    for (const c of userId) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
    const bg = userId === BOT ? "#4a154b" : AVATAR_COLORS[hash % AVATAR_COLORS.length];
    const a = h("span", { class: "avatar", "aria-hidden": "true", text: userId === BOT ? "🔔" : name.slice(0, 1).toUpperCase() });
    a.style.backgroundColor = bg;
    return a;
  }

  function roleBadge(userId) {
    if (userId === BOT) return h("span", { class: "badge badge-app", text: "app" });
    const p = state.people.get(userId);
    if (!p) return null;
    return h("span", { class: `badge badge-${p.role}`, text: p.role });
  }

  function reactionEls(msg) {
    return (msg.reactions || []).map((name) => {
      const ch = EMOJI[name];
      return h(
        "span",
        { class: "reaction", title: `:${name}:`, "data-reaction": name },
        h("span", { "aria-hidden": "true", text: ch ? `${ch} 1` : `:${name}: 1` }),
        h("span", { class: "visually-hidden", text: `Reaction ${name.replace(/_/g, " ")}` }),
      );
    });
  }

  function repliesLabel(n) {
    return n === 1 ? "1 reply" : `${n} replies`;
  }

  // A one-line summary of a thread's newest reply, shown under its root in the channel.
  function threadPreview(rootTs) {
    const ts = state.latestReply.get(rootTs);
    const reply = ts && state.messages.get(ts);
    const span = h("span", { class: "thread-preview", "data-ts": reply ? reply.ts : null });
    if (!reply) return span;
    span.append(h("span", { class: "preview-author", text: `${personName(reply.user)}: ` }));
    const firstLine = String(reply.text || "").split("\n")[0];
    renderInline(firstLine, reply.user === BOT, span);
    return span;
  }

  // Whether a card still has a button with this action (a status card has Stop/Cancel).
  function hasAction(blocks, actionId) {
    if (!Array.isArray(blocks)) return false;
    return blocks.some(
      (b) => b && b.type === "actions" && Array.isArray(b.elements) && b.elements.some((e) => e && e.action_id === actionId),
    );
  }

  // A streamed reply's plan, as Slack shows it: the plan's title, then each step with its status.
  // Every update carries the whole list, so the last of each step's updates is the one shown.
  const STEP_MARKS = { pending: "○", in_progress: "◔", complete: "✓", error: "✗" };
  function renderPlan(chunks) {
    if (!Array.isArray(chunks) || !chunks.length) return null;
    let title = "";
    const steps = new Map();
    for (const c of chunks) {
      if (!c || typeof c !== "object") continue;
      if (c.type === "plan_update" && typeof c.title === "string") title = c.title;
      if (c.type === "task_update" && typeof c.id === "string") steps.set(c.id, c);
    }
    if (!steps.size) return null;
    const list = h("ol", { class: "plan", "aria-label": title ? `Plan: ${title}` : "Plan" });
    for (const step of steps.values()) {
      const status = Object.hasOwn(STEP_MARKS, step.status) ? step.status : "pending";
      const item = h(
        "li",
        { class: `plan-step plan-${status}`, "data-status": status },
        h("span", { class: "plan-mark", "aria-hidden": "true", text: STEP_MARKS[status] }),
        h("span", { class: "plan-title", text: String(step.title ?? "") }),
      );
      if (typeof step.output === "string" && step.output) {
        item.append(h("pre", { class: "plan-output", text: step.output }));
      }
      list.append(item);
    }
    return h("div", { class: "block block-plan" }, title ? h("p", { class: "plan-heading", text: title }) : null, list);
  }

  function renderMessage(msg, kind) {
    const isBot = msg.user === BOT;
    const live = isBot && hasAction(msg.blocks, "chime_stop");
    const article = h("article", {
      class: `msg${isBot ? " msg-bot" : ""}${msg.blocks ? " msg-card" : ""}${live ? " msg-live" : ""}`,
      "data-ts": msg.ts,
      "data-user": msg.user,
      tabindex: "-1",
      "aria-label": `${personName(msg.user)}`,
    });
    const meta = h(
      "div",
      { class: "msg-meta" },
      h("span", { class: "msg-author", text: personName(msg.user) }),
      roleBadge(msg.user),
      timeEl(msg.created_at),
    );
    let content;
    if (isBot && Array.isArray(msg.blocks) && msg.blocks.length) {
      content = renderBlocks(msg.blocks, msg);
    } else {
      content = h("div", { class: "msg-text" }, renderMrkdwn(msg.text, isBot));
    }
    const body = h("div", { class: "msg-body" }, meta, isBot ? renderPlan(msg.plan) : null, content);

    const reactions = reactionEls(msg);
    if (kind === "channel") {
      // Always present, one line high: replies and reactions arriving never shift the list.
      const n = msg.reply_count || 0;
      const link = h("a", {
        class: "thread-link",
        href: `#/thread/${encodeURIComponent(msg.channel)}/${encodeURIComponent(msg.ts)}`,
        "data-focus-key": "thread",
        text: n ? repliesLabel(n) : "Reply in thread",
      });
      body.append(h("div", { class: "msg-footer" }, ...reactions, link, n ? threadPreview(msg.ts) : null));
    } else if (!msg.thread_ts) {
      // The thread's root: a footer line that is there before its reactions and replies are.
      const n = msg.reply_count || 0;
      body.append(
        h("div", { class: "msg-footer" }, ...reactions, h("span", { class: "reply-count", text: n ? repliesLabel(n) : "No replies yet" })),
      );
    } else if (reactions.length) {
      body.append(h("div", { class: "msg-footer" }, ...reactions));
    }
    article.append(avatar(msg.user), body);
    return article;
  }

  // Merges what we learnt about a message and never goes back to an older version. The stream is
  // in order, so a streamed version wins a tie; a fetched one must be strictly newer (a fetch may
  // have been answered before the edit it races with). Reactions and reply counts only grow.
  function remember(msg, fromStream = false) {
    const old = state.messages.get(msg.ts);
    let merged = msg;
    if (old) {
      const newer = fromStream ? msg.updated_at >= old.updated_at : msg.updated_at > old.updated_at;
      merged = newer ? { ...msg } : { ...old };
      merged.reactions = [...new Set([...(old.reactions || []), ...(msg.reactions || [])])];
      merged.reply_count = Math.max(old.reply_count || 0, msg.reply_count || 0);
    }
    state.messages.set(msg.ts, merged);
    if (merged.thread_ts) {
      const prev = state.latestReply.get(merged.thread_ts);
      if (!prev || cmpTs(merged.ts, prev) >= 0) state.latestReply.set(merged.thread_ts, merged.ts);
    }
    return merged;
  }

  function isAtBottom(container) {
    return container.scrollHeight - container.scrollTop - container.clientHeight < 48;
  }

  // Replaces one message element (or inserts it in ts order), keeping focus and scroll.
  function upsertNode(list, msg) {
    const { container, nodes, kind } = list;
    const atBottom = isAtBottom(container);
    const fresh = renderMessage(msg, kind);
    const old = nodes.get(msg.ts);
    if (old) {
      const active = document.activeElement;
      const focusKey = old.contains(active) ? (active.dataset.focusKey || "") : null;
      // Keep the space an updated card had, so a status turning into a shorter result does not
      // pull the list up under the reader.
      const before = old.getBoundingClientRect().height;
      old.replaceWith(fresh);
      if (msg.blocks && fresh.getBoundingClientRect().height < before) fresh.style.minHeight = `${before}px`;
      if (focusKey !== null) {
        const target = (focusKey && fresh.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)) || fresh;
        target.focus({ preventScroll: true });
      }
    } else {
      const empty = container.querySelector(".empty");
      if (empty) empty.remove();
      let next = null;
      for (const [ts, node] of nodes) {
        if (cmpTs(ts, msg.ts) > 0 && (!next || cmpTs(ts, next.dataset.ts) < 0)) next = node;
      }
      container.insertBefore(fresh, next);
    }
    nodes.set(msg.ts, fresh);
    if (atBottom) container.scrollTop = container.scrollHeight;
  }

  function renderList(list, msgs, emptyText) {
    const { container, nodes } = list;
    const atBottom = isAtBottom(container) || nodes.size === 0;
    const keep = container.scrollTop;
    nodes.clear();
    const frag = document.createDocumentFragment();
    for (const m of msgs) {
      const node = renderMessage(m, list.kind);
      nodes.set(m.ts, node);
      frag.append(node);
    }
    if (!msgs.length) frag.append(h("p", { class: "empty", text: emptyText }));
    container.replaceChildren(frag);
    container.scrollTop = atBottom ? container.scrollHeight : keep;
  }

  function channelMessages(channel) {
    return [...state.messages.values()]
      .filter((m) => m.channel === channel && !m.thread_ts)
      .sort((a, b) => cmpTs(a.ts, b.ts));
  }

  function threadMessages(root) {
    return [...state.messages.values()]
      .filter((m) => m.ts === root || m.thread_ts === root)
      .sort((a, b) => cmpTs(a.ts, b.ts));
  }

  // A message arrived or changed (posted here, or over the stream).
  function onMessage(raw, fromStream = false) {
    const msg = remember(raw, fromStream);
    if (msg.channel !== state.channel) return;
    if (!msg.thread_ts) {
      if (state.channelLoaded === msg.channel) upsertNode(lists.channel, msg);
    } else {
      // A reply: its root's reply count and preview change in the channel.
      const root = state.messages.get(msg.thread_ts);
      if (root && lists.channel.nodes.has(root.ts)) upsertNode(lists.channel, root);
    }
    if (state.thread && (msg.ts === state.thread || msg.thread_ts === state.thread) && state.threadLoaded === state.thread) {
      upsertNode(lists.thread, msg);
    }
  }

  // ---------------------------------------------------------------- channel and thread

  function renderNav() {
    const make = (c, list) => {
      const a = h("a", {
        class: "nav-link",
        href: `#/channel/${encodeURIComponent(c.id)}`,
        "data-channel": c.id,
        text: c.is_dm ? c.name : `# ${c.name}`,
      });
      if (c.is_dm) a.setAttribute("aria-label", `${c.name} (direct messages with Chime)`);
      list.append(h("li", null, a));
    };
    els.channelList.replaceChildren();
    els.dmList.replaceChildren();
    for (const c of state.channels.values()) make(c, c.is_dm ? els.dmList : els.channelList);
  }

  function markCurrentNav() {
    for (const a of document.querySelectorAll(".sidebar .nav-link")) {
      const current =
        (state.view === "sessions" && a === els.sessionsLink) ||
        (state.view === "digest" && a === els.digestLink) ||
        (state.view === "channel" && a.dataset.channel === state.channel);
      if (current) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  function renderPostAs() {
    els.postAs.replaceChildren();
    for (const p of state.people.values()) {
      els.postAs.append(h("option", { value: p.id, text: `${displayName(p)} — ${p.role}` }));
    }
    let saved = null;
    try {
      saved = localStorage.getItem("chime.postAs");
    } catch {
      saved = null;
    }
    state.me = state.people.has(saved) ? saved : [...state.people.keys()][0] || null;
    els.postAs.value = state.me || "";
  }

  async function showChannel(channelId) {
    const ch = state.channels.get(channelId);
    if (!ch) {
      location.replace(`#/channel/${encodeURIComponent(firstChannel())}`);
      return;
    }
    const changed = state.channel !== channelId || state.channelLoaded !== channelId;
    state.channel = channelId;
    const label = ch.is_dm ? ch.name : `#${ch.name}`;
    els.channelTitle.textContent = label;
    els.channelHint.textContent = ch.is_dm
      ? "A direct conversation with Chime: every message here is a request."
      : "Mention @chime to ask for work; Chime answers in the message's thread.";
    els.composerLabel.textContent = `Message ${label}`;
    els.composerInput.placeholder = ch.is_dm ? "Ask Chime for something…" : `Message ${label} (mention @chime to ask for work)`;
    document.title = `${label} · Chime playground`;
    if (!changed) return;
    state.channelLoaded = null;
    els.messages.replaceChildren(h("p", { class: "empty", text: "Loading messages…" }));
    lists.channel.nodes.clear();
    await loadChannel();
  }

  // `fresh`: after a gap in the stream the server's copy wins ties (see remember).
  async function loadChannel(fresh = false) {
    const channelId = state.channel;
    const seq = ++state.channelLoad;
    try {
      const msgs = await api(`/api/local/channels/${encodeURIComponent(channelId)}/messages`);
      if (seq !== state.channelLoad || state.channel !== channelId) return;
      for (const m of msgs) remember(m, fresh);
      state.channelLoaded = channelId;
      renderList(lists.channel, channelMessages(channelId), "No messages yet. Say hello, or mention @chime.");
      await loadPreviews(channelId, seq);
    } catch (err) {
      if (seq === state.channelLoad) {
        els.messages.replaceChildren(h("p", { class: "empty error", text: `Could not load messages: ${err.message}` }));
      }
    }
  }

  // The newest reply of each thread in view, for the one-line previews (small threads, few of them).
  async function loadPreviews(channelId, seq) {
    const roots = channelMessages(channelId).filter((m) => m.reply_count > 0 && !state.latestReply.has(m.ts));
    for (const root of roots.slice(-20)) {
      try {
        const thread = await api(`/api/local/channels/${encodeURIComponent(channelId)}/threads/${encodeURIComponent(root.ts)}`);
        if (seq !== state.channelLoad) return;
        for (const m of thread) remember(m);
        const r = state.messages.get(root.ts);
        if (r && lists.channel.nodes.has(r.ts)) upsertNode(lists.channel, r);
      } catch {
        // A preview is optional.
      }
    }
  }

  async function openThread(channelId, rootTs, { focus, fresh } = {}) {
    const changed = state.thread !== rootTs || state.threadLoaded !== rootTs;
    state.thread = rootTs;
    els.threadPane.hidden = false;
    document.body.classList.add("thread-open");
    const ch = state.channels.get(channelId);
    els.threadHint.textContent = ch ? (ch.is_dm ? `with ${ch.name}` : `in #${ch.name}`) : "";
    if (changed) {
      state.threadLoaded = null;
      hideSuggestions();
      els.threadError.textContent = "";
      els.threadMessages.replaceChildren(h("p", { class: "empty", text: "Loading the thread…" }));
      lists.thread.nodes.clear();
      const seq = ++state.threadLoad;
      try {
        const msgs = await api(`/api/local/channels/${encodeURIComponent(channelId)}/threads/${encodeURIComponent(rootTs)}`);
        if (seq !== state.threadLoad || state.thread !== rootTs) return;
        for (const m of msgs) remember(m, fresh);
        state.threadLoaded = rootTs;
        renderList(lists.thread, threadMessages(rootTs), "");
        els.threadMessages.scrollTop = els.threadMessages.scrollHeight;
        const root = state.messages.get(rootTs);
        if (root && lists.channel.nodes.has(rootTs)) upsertNode(lists.channel, root);
      } catch (err) {
        if (seq === state.threadLoad) {
          const text = err.status === 404 ? "This thread does not exist (any more)." : `Could not load the thread: ${err.message}`;
          els.threadMessages.replaceChildren(h("p", { class: "empty error", text }));
        }
      }
    }
    if (focus) els.threadInput.focus();
  }

  function closeThread() {
    state.thread = null;
    state.threadLoaded = null;
    els.threadPane.hidden = true;
    document.body.classList.remove("thread-open");
    lists.thread.nodes.clear();
    els.threadMessages.replaceChildren();
  }

  // ---------------------------------------------------------------- suggestions (placeholder)

  // Where Chime's suggestion buttons go once the relevance policy exists. Each suggestion is
  // {label, text}: its button puts `text` into the thread composer for the person to send (nothing
  // is posted without them). Reachable as window.chimePlayground.showSuggestions.
  function showSuggestions(suggestions) {
    const list = Array.isArray(suggestions) ? suggestions : [];
    els.suggestions.replaceChildren();
    if (!list.length) {
      els.suggestions.hidden = true;
      return;
    }
    els.suggestions.append(h("h3", { class: "suggestions-title", text: "Chime could help" }));
    for (const s of list) {
      const b = h("button", { type: "button", class: "btn btn-suggestion", text: String(s.label ?? s.text ?? "") });
      b.addEventListener("click", () => {
        els.threadInput.value = String(s.text ?? s.label ?? "");
        els.threadInput.focus();
      });
      els.suggestions.append(b);
    }
    els.suggestions.hidden = false;
  }

  function hideSuggestions() {
    showSuggestions([]);
  }

  // ---------------------------------------------------------------- composers

  function showError(el, text) {
    el.textContent = text;
  }

  async function send(input, errorEl, threadTs) {
    const text = input.value;
    if (!text.trim()) {
      showError(errorEl, "Write something first.");
      return;
    }
    if (!state.me || !state.channel) return;
    errorEl.textContent = "";
    input.setAttribute("aria-busy", "true");
    try {
      const body = { channel: state.channel, user: state.me, text };
      if (threadTs) body.thread_ts = threadTs;
      const msg = await api("/api/local/messages", { method: "POST", body });
      input.value = "";
      onMessage(msg);
      const list = threadTs ? lists.thread : lists.channel;
      list.container.scrollTop = list.container.scrollHeight;
    } catch (err) {
      showError(errorEl, `Not sent: ${err.message}`);
    } finally {
      input.removeAttribute("aria-busy");
    }
  }

  function wireComposer(form, input, errorEl, threadTs) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      send(input, errorEl, threadTs());
    });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
        ev.preventDefault();
        form.requestSubmit();
      }
    });
    input.addEventListener("input", () => {
      if (errorEl.textContent) errorEl.textContent = "";
    });
  }

  // ---------------------------------------------------------------- sessions

  let sessionsTimer = null;
  let sessionsLoading = false;

  async function loadSessions() {
    if (sessionsLoading) return;
    sessionsLoading = true;
    try {
      const sessions = await api("/api/sessions");
      renderSessions(sessions);
      els.sessionsStatus.textContent = `${sessions.length} session${sessions.length === 1 ? "" : "s"} · updated ${timeFmt.format(new Date())}`;
    } catch (err) {
      els.sessionsStatus.textContent = `Could not load the sessions: ${err.message}`;
    } finally {
      sessionsLoading = false;
    }
  }

  function stateBadge(s) {
    const v = s || "unknown";
    return h("span", { class: `state state-${v.replace(/[^a-z_]/g, "")}`, text: v.replace(/_/g, " ") });
  }

  function sessionLink(link) {
    if (typeof link !== "string" || !link) return h("span", { class: "muted", text: "–" });
    if (link.startsWith("/#/")) return h("a", { href: link.slice(1), text: "Open thread" });
    const href = safeHttpUrl(link);
    return href ? linkEl(href, "Open in Slack") : h("span", { class: "muted", text: "–" });
  }

  function renderSessions(sessions) {
    const now = Date.now();
    const rows = sessions.map((s) => {
      const turns = h("ol", { class: "turns" });
      for (const t of s.turns || []) {
        const wait = t.started_at ? t.started_at - t.created_at : t.finished_at ? null : now - t.created_at;
        const run = t.started_at ? (t.finished_at || now) - t.started_at : null;
        const running = !t.finished_at;
        const li = h(
          "li",
          { "data-task": t.task_id },
          h("span", { class: "turn-no", text: `Turn ${t.turn}` }),
          " ",
          stateBadge(t.state),
          h("span", { class: "timing", text: ` queued ${fmtDuration(wait)}${running && !t.started_at ? "…" : ""} · ran ${fmtDuration(run)}${running && t.started_at ? "…" : ""}` }),
          t.requester !== s.requester ? h("span", { class: "muted", text: ` · by ${personName(t.requester)}` }) : null,
          t.attempts > 1 ? h("span", { class: "muted", text: ` · ${t.attempts} attempts` }) : null,
        );
        if (t.error) li.append(h("div", { class: "turn-error", text: t.error }));
        turns.append(li);
      }
      // data-label names each cell where narrow screens show a row as a card.
      return h(
        "tr",
        { "data-session": s.id },
        h("td", { "data-label": "Started" }, timeEl(s.created_at)),
        h("td", { "data-label": "Entry point", text: s.entry_point }),
        h("td", { "data-label": "Requester", text: personName(s.requester) }),
        h("td", { "data-label": "Repository" }, s.repo ? h("code", { text: s.repo }) : h("span", { class: "muted", text: "none" })),
        h("td", { "data-label": "Backend" }, h("code", { text: s.backend })),
        h("td", { "data-label": "State" }, stateBadge(s.state)),
        h("td", { "data-label": "Turns" }, turns),
        h("td", { "data-label": "Thread" }, sessionLink(s.link)),
      );
    });
    if (!rows.length) {
      rows.push(h("tr", null, h("td", { colspan: "8", class: "empty", text: "No sessions yet. Mention @chime in a channel to start one." })));
    }
    els.sessionsBody.replaceChildren(...rows);
  }

  function scheduleSessions() {
    if (state.view !== "sessions") return;
    clearTimeout(sessionsTimer);
    sessionsTimer = setTimeout(loadSessions, 300);
  }

  // ---------------------------------------------------------------- digest

  async function loadDigest() {
    try {
      const digest = await api("/api/digest");
      // Shown as text: the digest's Markdown is never parsed into the page.
      els.digestText.textContent = digest.latest.text;
      els.digestNow.textContent = digest.this_week.text;
      els.digestStatus.textContent = `Weeks ${digest.latest.week} and ${digest.this_week.week} · updated ${timeFmt.format(new Date())}`;
    } catch (err) {
      els.digestStatus.textContent = `Could not load the digest: ${err.message}`;
    }
  }

  // ---------------------------------------------------------------- routing

  function firstChannel() {
    const list = [...state.channels.values()];
    return (list.find((c) => !c.is_dm) || list[0] || {}).id;
  }

  let sessionsPoll = null;

  async function route() {
    if (!state.workspace) return;
    const parts = location.hash.replace(/^#\/?/, "").split("/").map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return "";
      }
    });
    const [kind, a, b] = parts;
    els.digestView.hidden = kind !== "digest";
    if (kind === "digest") {
      clearInterval(sessionsPoll);
      state.view = "digest";
      els.channelView.hidden = true;
      els.threadPane.hidden = true;
      els.sessionsView.hidden = true;
      document.body.classList.remove("thread-open");
      document.body.classList.add("sessions-open");
      document.title = "Digest · Chime playground";
      markCurrentNav();
      await loadDigest();
      return;
    }
    if (kind === "sessions") {
      state.view = "sessions";
      els.channelView.hidden = true;
      els.threadPane.hidden = true;
      els.sessionsView.hidden = false;
      document.body.classList.remove("thread-open");
      document.body.classList.add("sessions-open");
      document.title = "Sessions · Chime playground";
      markCurrentNav();
      await loadSessions();
      clearInterval(sessionsPoll);
      sessionsPoll = setInterval(() => state.view === "sessions" && loadSessions(), 3000);
      return;
    }
    clearInterval(sessionsPoll);
    state.view = "channel";
    els.sessionsView.hidden = true;
    els.channelView.hidden = false;
    document.body.classList.remove("sessions-open");
    if (kind === "channel" && state.channels.has(a)) {
      closeThread();
      markCurrentNavSoon(a);
      await showChannel(a);
    } else if (kind === "thread" && state.channels.has(a) && b) {
      markCurrentNavSoon(a);
      const opening = showChannel(a);
      await openThread(a, b, { focus: openedByUser });
      await opening;
    } else {
      location.replace(`#/channel/${encodeURIComponent(firstChannel())}`);
    }
    openedByUser = false;
  }

  function markCurrentNavSoon(channel) {
    state.channel = channel;
    markCurrentNav();
  }

  // A thread opened by a click gets the keyboard focus in its composer; one opened by a link
  // from elsewhere (or on load) leaves focus where it is.
  let openedByUser = false;

  // ---------------------------------------------------------------- live stream

  let stream = null;
  let hadError = false;

  function setLive(kind, text) {
    els.live.dataset.state = kind;
    els.live.textContent = text;
  }

  function connect() {
    if (stream) stream.close();
    stream = new EventSource("/api/local/stream");
    stream.addEventListener("open", () => {
      setLive("open", "Live");
      if (hadError) resync(); // we may have missed messages while disconnected
      hadError = false;
    });
    stream.addEventListener("error", () => {
      hadError = true;
      setLive("reconnecting", "Reconnecting…");
    });
    stream.addEventListener("message", (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (data.kind === "message" && data.message) {
        onMessage(data.message, true);
        scheduleSessions();
      } else if (data.kind === "resync") {
        resync();
      } else {
        scheduleSessions();
      }
    });
  }

  async function resync() {
    if (state.view === "sessions") {
      loadSessions();
      return;
    }
    if (state.view === "digest") {
      loadDigest();
      return;
    }
    if (state.channel) {
      state.channelLoaded = null;
      await loadChannel(true);
    }
    if (state.thread && state.channel) {
      const root = state.thread;
      state.threadLoaded = null;
      state.thread = null;
      await openThread(state.channel, root, { fresh: true });
    }
  }

  // ---------------------------------------------------------------- start

  function wire() {
    window.addEventListener("hashchange", route);
    els.postAs.addEventListener("change", () => {
      state.me = els.postAs.value;
      try {
        localStorage.setItem("chime.postAs", state.me);
      } catch {
        // private mode: the choice lasts for this page only
      }
    });
    wireComposer(els.composer, els.composerInput, els.composerError, () => null);
    wireComposer(els.threadComposer, els.threadInput, els.threadError, () => state.thread);
    els.threadClose.addEventListener("click", () => leaveThread());
    els.threadPane.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        leaveThread();
      }
    });
    els.messages.addEventListener("click", (ev) => {
      const a = ev.target.closest && ev.target.closest("a.thread-link");
      if (a) openedByUser = true;
    });
    els.sessionsRefresh.addEventListener("click", loadSessions);
    els.digestRefresh.addEventListener("click", loadDigest);
  }

  function leaveThread() {
    const root = state.thread;
    location.hash = `#/channel/${encodeURIComponent(state.channel)}`;
    // Back to where the reader was: the thread link of the root message.
    setTimeout(() => {
      const node = root && lists.channel.nodes.get(root);
      const link = node && node.querySelector(".thread-link");
      (link || els.composerInput).focus();
    }, 0);
  }

  async function start() {
    wire();
    try {
      const ws = await api("/api/local/workspace");
      state.workspace = ws;
      for (const p of ws.people || []) state.people.set(p.id, p);
      for (const c of ws.channels || []) state.channels.set(c.id, c);
    } catch (err) {
      els.loadError.hidden = false;
      els.loadError.textContent =
        err.status === 401
          ? "This playground needs its access token: open it once as /?token=… (see Chime's log)."
          : `Could not load the workspace: ${err.message}`;
      setLive("closed", "Offline");
      return;
    }
    renderNav();
    renderPostAs();
    connect();
    await route();
  }

  window.chimePlayground = { showSuggestions };
  start();
})();
