// Parley web app: plain ES module, no build step. Uses the SDK at /sdk/parley.js.
//
// Message bodies, names, subjects and every other server string are put in the
// page with textContent only, never innerHTML: a body such as
// `<img src=x onerror=alert(1)>` shows as those characters.
//
// ---------------------------------------------------------------------------
// DOM hooks for browser tests (stable; change them only together with the tests)
//
// Screens: #app[data-screen="loading"|"auth"|"main"] and [data-pane="list"|"chat"|"directory"]
//   (the pane matters on narrow screens, where one pane shows at a time).
// Auth (#auth-view[data-mode="login"|"register"]):
//   login-form, login-username, login-password, login-submit, show-register,
//   register-form, register-username, register-display-name, register-password,
//   register-role-client, register-role-professional, register-submit, show-login,
//   auth-error (role=alert), auth-notice (e.g. "session expired").
//   (Each is both the element id and its data-testid.)
// Header: me-name, me-role, logout-button, reconnect-button,
//   connection-status [data-state="connecting|connected|reconnecting|polling|disconnected"]
//                     [data-quality="good|poor|offline"].
// Conversations: conversation-list; each [data-testid="conversation-item"]
//   [data-conversation-id][data-unread="N"] (a button) holds
//   [data-testid="presence"][data-online="true|false"], [data-testid="conversation-name"],
//   [data-testid="conversation-last"], [data-testid="unread-badge"] (only when N > 0).
//   conversation-empty; new-conversation-button (clients only).
// Directory (clients): directory-view, professional-list, each
//   [data-testid="professional-item"][data-user-id] (a button); new-conversation-form,
//   new-conversation-subject, new-conversation-body, new-conversation-submit,
//   new-conversation-cancel, directory-back.
// Chat: chat-view[data-conversation-id], chat-title, chat-subtitle,
//   chat-presence[data-online], back-button, load-older, message-list,
//   typing-indicator (hidden when nobody types), reply-preview, reply-preview-text,
//   cancel-reply, composer, message-input, send-button, call-audio-button,
//   call-video-button.
// Messages: each li[data-testid="message"] with
//   data-message-id (absent while pending), data-seq (absent while pending),
//   data-client-id (when the message has one), data-sender-id, data-own="true|false",
//   data-status = "pending" | "failed" | "sent" | "delivered" | "read" (own messages;
//   "received" for the peer's), data-deleted="true|false", data-edited="true|false",
//   data-grouped="true" when it continues the previous sender's group.
//   Inside: [data-testid="message-body"], [data-testid="message-quote"] (replies),
//   [data-testid="message-status"] (✓ delivered, ✓✓ read), [data-testid="message-edited"],
//   buttons [data-testid="reply-button"], [data-testid="edit-button"],
//   [data-testid="delete-button"] (own, not deleted), [data-testid="retry-button"],
//   [data-testid="discard-button"] (failed sends); while editing
//   [data-testid="edit-input"], [data-testid="edit-save"], [data-testid="edit-cancel"].
// Calls: call-panel[data-call-state="none|incoming|outgoing|active|elsewhere|ended"]
//   [data-call-id][data-media], call-title, call-status, call-accept, call-decline,
//   call-end, remote-video, local-video.
// toast: transient notices and errors.
//
// window.parleyApp = { parley, state } is exposed for tests and debugging.
//
// ICE servers for calls: none by default (works on a LAN / same host); set
// localStorage["parley:iceServers"] to a JSON RTCIceServer array to add STUN/TURN.
// ---------------------------------------------------------------------------

import { Parley } from "./sdk/parley.js";

const parley = new Parley();

const S = {
  me: null,
  users: new Map(), // id → user
  conversations: new Map(), // id → conversation
  messages: new Map(), // conversation id → { bySeq: Map<seq, message>, hasMore, loading }
  current: null, // open conversation id
  pane: "list",
  typing: new Map(), // conversation id → { userId, until }
  replyTo: null, // message being replied to
  editing: null, // id of the message being edited
  directory: [],
  newConvTo: null, // professional chosen in the directory
  call: null,
  loaded: false,
  queue: [], // events that arrived before the first load
  sessionUnsubs: [],
  config: { callTimeoutMs: 30000, maxBodyChars: 4000 },
};

window.parleyApp = { parley, state: S };

// ---------------------------------------------------------------------------
// DOM helpers

const $ = (id) => document.getElementById(id);

/** Creates an element; string/number children become text nodes (never markup). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k in el && !k.startsWith("data-") && !k.startsWith("aria-") && k !== "role") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(el, on) {
  if (typeof el === "string") el = $(el);
  if (el) el.hidden = !on;
}

function setText(id, text) {
  const el = $(id);
  if (el) el.textContent = text == null ? "" : String(text);
}

// Stroke icons (Feather-style paths), built with DOM calls like everything else.
const ICONS = {
  reply: ["M9 14 4 9l5-5", "M4 9h10a6 6 0 0 1 6 6v3"],
  edit: ["M12 20h9", "M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z"],
  trash: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6"],
};

function icon(name) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 24 24", width: "16", height: "16", fill: "none", stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false" })) svg.setAttribute(k, v);
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

let toastTimer = null;
function toast(msg, ms = 4000) {
  const el = $("toast");
  el.textContent = msg;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), ms);
}

function errText(err) {
  if (!err) return "Something went wrong.";
  if (err.code === "network_error") return "Cannot reach the server. Check your connection.";
  return err.message || String(err);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

function shortTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

function fullTime(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

// ---------------------------------------------------------------------------
// Users and conversations

function rememberUser(u) {
  if (!u || !u.id) return null;
  const prev = S.users.get(u.id);
  const merged = prev ? { ...prev, ...u } : { ...u };
  S.users.set(u.id, merged);
  return merged;
}

function userName(id) {
  if (id == null) return "System";
  if (S.me && id === S.me.id) return "You";
  const u = S.users.get(id);
  return u ? u.display_name || u.username : "Someone";
}

function peerId(conv) {
  if (!conv || !S.me) return null;
  return conv.client && conv.client.id === S.me.id ? conv.professional && conv.professional.id : conv.client && conv.client.id;
}

function peer(conv) {
  return S.users.get(peerId(conv)) || {};
}

function upsertConversation(conv) {
  if (!conv || !conv.id) return null;
  rememberUser(conv.client);
  rememberUser(conv.professional);
  const prev = S.conversations.get(conv.id);
  const next = { ...(prev || {}), ...conv };
  if (prev) {
    // Read markers only move forward; a late snapshot must not move them back.
    for (const k of ["last_read_seq", "peer_last_read_seq", "peer_delivered_seq"]) next[k] = Math.max(prev[k] || 0, conv[k] || 0);
    if (prev.last_message && conv.last_message && prev.last_message.seq > conv.last_message.seq) next.last_message = prev.last_message;
  }
  S.conversations.set(conv.id, next);
  return next;
}

function activityTime(conv) {
  const t = conv.last_message ? conv.last_message.created_at : conv.created_at;
  return Date.parse(t) || 0;
}

function sortedConversations() {
  return [...S.conversations.values()].sort((a, b) => activityTime(b) - activityTime(a));
}

function messageStore(convId, create = false) {
  let st = S.messages.get(convId);
  if (!st && create) S.messages.set(convId, (st = { bySeq: new Map(), hasMore: false, loading: false }));
  return st;
}

/** The later of two versions of one message (edits and deletes only move forward). */
function newer(a, b) {
  if (!a) return b;
  if (!b) return a;
  if (a.deleted !== b.deleted) return a.deleted ? a : b;
  return (Date.parse(b.edited_at) || 0) >= (Date.parse(a.edited_at) || 0) ? b : a;
}

function storeMessage(m) {
  const st = messageStore(m.conversation_id);
  if (!st) return;
  st.bySeq.set(m.seq, newer(st.bySeq.get(m.seq), m));
}

function recountUnread(conv) {
  const st = messageStore(conv.id);
  if (!st || !S.me) return;
  let n = 0;
  for (const m of st.bySeq.values()) if (m.sender_id !== S.me.id && !m.deleted && m.seq > (conv.last_read_seq || 0)) n++;
  // Only trust the count when the loaded messages reach back past the marker.
  const minSeq = Math.min(...st.bySeq.keys());
  if (!st.hasMore || minSeq <= (conv.last_read_seq || 0) + 1) conv.unread_count = n;
}

// ---------------------------------------------------------------------------
// Screens

function setScreen(name) {
  $("app").dataset.screen = name;
  show("loading-view", name === "loading");
  show("auth-view", name === "auth");
  show("main-view", name === "main");
}

function setPane(name) {
  S.pane = name;
  $("app").dataset.pane = name;
  show("chat-view", name === "chat" && !!S.current);
  show("directory-view", name === "directory");
  show("empty-view", name === "list" || (name === "chat" && !S.current));
}

function showAuth(notice) {
  setScreen("auth");
  setAuthMode("login");
  show("auth-error", false);
  if (notice) {
    setText("auth-notice", notice);
    show("auth-notice", true);
  } else show("auth-notice", false);
  document.title = "Parley";
  $("login-username").focus();
  // With registration closed the app Parley is part of signs users in:
  // no register form, and a word on where to sign in instead.
  parley.getConfig().then((c) => {
    const closed = ((c && c.raw) || {}).registration === "closed";
    show("register-switch", !closed);
    show("registration-closed", closed);
    if (closed && $("auth-view").dataset.mode === "register") setAuthMode("login");
  }, () => {});
}

function setAuthMode(mode) {
  $("auth-view").dataset.mode = mode;
  show("login-form", mode === "login");
  show("register-form", mode === "register");
  show("auth-error", false);
}

function authError(msg) {
  setText("auth-error", msg);
  show("auth-error", true);
}

// ---------------------------------------------------------------------------
// Session

async function boot() {
  setScreen("loading");
  show("loading-error", false);
  show("loading-retry", false);
  try {
    S.me = await parley.me();
  } catch (err) {
    if (err.status === 401) {
      showAuth();
      return;
    }
    setText("loading-error", errText(err));
    show("loading-error", true);
    show("loading-retry", true);
    return;
  }
  startSession();
}

function startSession() {
  rememberUser(S.me);
  S.loaded = false;
  S.queue = [];
  setScreen("main");
  setPane(S.current ? "chat" : "list");
  setText("me-name", S.me.display_name || S.me.username);
  setText("me-role", S.me.role);
  show("new-conversation-button", S.me.role === "client");
  renderStatus();
  renderConversations();

  let started = false;
  let poll = null;
  const load = () => {
    if (started) return;
    started = true;
    clearInterval(poll);
    loadAll().catch((err) => toast(errText(err)));
  };
  // Load the snapshot only once the SDK has a position in the event log (ready,
  // a resume point, or a head taken by poll): everything after that position
  // is then delivered, so no event can fall between the snapshot and the
  // stream. Events that arrive before the snapshot wait in S.queue.
  const tryLoad = () => {
    if (parley.lastEventId != null || parley.state === "connected") load();
  };
  S.sessionUnsubs.push(parley.on("ready", load), parley.onState(tryLoad));
  poll = setInterval(tryLoad, 250);
  const giveUp = setTimeout(load, 15000); // no position at all: show what there is
  S.sessionUnsubs.push(() => clearInterval(poll), () => clearTimeout(giveUp));
  parley.connect();
  tryLoad();
  parley.getConfig().then((c) => {
    const raw = (c && c.raw) || {};
    if (raw.call_timeout_ms > 0) S.config.callTimeoutMs = raw.call_timeout_ms;
    if (raw.max_body_chars > 0) S.config.maxBodyChars = raw.max_body_chars;
    $("message-input").maxLength = S.config.maxBodyChars;
    $("new-conversation-body").maxLength = S.config.maxBodyChars;
  });
}

async function loadAll() {
  const list = await parley.conversations();
  S.conversations.clear();
  for (const c of list) upsertConversation(c);
  // Messages cached from before may have missed events while reloading.
  S.messages.clear();
  S.loaded = true;
  const queued = S.queue.splice(0);
  for (const ev of queued) apply(ev);
  renderConversations();
  if (S.current) {
    if (S.conversations.has(S.current)) await openConversation(S.current, { keepPane: true });
    else closeConversation();
  }
}

function endSession(notice) {
  for (const off of S.sessionUnsubs.splice(0)) off();
  teardownCall();
  S.me = null;
  S.conversations.clear();
  S.messages.clear();
  S.users.clear();
  S.current = null;
  S.replyTo = null;
  S.editing = null;
  S.typing.clear();
  S.loaded = false;
  S.queue = [];
  $("message-list").replaceChildren();
  $("conversation-list").replaceChildren();
  $("message-input").value = "";
  setPane("list");
  showAuth(notice);
}

async function logout() {
  await parley.logout();
  tabs.post({ t: "logout" });
  endSession();
}

// Logging in or out in one tab does the same in the others at once (the
// cookie is shared; without this they would notice only on their next request).
const tabs = (() => {
  const ch = typeof BroadcastChannel === "function" ? new BroadcastChannel("parley-app") : null;
  if (ch) {
    ch.onmessage = async (m) => {
      const t = m.data && m.data.t;
      if (t === "login" && !S.me && $("app").dataset.screen === "auth") boot();
      else if (t === "logout" && S.me) {
        await parley.logout({ remote: false });
        endSession();
      }
    };
  }
  return { post: (msg) => ch && ch.postMessage(msg) };
})();

// ---------------------------------------------------------------------------
// Events

parley.on("*", (data, ev) => {
  if (!S.me) return;
  if (ev.type === "session.expired") {
    apply(ev);
    return;
  }
  if (!S.loaded) {
    if (ev.type !== "ready") S.queue.push(ev);
    return;
  }
  apply(ev);
});

parley.onState(() => renderStatus());
parley.onQuality(() => renderStatus());
parley.onOutbox((items, change) => {
  // The HTTP answer can come before the message.created event: show the stored
  // message at once so the bubble does not blink out in between.
  if (change && change.type === "sent" && change.message && change.message.conversation_id && S.loaded) onMessage(change.message, true);
  else if (S.current) renderMessages();
});

function apply(ev) {
  const d = ev.data;
  switch (ev.type) {
    case "reset":
      loadAll().catch((err) => toast(errText(err)));
      break;
    case "session.expired":
      sessionExpired(d);
      break;
    case "conversation.created":
      upsertConversation(d);
      renderConversations();
      break;
    case "message.created":
    case "message.updated":
    case "message.deleted":
      onMessage(d, ev.type === "message.created");
      break;
    case "receipt":
      onReceipt(d);
      break;
    case "typing":
      onTyping(d);
      break;
    case "presence":
      onPresence(d);
      break;
    case "call.ringing":
    case "call.accepted":
    case "call.declined":
    case "call.ended":
    case "call.missed":
      onCallEvent(ev.type, d);
      break;
    case "call.signal":
      onSignal(d);
      break;
    default:
      break;
  }
}

let expiring = false;
async function sessionExpired(d) {
  if (expiring || !S.me) return;
  expiring = true;
  try {
    // Drops the local outbox and resume point; the session is gone already.
    await parley.logout({ remote: false });
  } finally {
    expiring = false;
  }
  endSession(d && (d.reason === "idle" || d.idle) ? "You were logged out after a period of inactivity." : "Your session has ended. Please log in again.");
}

async function onMessage(m, created) {
  if (!m || !m.conversation_id) return;
  let conv = S.conversations.get(m.conversation_id);
  if (!conv) {
    try {
      conv = upsertConversation(await parley.getConversation(m.conversation_id));
    } catch {
      return;
    }
    if (!conv) return;
  }
  const prevLast = conv.last_message;
  storeMessage(m);
  if (!prevLast || m.seq >= prevLast.seq) conv.last_message = newer(prevLast && prevLast.seq === m.seq ? prevLast : null, m);
  const fromPeer = S.me && m.sender_id !== S.me.id;
  if (fromPeer) {
    const st = S.typing.get(conv.id);
    if (st && st.userId === m.sender_id) S.typing.delete(conv.id);
    const isNew = created && (!prevLast || m.seq > prevLast.seq) && m.seq > (conv.last_read_seq || 0);
    if (isNew) conv.unread_count = (conv.unread_count || 0) + 1;
    if (!created && m.deleted && m.seq > (conv.last_read_seq || 0)) recountUnread(conv);
  }
  renderConversations();
  if (S.current === conv.id) {
    renderMessages({ stick: true });
    renderTyping();
    if (fromPeer) scheduleMarkRead();
  }
}

function onReceipt(r) {
  const conv = S.conversations.get(r.conversation_id);
  if (!conv || !S.me) return;
  if (r.user_id !== S.me.id) {
    if (r.kind === "read") conv.peer_last_read_seq = Math.max(conv.peer_last_read_seq || 0, r.up_to_seq);
    // Read implies delivered.
    conv.peer_delivered_seq = Math.max(conv.peer_delivered_seq || 0, r.up_to_seq);
    if (S.current === conv.id) renderMessages();
    return;
  }
  if (r.kind === "read" && r.up_to_seq > (conv.last_read_seq || 0)) {
    // Read in another tab or device.
    conv.last_read_seq = r.up_to_seq;
    if (conv.last_message && r.up_to_seq >= conv.last_message.seq) conv.unread_count = 0;
    else recountUnread(conv);
    renderConversations();
  }
}

const typingTimers = new Map();
function onTyping(t) {
  if (!S.me || t.user_id === S.me.id) return;
  clearTimeout(typingTimers.get(t.conversation_id));
  if (t.state === "start") {
    S.typing.set(t.conversation_id, { userId: t.user_id, until: Date.now() + 6000 });
    // A start not renewed within 6 s is stale (SPEC §4).
    typingTimers.set(
      t.conversation_id,
      setTimeout(() => {
        S.typing.delete(t.conversation_id);
        renderTyping();
        renderConversations();
      }, 6000),
    );
  } else S.typing.delete(t.conversation_id);
  renderTyping();
  renderConversations();
}

function onPresence(p) {
  const u = S.users.get(p.user_id);
  if (!u) return;
  u.online = !!p.online;
  if (p.last_seen !== undefined) u.last_seen = p.last_seen;
  renderConversations();
  renderChatHeader();
  if (S.pane === "directory") renderDirectory();
}

// ---------------------------------------------------------------------------
// Rendering: status and conversation list

const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  polling: "Connected (polling)",
  disconnected: "Offline",
};

function renderStatus() {
  const el = $("connection-status");
  const state = parley.state;
  const quality = parley.quality;
  el.dataset.state = state;
  el.dataset.quality = quality;
  let text = STATE_TEXT[state] || state;
  if (state === "connected" && quality === "poor") text = "Connected (slow)";
  setText("connection-status-text", text);
  el.title = `Connection: ${state}, quality: ${quality}`;
}

function renderConversations() {
  const list = $("conversation-list");
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("[data-testid=conversation-item]");
  const focusedId = focused && focused.dataset.conversationId;
  const convs = sortedConversations();
  const items = convs.map((c) => {
    const p = peer(c);
    const typing = S.typing.get(c.id);
    const unread = c.unread_count || 0;
    const last = c.last_message;
    let preview = "";
    if (typing) preview = "typing…";
    else if (last) preview = (last.sender_id === S.me.id ? "You: " : "") + (last.deleted ? "Message deleted" : last.body);
    const name = p.display_name || p.username || "Unknown";
    const btn = h(
      "button",
      {
        type: "button",
        class: "conversation-item" + (c.id === S.current ? " active" : "") + (unread ? " unread" : ""),
        "data-testid": "conversation-item",
        "data-conversation-id": c.id,
        "data-unread": unread,
        "aria-current": c.id === S.current ? "true" : null,
        "aria-label": `${name}${c.subject ? `, ${c.subject}` : ""}${unread ? `, ${unread} unread` : ""}`,
        onclick: () => openConversation(c.id),
      },
      h("span", { class: "presence", "data-testid": "presence", "data-online": String(!!p.online), title: p.online ? "Online" : "Offline" }),
      h(
        "span",
        { class: "conv-main" },
        h("span", { class: "conv-top" }, h("span", { class: "conv-name", "data-testid": "conversation-name", text: name }), h("time", { class: "conv-time", text: shortTime(last ? last.created_at : c.created_at) })),
        c.subject ? h("span", { class: "conv-subject", "data-testid": "conversation-subject", text: c.subject }) : null,
        h(
          "span",
          { class: "conv-bottom" },
          h("span", { class: "conv-last" + (typing ? " typing" : ""), "data-testid": "conversation-last", text: preview }),
          unread ? h("span", { class: "badge", "data-testid": "unread-badge", "aria-hidden": "true", text: unread > 99 ? "99+" : String(unread) }) : null,
        ),
      ),
    );
    return h("li", {}, btn);
  });
  list.replaceChildren(...items);
  show("conversation-empty", convs.length === 0 && S.loaded);
  if (focusedId) {
    const again = list.querySelector(`[data-conversation-id="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
  const total = convs.reduce((n, c) => n + (c.unread_count || 0), 0);
  document.title = total ? `(${total}) Parley` : "Parley";
}

// ---------------------------------------------------------------------------
// Chat

async function openConversation(id, { keepPane = false } = {}) {
  const switching = S.current !== id;
  if (switching && S.current) parley.stopTyping(S.current);
  S.current = id;
  if (switching) {
    S.replyTo = null;
    S.editing = null;
    $("message-input").value = "";
    $("message-list").replaceChildren();
    renderReply();
  }
  if (!keepPane || S.pane !== "directory") setPane("chat");
  $("chat-view").dataset.conversationId = id;
  renderConversations();
  renderChatHeader();
  renderTyping();
  let st = messageStore(id);
  if (!st) {
    st = messageStore(id, true);
    st.loading = true;
    renderMessages();
    try {
      const r = await parley.messages(id, { limit: 50 });
      for (const m of r.messages || []) storeMessage(m);
      st.hasMore = !!r.has_more;
    } catch (err) {
      S.messages.delete(id);
      toast(errText(err));
      return;
    } finally {
      st.loading = false;
    }
  }
  if (S.current !== id) return;
  renderMessages({ scrollBottom: true });
  scheduleMarkRead();
  if (!keepPane && window.matchMedia("(min-width: 721px)").matches) $("message-input").focus();
}

function closeConversation() {
  if (S.current) parley.stopTyping(S.current);
  S.current = null;
  S.replyTo = null;
  S.editing = null;
  delete $("chat-view").dataset.conversationId;
  setPane("list");
  renderConversations();
}

async function loadOlder() {
  const id = S.current;
  const st = messageStore(id);
  if (!st || !st.hasMore || st.loading) return;
  const minSeq = Math.min(...st.bySeq.keys());
  st.loading = true;
  const scroller = $("message-scroller");
  const before = scroller.scrollHeight - scroller.scrollTop;
  try {
    const r = await parley.messages(id, { before_seq: minSeq, limit: 50 });
    for (const m of r.messages || []) storeMessage(m);
    st.hasMore = !!r.has_more;
  } catch (err) {
    toast(errText(err));
  } finally {
    st.loading = false;
  }
  if (S.current !== id) return;
  renderMessages();
  scroller.scrollTop = scroller.scrollHeight - before;
}

function renderChatHeader() {
  const conv = S.conversations.get(S.current);
  if (!conv) return;
  const p = peer(conv);
  setText("chat-title", p.display_name || p.username || "Conversation");
  let sub = conv.subject || "";
  const seen = p.online ? "online" : p.last_seen ? `last seen ${shortTime(p.last_seen)}` : "offline";
  sub = sub ? `${sub} · ${seen}` : seen;
  setText("chat-subtitle", sub);
  $("chat-presence").dataset.online = String(!!p.online);
  $("chat-presence").title = p.online ? "Online" : "Offline";
}

function renderTyping() {
  const st = S.current && S.typing.get(S.current);
  const el = $("typing-indicator");
  if (st && st.until > Date.now()) {
    el.textContent = `${userName(st.userId)} is typing…`;
    el.hidden = false;
  } else {
    el.textContent = "";
    el.hidden = true;
  }
}

function renderReply() {
  const r = S.replyTo;
  show("reply-preview", !!r);
  if (r) {
    setText("reply-preview-author", userName(r.sender_id));
    setText("reply-preview-text", preview(r.body, 140));
  }
}

function preview(s, n) {
  const chars = [...String(s || "")];
  return chars.length > n ? chars.slice(0, n).join("") + "…" : chars.join("");
}

const GROUP_MS = 5 * 60 * 1000;

/** The list shown in the chat: loaded messages by seq, then this conversation's outbox. */
function chatItems() {
  const id = S.current;
  const st = messageStore(id);
  const msgs = st ? [...st.bySeq.values()].sort((a, b) => a.seq - b.seq) : [];
  const known = new Set(msgs.map((m) => m.client_id).filter(Boolean));
  const pending = parley.outbox.filter((it) => it.conversation_id === id && !known.has(it.client_id));
  return { msgs, pending };
}

function ownStatus(conv, m) {
  if (m.seq <= (conv.peer_last_read_seq || 0)) return "read";
  if (m.seq <= (conv.peer_delivered_seq || 0)) return "delivered";
  return "sent";
}

function renderMessages({ stick = false, scrollBottom = false } = {}) {
  const conv = S.conversations.get(S.current);
  const list = $("message-list");
  if (!conv) {
    list.replaceChildren();
    return;
  }
  const scroller = $("message-scroller");
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  const st = messageStore(conv.id);
  show("load-older", !!(st && st.hasMore));
  const { msgs, pending } = chatItems();

  const views = [];
  let prev = null;
  for (const m of msgs) {
    const own = m.sender_id === S.me.id;
    const grouped = !!prev && prev.sender_id === m.sender_id && !prev.deleted && Date.parse(m.created_at) - Date.parse(prev.created_at) < GROUP_MS;
    views.push({
      key: `m:${m.id}`,
      own,
      grouped,
      status: own ? ownStatus(conv, m) : "received",
      msg: m,
      editing: S.editing === m.id,
    });
    prev = m;
  }
  for (const it of pending) {
    const grouped = !!prev && prev.sender_id === S.me.id;
    views.push({
      key: `p:${it.client_id}`,
      own: true,
      grouped,
      status: it.status === "failed" ? "failed" : "pending",
      msg: {
        id: null,
        seq: null,
        client_id: it.client_id,
        sender_id: S.me.id,
        body: it.body,
        created_at: new Date(it.created_at).toISOString(),
        reply_to: it.reply_to_id ? replyRef(it.reply_to_id) : null,
        deleted: false,
      },
      error: it.error,
    });
    prev = { sender_id: S.me.id };
  }

  // Keyed update: unchanged messages keep their element (and any focus or
  // edit box inside it); changed ones are rebuilt; order is fixed up in place.
  const existing = new Map();
  for (const el of list.children) existing.set(el.dataset.key, el);
  let cursor = list.firstElementChild;
  for (const v of views) {
    const sig = signature(v);
    let el = existing.get(v.key);
    if (el && el.dataset.sig !== sig) {
      const fresh = messageElement(v, sig);
      el.replaceWith(fresh);
      if (cursor === el) cursor = fresh;
      el = fresh;
    } else if (!el) {
      el = messageElement(v, sig);
    }
    existing.delete(v.key);
    if (el === cursor) cursor = cursor.nextElementSibling;
    else list.insertBefore(el, cursor);
  }
  for (const el of existing.values()) el.remove();

  if (scrollBottom || (stick && nearBottom) || (!stick && nearBottom)) scroller.scrollTop = scroller.scrollHeight;
}

function replyRef(id) {
  for (const st of S.messages.values()) {
    for (const m of st.bySeq.values()) if (m.id === id) return { id, sender_id: m.sender_id, preview: preview(m.body, 140) };
  }
  return { id, sender_id: null, preview: "" };
}

function signature(v) {
  const m = v.msg;
  return JSON.stringify([v.key, v.own, v.grouped, v.status, m.body, m.deleted, m.edited_at || null, m.reply_to ? m.reply_to.preview : null, v.editing || false, v.error || null, m.seq]);
}

function messageElement(v, sig) {
  const m = v.msg;
  const own = v.own;
  const attrs = {
    class: `message${own ? " own" : " theirs"}${m.kind === "system" ? " system" : ""}${v.grouped ? " grouped" : ""}${m.deleted ? " deleted" : ""} status-${v.status}`,
    "data-testid": "message",
    "data-kind": m.kind || "user",
    "data-key": v.key,
    "data-sig": sig,
    "data-sender-id": m.sender_id,
    "data-own": String(own),
    "data-status": v.status,
    "data-deleted": String(!!m.deleted),
    "data-edited": String(!!m.edited_at),
    "data-grouped": v.grouped ? "true" : null,
    "data-message-id": m.id || null,
    "data-seq": m.seq != null ? String(m.seq) : null,
    "data-client-id": m.client_id || null,
  };
  const li = h("li", attrs);
  const bubble = h("div", { class: "bubble" });
  if (!own && !v.grouped) bubble.append(h("div", { class: "sender", text: userName(m.sender_id) }));
  if (m.reply_to && !m.deleted) {
    const q = h(
      "button",
      {
        type: "button",
        class: "quote",
        "data-testid": "message-quote",
        "data-reply-to-id": m.reply_to.id,
        "aria-label": `Reply to ${userName(m.reply_to.sender_id)}: ${m.reply_to.preview}`,
        onclick: () => jumpTo(m.reply_to.id),
      },
      h("span", { class: "quote-author", text: m.reply_to.sender_id ? userName(m.reply_to.sender_id) : "" }),
      h("span", { class: "quote-text", text: m.reply_to.preview || "" }),
    );
    bubble.append(q);
  }
  if (v.editing) {
    const input = h("textarea", { class: "edit-input", "data-testid": "edit-input", "aria-label": "Edit message", rows: 2 });
    input.value = m.body;
    input.maxLength = S.config.maxBodyChars;
    const form = h(
      "form",
      { class: "edit-form", onsubmit: (e) => (e.preventDefault(), saveEdit(m, input.value)) },
      input,
      h("div", { class: "row" }, h("button", { type: "submit", class: "small primary", "data-testid": "edit-save", text: "Save" }), h("button", { type: "button", class: "small", "data-testid": "edit-cancel", text: "Cancel", onclick: cancelEdit })),
    );
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") cancelEdit();
      else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        saveEdit(m, input.value);
      }
    });
    bubble.append(form);
    queueMicrotask(() => {
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    });
  } else {
    bubble.append(h("div", { class: "body", "data-testid": "message-body", text: m.deleted ? "Message deleted" : m.body }));
  }
  const meta = h("div", { class: "meta" });
  meta.append(h("time", { "data-testid": "message-time", datetime: m.created_at, title: fullTime(m.created_at), text: shortTime(m.created_at) }));
  if (m.edited_at && !m.deleted) meta.append(h("span", { class: "edited", "data-testid": "message-edited", title: fullTime(m.edited_at), text: "edited" }));
  if (own) {
    const marks = { pending: "…", failed: "!", sent: "", delivered: "✓", read: "✓✓" };
    const labels = { pending: "Sending", failed: "Not sent", sent: "Sent", delivered: "Delivered", read: "Read" };
    meta.append(h("span", { class: `status-mark ${v.status}`, "data-testid": "message-status", "data-status": v.status, title: labels[v.status], "aria-label": labels[v.status], text: marks[v.status] }));
  }
  bubble.append(meta);
  if (v.status === "failed") {
    bubble.append(
      h(
        "div",
        { class: "failed-note", role: "alert" },
        h("span", { text: v.error ? `Not sent: ${v.error}` : "Not sent" }),
        h("button", { type: "button", class: "small", "data-testid": "retry-button", text: "Retry", onclick: () => parley.retry(m.client_id).catch(() => {}) }),
        h("button", { type: "button", class: "small", "data-testid": "discard-button", text: "Discard", onclick: () => parley.discard(m.client_id) }),
      ),
    );
  }
  if (m.id && !m.deleted && !v.editing) {
    const actions = h("div", { class: "actions" });
    actions.append(h("button", { type: "button", class: "icon small", "data-testid": "reply-button", "aria-label": "Reply", title: "Reply", onclick: () => startReply(m) }, icon("reply")));
    if (own) {
      actions.append(h("button", { type: "button", class: "icon small", "data-testid": "edit-button", "aria-label": "Edit", title: "Edit", onclick: () => startEdit(m) }, icon("edit")));
      actions.append(h("button", { type: "button", class: "icon small", "data-testid": "delete-button", "aria-label": "Delete", title: "Delete", onclick: () => deleteMessage(m) }, icon("trash")));
    }
    bubble.append(actions);
  }
  li.append(bubble);
  return li;
}

function jumpTo(messageId) {
  const el = $("message-list").querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
  if (!el) return;
  el.scrollIntoView({ block: "center", behavior: "smooth" });
  el.classList.add("highlight");
  setTimeout(() => el.classList.remove("highlight"), 1500);
}

function startReply(m) {
  S.replyTo = m;
  renderReply();
  $("message-input").focus();
}

function cancelReply() {
  S.replyTo = null;
  renderReply();
}

function startEdit(m) {
  S.editing = m.id;
  renderMessages();
}

function cancelEdit() {
  S.editing = null;
  renderMessages();
  $("message-input").focus();
}

async function saveEdit(m, body) {
  if (!body.trim()) {
    toast("A message cannot be empty. Use delete instead.");
    return;
  }
  if (body === m.body) {
    cancelEdit();
    return;
  }
  try {
    const updated = await parley.editMessage(m.id, body);
    S.editing = null;
    onMessage(updated, false);
    $("message-input").focus();
  } catch (err) {
    toast(errText(err));
  }
}

async function deleteMessage(m) {
  try {
    const tomb = await parley.deleteMessage(m.id);
    onMessage(tomb, false);
  } catch (err) {
    toast(errText(err));
  }
}

function sendCurrent() {
  const input = $("message-input");
  const body = input.value;
  const id = S.current;
  if (!id || !body.trim()) return;
  const reply = S.replyTo;
  input.value = "";
  autosize(input);
  S.replyTo = null;
  renderReply();
  parley.send(id, body, { replyToId: reply ? reply.id : undefined }).catch(() => {
    /* shown as a failed message with Retry */
  });
  renderMessages({ scrollBottom: true });
}

function autosize(ta) {
  ta.style.height = "auto";
  ta.style.height = `${Math.min(ta.scrollHeight + 2, 160)}px`;
  ta.style.overflowY = ta.scrollHeight > 160 ? "auto" : "hidden";
}

let markTimer = null;
function scheduleMarkRead() {
  clearTimeout(markTimer);
  markTimer = setTimeout(markRead, 150);
}

function markRead() {
  const conv = S.conversations.get(S.current);
  if (!conv || document.visibilityState !== "visible" || S.pane !== "chat") return;
  const st = messageStore(conv.id);
  let upTo = conv.last_message ? conv.last_message.seq : 0;
  if (st && st.bySeq.size) upTo = Math.max(upTo, ...st.bySeq.keys());
  if (!upTo || upTo <= (conv.last_read_seq || 0)) {
    if (conv.unread_count) {
      conv.unread_count = 0;
      renderConversations();
    }
    return;
  }
  conv.last_read_seq = upTo;
  conv.unread_count = 0;
  renderConversations();
  sendRead(conv.id, upTo);
}

/**
 * Posts a read marker. The local marker has moved already, so nothing would
 * send this one again: a transient failure (network, 408, 429, 5xx) is retried
 * with backoff while no newer marker has been tried (markers only move forward
 * on the server, so a retry is harmless).
 */
function sendRead(convId, upTo, attempt = 0) {
  parley.markRead(convId, upTo).catch((err) => {
    const s = (err && err.status) || 0;
    if (!(s === 0 || s === 408 || s === 429 || s >= 500) || attempt >= 10) return;
    setTimeout(() => {
      const c = S.conversations.get(convId);
      if (S.me && c && c.last_read_seq === upTo) sendRead(convId, upTo, attempt + 1);
    }, Math.min(30000, 1000 * 2 ** attempt));
  });
}

// ---------------------------------------------------------------------------
// Directory (clients)

async function openDirectory() {
  setPane("directory");
  S.newConvTo = null;
  show("new-conversation-form", false);
  show("professional-list", true);
  try {
    S.directory = await parley.users("professional");
    for (const u of S.directory) rememberUser(u);
  } catch (err) {
    toast(errText(err));
  }
  renderDirectory();
  const first = $("professional-list").querySelector("button");
  if (first) first.focus();
}

function renderDirectory() {
  const items = S.directory.map((u0) => {
    const u = S.users.get(u0.id) || u0;
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "professional-item", "data-testid": "professional-item", "data-user-id": u.id, onclick: () => chooseProfessional(u) },
        h("span", { class: "presence", "data-testid": "presence", "data-online": String(!!u.online) }),
        h("span", { class: "pro-name", text: u.display_name || u.username }),
        h("span", { class: "pro-username", text: u.username ? `@${u.username}` : "" }),
      ),
    );
  });
  $("professional-list").replaceChildren(...items);
  show("directory-empty", S.directory.length === 0);
}

function chooseProfessional(u) {
  S.newConvTo = u;
  setText("new-conversation-to", u.display_name || u.username);
  show("new-conversation-error", false);
  show("new-conversation-form", true);
  $("new-conversation-body").focus();
}

async function submitNewConversation(e) {
  e.preventDefault();
  const u = S.newConvTo;
  const body = $("new-conversation-body").value;
  if (!u) return;
  if (!body.trim()) {
    setText("new-conversation-error", "Write a first message.");
    show("new-conversation-error", true);
    return;
  }
  const btn = $("new-conversation-submit");
  btn.disabled = true;
  try {
    const conv = await parley.createConversation({ professional_id: u.id, subject: $("new-conversation-subject").value.trim(), body });
    upsertConversation(conv);
    $("new-conversation-subject").value = "";
    $("new-conversation-body").value = "";
    show("new-conversation-form", false);
    await openConversation(conv.id);
  } catch (err) {
    setText("new-conversation-error", errText(err));
    show("new-conversation-error", true);
  } finally {
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// Calls: signalling over the API, media over WebRTC where the browser has it.

const rtcAvailable = () => typeof RTCPeerConnection === "function" && !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);

function iceServers() {
  try {
    const v = JSON.parse(localStorage.getItem("parley:iceServers") || "[]");
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

function callPeerName(call) {
  return userName(call.caller_id === S.me.id ? call.callee_id : call.caller_id);
}

function renderCall() {
  const c = S.call;
  const panel = $("call-panel");
  if (!c) {
    panel.hidden = true;
    panel.dataset.callState = "none";
    panel.dataset.callId = "";
    panel.dataset.media = "";
    return;
  }
  panel.hidden = false;
  panel.dataset.callState = c.view;
  panel.dataset.callId = c.call ? c.call.id : "";
  panel.dataset.media = c.call ? c.call.media : c.media || "";
  const who = c.call ? callPeerName(c.call) : "";
  const kind = (c.call ? c.call.media : c.media) === "video" ? "Video call" : "Audio call";
  const titles = {
    incoming: `${kind} from ${who}`,
    outgoing: `Calling ${who}…`,
    active: `${kind} with ${who}`,
    elsewhere: `${kind} with ${who}`,
    ended: kind,
  };
  setText("call-title", titles[c.view] || kind);
  setText("call-status", c.status || "");
  show("call-accept", c.view === "incoming");
  show("call-decline", c.view === "incoming");
  show("call-end", c.view === "outgoing" || c.view === "active" || c.view === "elsewhere");
  // Audio-only calls play through the (hidden) video element.
  show("call-videos", c.view === "active" && !!c.pc && c.call && c.call.media === "video");
  $("call-videos").dataset.media = c.call ? c.call.media : "";
}

function callStale(call) {
  const t = Date.parse(call.created_at);
  return Number.isFinite(t) && Date.now() - t > S.config.callTimeoutMs + 10000;
}

function onCallEvent(type, call) {
  if (!call || !S.me) return;
  const mine = S.call && S.call.call && S.call.call.id === call.id;
  switch (type) {
    case "call.ringing": {
      if (callStale(call)) return; // replayed from history
      if (S.call && S.call.call && !mine && S.call.view !== "ended") return; // busy with another call
      if (call.callee_id === S.me.id) {
        S.call = { call, view: "incoming", owner: false, status: "Ringing…", queue: [] };
        startRingtone();
      } else {
        const owner = (S.call && S.call.starting) || (mine && S.call.owner);
        S.call = { ...(S.call || {}), call, view: "outgoing", owner: !!owner, starting: false, status: "Ringing…", queue: (S.call && S.call.queue) || [] };
      }
      renderCall();
      break;
    }
    case "call.accepted":
      if (!mine) return;
      stopRingtone();
      S.call.call = call;
      if (S.call.owner) {
        S.call.view = "active";
        S.call.status = "Connecting media…";
        renderCall();
        startMedia(call.caller_id === S.me.id);
      } else {
        S.call.view = "elsewhere";
        S.call.status = "Answered on another device or tab.";
        renderCall();
      }
      break;
    case "call.declined":
    case "call.ended":
    case "call.missed": {
      if (!mine) return;
      const text = { "call.declined": "Call declined", "call.ended": "Call ended", "call.missed": "Missed call" }[type];
      finishCall(text);
      break;
    }
    default:
      break;
  }
}

function finishCall(text) {
  const had = S.call;
  teardownMedia();
  stopRingtone();
  if (!had) return;
  S.call = { call: had.call, view: "ended", status: text, owner: false, queue: [] };
  renderCall();
  const id = had.call && had.call.id;
  setTimeout(() => {
    if (S.call && S.call.view === "ended" && (!S.call.call || S.call.call.id === id)) {
      S.call = null;
      renderCall();
    }
  }, 2500);
}

function teardownCall() {
  teardownMedia();
  stopRingtone();
  S.call = null;
  renderCall();
}

async function startCall(media) {
  if (!S.current) return;
  if (S.call && S.call.view !== "ended") {
    toast("A call is already in progress.");
    return;
  }
  S.call = { starting: true, owner: true, view: "outgoing", media, status: "Calling…", queue: [] };
  renderCall();
  try {
    const call = await parley.startCall(S.current, media);
    if (!S.call || !S.call.owner) return;
    if (S.call.call && S.call.call.id === call.id && S.call.view !== "outgoing") return; // events got ahead
    S.call = { ...S.call, call, starting: false, view: S.call.view === "outgoing" ? "outgoing" : S.call.view };
    renderCall();
  } catch (err) {
    S.call = null;
    renderCall();
    toast(err.status === 409 ? "There is already a call in this conversation." : errText(err));
  }
}

async function acceptCall() {
  const c = S.call;
  if (!c || !c.call) return;
  c.owner = true;
  stopRingtone();
  c.status = "Connecting…";
  renderCall();
  try {
    const call = await parley.acceptCall(c.call.id);
    if (S.call !== c) return;
    c.call = call;
    if (c.view !== "active") {
      c.view = "active";
      c.status = "Connecting media…";
      renderCall();
      startMedia(false);
    }
  } catch (err) {
    toast(errText(err));
    teardownCall();
  }
}

async function declineCall() {
  const c = S.call;
  if (!c || !c.call) return;
  stopRingtone();
  try {
    await parley.declineCall(c.call.id);
  } catch (err) {
    toast(errText(err));
  }
  finishCall("Call declined");
}

async function endCall() {
  const c = S.call;
  if (!c) return;
  if (!c.call) {
    teardownCall();
    return;
  }
  try {
    await parley.endCall(c.call.id);
  } catch (err) {
    if (err.status !== 409 && err.status !== 404) toast(errText(err));
  }
  finishCall("Call ended");
}

function sendSignal(payload) {
  const c = S.call;
  if (!c || !c.call) return;
  parley.signal(c.call.id, payload).catch(() => {});
}

async function startMedia(isCaller) {
  const c = S.call;
  if (!c || c.pc || c.mediaStarting) return;
  if (!rtcAvailable()) {
    c.status = "Connected. Audio and video are not available in this browser.";
    renderCall();
    return;
  }
  c.mediaStarting = true;
  const pc = new RTCPeerConnection({ iceServers: iceServers() });
  c.pc = pc;
  c.candidates = [];
  pc.onicecandidate = (e) => {
    if (e.candidate) sendSignal({ type: "candidate", candidate: e.candidate.toJSON() });
  };
  pc.ontrack = (e) => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    $("remote-video").srcObject = stream;
  };
  pc.onconnectionstatechange = () => {
    if (S.call !== c) return;
    const s = pc.connectionState;
    c.status = s === "connected" ? "Connected" : s === "failed" ? "Media connection failed." : s === "disconnected" ? "Reconnecting media…" : "Connecting media…";
    renderCall();
  };
  const video = c.call.media === "video";
  try {
    const local = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    if (S.call !== c) {
      local.getTracks().forEach((t) => t.stop());
      return;
    }
    c.local = local;
    for (const t of local.getTracks()) pc.addTrack(t, local);
    $("local-video").srcObject = local;
  } catch {
    // No device or permission: still receive the other side.
    pc.addTransceiver("audio", { direction: "recvonly" });
    if (video) pc.addTransceiver("video", { direction: "recvonly" });
    c.status = "Microphone/camera unavailable: you can listen only.";
  }
  c.mediaStarting = false;
  renderCall();
  c.chain = Promise.resolve();
  if (isCaller) {
    c.chain = c.chain.then(async () => {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      sendSignal({ type: "offer", sdp: offer.sdp });
    });
  }
  for (const p of c.queue.splice(0)) queueSignal(c, p);
  c.chain.catch(() => {});
}

function queueSignal(c, payload) {
  c.chain = (c.chain || Promise.resolve()).then(() => handleSignal(c, payload)).catch((err) => console.warn("call signal", err));
}

async function handleSignal(c, p) {
  const pc = c.pc;
  if (!pc || !p || S.call !== c) return;
  if (p.type === "offer") {
    await pc.setRemoteDescription({ type: "offer", sdp: p.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    sendSignal({ type: "answer", sdp: answer.sdp });
    await flushCandidates(c);
  } else if (p.type === "answer") {
    await pc.setRemoteDescription({ type: "answer", sdp: p.sdp });
    await flushCandidates(c);
  } else if (p.type === "candidate" && p.candidate) {
    if (pc.remoteDescription) await pc.addIceCandidate(p.candidate);
    else c.candidates.push(p.candidate);
  }
}

async function flushCandidates(c) {
  for (const cand of c.candidates.splice(0)) {
    try {
      await c.pc.addIceCandidate(cand);
    } catch {
      /* a stale candidate */
    }
  }
}

function onSignal(d) {
  const c = S.call;
  if (!d || !S.me || d.from_user_id === S.me.id) return;
  if (!c || !c.call || c.call.id !== d.call_id || !c.owner) return;
  if (!c.pc) c.queue.push(d.payload);
  else queueSignal(c, d.payload);
}

function teardownMedia() {
  const c = S.call;
  if (!c) return;
  if (c.pc) {
    try {
      c.pc.close();
    } catch {
      /* ignore */
    }
    c.pc = null;
  }
  if (c.local) {
    c.local.getTracks().forEach((t) => t.stop());
    c.local = null;
  }
  $("remote-video").srcObject = null;
  $("local-video").srcObject = null;
}

let ring = null;
function startRingtone() {
  stopRingtone();
  let ctx;
  try {
    ctx = new (window.AudioContext || window.webkitAudioContext)();
  } catch {
    return;
  }
  const beep = () => {
    try {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = 660;
      g.gain.value = 0.06;
      o.connect(g).connect(ctx.destination);
      o.start();
      o.stop(ctx.currentTime + 0.4);
    } catch {
      /* autoplay policy: silent ring */
    }
  };
  beep();
  ring = { ctx, timer: setInterval(beep, 2000) };
}

function stopRingtone() {
  if (!ring) return;
  clearInterval(ring.timer);
  ring.ctx.close().catch(() => {});
  ring = null;
}

// ---------------------------------------------------------------------------
// Wiring

function wire() {
  $("loading-retry").addEventListener("click", boot);
  $("show-register").addEventListener("click", () => {
    setAuthMode("register");
    $("register-username").focus();
  });
  $("show-login").addEventListener("click", () => {
    setAuthMode("login");
    $("login-username").focus();
  });

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    if (!username || !password) return authError("Enter your username and password.");
    const btn = $("login-submit");
    btn.disabled = true;
    try {
      const r = await parley.login(username, password);
      S.me = r.user;
      $("login-password").value = "";
      startSession();
      tabs.post({ t: "login" });
    } catch (err) {
      authError(err.status === 401 ? "Wrong username or password." : errText(err));
    } finally {
      btn.disabled = false;
    }
  });

  $("register-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("register-username").value.trim();
    const password = $("register-password").value;
    const display_name = $("register-display-name").value.trim() || undefined;
    const role = $("register-role-professional").checked ? "professional" : "client";
    if (!/^[a-z0-9_.-]{3,32}$/.test(username)) return authError("Usernames are 3–32 characters: a–z, 0–9, _ . -");
    if (password.length < 8) return authError("Passwords need at least 8 characters.");
    const btn = $("register-submit");
    btn.disabled = true;
    try {
      const r = await parley.register({ username, password, display_name, role });
      S.me = r.user;
      $("register-password").value = "";
      startSession();
      tabs.post({ t: "login" });
    } catch (err) {
      authError(err.status === 409 ? "That username is taken." : errText(err));
    } finally {
      btn.disabled = false;
    }
  });

  $("logout-button").addEventListener("click", logout);
  $("reconnect-button").addEventListener("click", () => parley.reconnect());
  $("new-conversation-button").addEventListener("click", openDirectory);
  $("directory-back").addEventListener("click", () => setPane(S.current ? "chat" : "list"));
  $("new-conversation-form").addEventListener("submit", submitNewConversation);
  $("new-conversation-cancel").addEventListener("click", () => {
    S.newConvTo = null;
    show("new-conversation-form", false);
  });
  $("back-button").addEventListener("click", closeConversation);
  $("load-older").addEventListener("click", loadOlder);
  $("cancel-reply").addEventListener("click", () => {
    cancelReply();
    $("message-input").focus();
  });

  const input = $("message-input");
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    sendCurrent();
    input.focus();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendCurrent();
    } else if (e.key === "Escape") {
      if (S.replyTo) cancelReply();
    }
  });
  input.addEventListener("input", () => {
    autosize(input);
    if (S.current && input.value.trim()) parley.typing(S.current);
    else if (S.current) parley.stopTyping(S.current);
  });

  $("call-audio-button").addEventListener("click", () => startCall("audio"));
  $("call-video-button").addEventListener("click", () => startCall("video"));
  $("call-accept").addEventListener("click", acceptCall);
  $("call-decline").addEventListener("click", declineCall);
  $("call-end").addEventListener("click", endCall);

  $("message-scroller").addEventListener("scroll", () => {
    const sc = $("message-scroller");
    if (sc.scrollTop < 40) loadOlder();
  });

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") scheduleMarkRead();
  });
  window.addEventListener("focus", scheduleMarkRead);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && S.editing) cancelEdit();
  });
}

wire();
boot();
