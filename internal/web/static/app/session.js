// The session: boot, snapshot loading once the stream has a position, logout, other tabs.

import { teardownCall } from "./calls.js";
import { closeConversation, openConversation } from "./chat.js";
import { $, errText, setText, show, toast } from "./dom.js";
import { apply } from "./events.js";
import { renderConversations } from "./list.js";
import { rememberUser, upsertConversation } from "./model.js";
import { setPane, setScreen, showAuth } from "./screens.js";
import { S, parley } from "./state.js";
import { renderStatus } from "./status.js";

export async function boot() {
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

export function startSession() {
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

export async function loadAll() {
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

export function endSession(notice) {
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

export async function logout() {
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
