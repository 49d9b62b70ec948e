// The session: boot (online, or from the cached session when the server cannot
// be reached), the snapshot loaded once the stream has a position, logout, and
// the other tabs of the browser.

import { loadCallLog, teardownCall } from "./calls.js";
import { closeConversation, openConversation } from "./chat.js";
import { clearUploads } from "./composer.js";
import { $, avatar, errText, setText, show, toast } from "./dom.js";
import { apply } from "./events.js";
import { stopIdleWatch, startIdleWatch } from "./idle.js";
import { renderConversations } from "./list.js";
import { flushDeletes } from "./messages.js";
import { rememberUser, storeMessage, upsertConversation, messageStore } from "./model.js";
import { startNotifications, stopNotifications } from "./notify.js";
import { cachedSession, forgetSession, saveSession } from "./prefs.js";
import { currentRoute, replaceRoute } from "./router.js";
import { setPane, setScreen, showAuth } from "./screens.js";
import { clearSearch } from "./search.js";
import { S, parley } from "./state.js";
import { renderStatus } from "./status.js";

/** Reads /api/config into S.config (public: works before login too). */
export async function loadConfig() {
  const c = await parley.getConfig();
  const raw = (c && c.raw) || {};
  if (raw.call_timeout_ms > 0) S.config.callTimeoutMs = raw.call_timeout_ms;
  if (raw.max_body_chars > 0) S.config.maxBodyChars = raw.max_body_chars;
  if (raw.max_attachment_bytes > 0) S.config.maxAttachment = raw.max_attachment_bytes;
  if (typeof raw.registration === "string") S.config.registration = raw.registration;
  $("message-input").maxLength = S.config.maxBodyChars;
  $("new-conversation-body").maxLength = S.config.maxBodyChars;
  // With registration closed the app Parley is part of signs users in: no
  // register form, and a word on where to sign in instead.
  show("register-switch", S.config.registration !== "closed");
  show("registration-closed", S.config.registration === "closed");
  if (S.config.registration === "closed" && $("auth-view").dataset.mode === "register") {
    show("register-form", false);
    show("login-form", true);
    $("auth-view").dataset.mode = "login";
  }
  return S.config;
}

export async function boot() {
  setScreen("loading");
  show("loading-error", false);
  show("loading-retry", false);
  const config = loadConfig().catch(() => S.config);
  try {
    S.me = await parley.me();
  } catch (err) {
    if (err.status === 401) {
      await config;
      showAuth();
      return;
    }
    const cached = cachedSession();
    if (err.status === 0 || err.code === "network_error") {
      if (cached && cached.me) {
        startOffline(cached);
        return;
      }
    }
    setText("loading-error", errText(err));
    show("loading-error", true);
    show("loading-retry", true);
    return;
  }
  await Promise.race([config, new Promise((r) => setTimeout(r, 1500))]);
  startSession();
}

/**
 * The server cannot be reached but this browser was signed in: show the app
 * from the last snapshot, with the outbox, and let the SDK connect when the
 * server is back (the snapshot is then replaced by the real one).
 */
function startOffline(cached) {
  S.me = cached.me;
  S.offline = true;
  for (const c of cached.conversations || []) upsertConversation(c);
  const route = currentRoute();
  if (!route.c && cached.current) S.current = cached.current;
  if (cached.current && Array.isArray(cached.messages) && cached.messages.length) {
    const st = messageStore(cached.current, true);
    for (const m of cached.messages) storeMessage(m);
    st.hasMore = Math.min(...cached.messages.map((m) => m.seq)) > 1;
    st.cached = true;
  }
  startSession();
}

export function startSession() {
  rememberUser(S.me);
  S.loaded = false;
  S.queue = [];
  const route = currentRoute();
  if (route.c) S.current = route.c;
  setScreen("main");
  setPane(S.current ? "chat" : route.view === "directory" || route.view === "profile" ? "list" : "list");
  renderMe();
  show("new-conversation-button", S.me.role === "client");
  renderStatus();
  renderConversations();
  if (S.current && S.conversations.has(S.current)) openConversation(S.current, { keepPane: true, fromRoute: true, offline: true });

  let started = false;
  let loading = false;
  let poll = null;
  const load = () => {
    if (started || loading) return;
    loading = true;
    loadAll()
      .then(() => {
        started = true;
        clearInterval(poll);
      })
      .catch((err) => {
        // Not reachable yet (the offline shell): tried again on the next
        // state change or tick.
        if (!S.offline) toast(errText(err));
      })
      .finally(() => {
        loading = false;
      });
  };
  // Load the snapshot only once the SDK has a position in the event log (ready,
  // a resume point, or a head taken by poll): everything after that position
  // is then delivered, so no event can fall between the snapshot and the
  // stream. Events that arrive before the snapshot wait in S.queue.
  const tryLoad = () => {
    if (S.offline ? parley.state === "connected" || parley.state === "polling" : parley.lastEventId != null || parley.state === "connected") load();
  };
  S.sessionUnsubs.push(parley.on("ready", load), parley.onState(tryLoad));
  poll = setInterval(tryLoad, 250);
  const giveUp = setTimeout(() => !S.offline && load(), 15000); // no position at all: show what there is
  S.sessionUnsubs.push(() => clearInterval(poll), () => clearTimeout(giveUp));
  parley.connect();
  tryLoad();
  startNotifications();
  startIdleWatch();
  if (route.view === "directory" && S.me.role === "client") import("./directory.js").then((d) => d.openDirectory({ fromRoute: true }));
  else if (route.view === "profile") import("./profile.js").then((p) => p.openProfile({ fromRoute: true }));
}

export function renderMe() {
  if (!S.me) return;
  setText("me-name", S.me.display_name || S.me.username);
  setText("me-role", S.me.role);
  avatar(S.me, $("me-avatar"));
}

export async function loadAll() {
  const list = await parley.conversations();
  if (S.offline) {
    // Back from the offline shell: the session may have ended meanwhile.
    S.me = await parley.me();
    rememberUser(S.me);
    renderMe();
    S.offline = false;
  }
  S.conversations.clear();
  for (const c of list) upsertConversation(c);
  // Messages cached from before may have missed events while reloading.
  S.messages.clear();
  S.loaded = true;
  const queued = S.queue.splice(0);
  for (const ev of queued) apply(ev);
  renderConversations();
  renderStatus();
  if (S.current) {
    if (S.conversations.has(S.current)) await openConversation(S.current, { keepPane: true, fromRoute: true });
    else {
      closeConversation();
      replaceRoute({});
    }
  }
  saveSession();
  loadCallLog().catch(() => {});
}

export function endSession(notice) {
  for (const off of S.sessionUnsubs.splice(0)) off();
  teardownCall();
  stopIdleWatch();
  stopNotifications();
  clearSearch();
  clearUploads();
  forgetSession();
  S.me = null;
  S.offline = false;
  S.conversations.clear();
  S.messages.clear();
  S.users.clear();
  S.calls.clear();
  S.unreadFrom.clear();
  S.current = null;
  S.replyTo = null;
  S.editing = null;
  S.typing.clear();
  S.loaded = false;
  S.queue = [];
  $("message-list").replaceChildren();
  $("conversation-list").replaceChildren();
  $("message-input").value = "";
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  setPane("list");
  showAuth(notice);
}

export async function logout() {
  await flushDeletes();
  await parley.logout();
  tabs.post({ t: "logout" });
  endSession();
}

// Logging in or out in one tab does the same in the others at once (the
// cookie is shared; without this they would notice only on their next request).
export const tabs = (() => {
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
