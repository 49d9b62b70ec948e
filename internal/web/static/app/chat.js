// The open conversation: header, loading (the latest page, older pages, or a
// window around a message found by search), typing, reply preview, read markers.

import { renderTray } from "./composer.js";
import { closeChatSearch } from "./search.js";
import { $, avatar, errText, icon, preview, setText, shortTime, show, toast, narrow } from "./dom.js";
import { renderConversations } from "./list.js";
import { renderMessages } from "./messages.js";
import { maxSeq, messageStore, minSeq, nameOf, peer, storeMessage, userName } from "./model.js";
import { isMuted, saveSession, setMuted } from "./prefs.js";
import { pushRoute } from "./router.js";
import { setPane } from "./screens.js";
import { S, parley } from "./state.js";

const PAGE = 50;

/**
 * Opens a conversation. focusSeq: scroll to that message (loading the page
 * around it) and highlight it. fromRoute: the URL already says so (reload,
 * back/forward), so no history entry is added.
 */
export async function openConversation(id, { keepPane = false, fromRoute = false, focusSeq = null } = {}) {
  const switching = S.current !== id;
  if (switching && S.current) parley.stopTyping(S.current);
  const conv = S.conversations.get(id);
  if (switching || !S.unreadFrom.has(id)) {
    // Where the "new messages" divider goes: after the read marker as it was
    // when the conversation was opened, if anything was unread then.
    S.unreadFrom.set(id, conv && conv.unread_count > 0 ? conv.last_read_seq || 0 : null);
  }
  S.current = id;
  if (switching) {
    S.replyTo = null;
    S.editing = null;
    $("message-input").value = "";
    $("message-list").replaceChildren();
    renderReply();
    closeChatSearch();
  }
  renderTray();
  if (!fromRoute) pushRoute({ c: id });
  if (!keepPane || (S.pane !== "directory" && S.pane !== "profile")) setPane("chat");
  $("chat-view").dataset.conversationId = id;
  renderConversations();
  renderChatHeader();
  renderTyping();
  let st = messageStore(id);
  if (!st || (st.cached && S.loaded)) {
    const cached = st;
    st = cached || messageStore(id, true);
    st.loading = true;
    renderMessages();
    try {
      const r = await parley.messages(id, { limit: PAGE });
      st.bySeq.clear();
      st.cached = false;
      for (const m of r.messages || []) storeMessage(m);
      st.hasMore = !!r.has_more;
      st.newerMissing = false;
    } catch (err) {
      // The offline shell keeps what it had; anything else is reported.
      if (!cached) S.messages.delete(id);
      if (!S.offline) toast(errText(err));
      st.loading = false;
      if (!cached) return;
    } finally {
      st.loading = false;
    }
  }
  if (S.current !== id) return;
  if (focusSeq != null) {
    await focusMessage(id, focusSeq);
  } else {
    renderMessages({ scrollBottom: true });
    scrollToDivider();
  }
  scheduleMarkRead();
  if (S.loaded && focusSeq == null) saveSession();
  if (!keepPane && !narrow() && focusSeq == null) $("message-input").focus();
}

/** Brings the "new messages" divider into view when it is above the fold. */
function scrollToDivider() {
  const div = $("message-list").querySelector('[data-testid="new-divider"]');
  if (!div) return;
  const sc = $("message-scroller");
  if (div.offsetTop < sc.scrollTop) sc.scrollTop = Math.max(0, div.offsetTop - 40);
}

/**
 * Shows the message with that seq in context: loads the page around it when it
 * is not loaded (the loaded block then becomes that window: older and newer
 * pages load as you scroll, "Jump to the latest messages" comes back), scrolls
 * to it and highlights it.
 */
export async function focusMessage(id, seq) {
  const st = messageStore(id, true);
  if (!st.bySeq.has(seq)) {
    st.loading = true;
    try {
      const r = await parley.messages(id, { after_seq: Math.max(0, seq - Math.floor(PAGE / 2) - 1), limit: PAGE });
      const msgs = r.messages || [];
      st.bySeq.clear();
      st.newerMissing = true; // until we know it reaches the newest
      for (const m of msgs) st.bySeq.set(m.seq, m);
      st.hasMore = minSeq(st) > 1;
      const conv = S.conversations.get(id);
      const newest = conv && conv.last_message ? conv.last_message.seq : 0;
      st.newerMissing = msgs.length >= PAGE && maxSeq(st) < newest;
    } catch (err) {
      toast(errText(err));
      return;
    } finally {
      st.loading = false;
    }
  }
  if (S.current !== id) return;
  renderMessages();
  highlight(seq);
}

function highlight(seq) {
  const el = $("message-list").querySelector(`[data-testid="message"][data-seq="${seq}"]`);
  if (!el) return;
  el.scrollIntoView({ block: "center" });
  for (const old of $("message-list").querySelectorAll(".found")) old.classList.remove("found");
  el.classList.add("found");
  el.dataset.found = "true";
  const bubble = el.querySelector(".bubble");
  if (bubble) {
    bubble.tabIndex = -1;
    bubble.focus({ preventScroll: true });
  }
  setTimeout(() => {
    el.classList.remove("found");
    delete el.dataset.found;
  }, 4000);
}

export function closeConversation({ fromRoute = false } = {}) {
  if (S.current) parley.stopTyping(S.current);
  S.current = null;
  S.replyTo = null;
  S.editing = null;
  delete $("chat-view").dataset.conversationId;
  closeChatSearch();
  if (!fromRoute) pushRoute({});
  setPane("list");
  renderConversations();
}

export async function loadOlder() {
  const id = S.current;
  const st = messageStore(id);
  if (!st || !st.hasMore || st.loading || !st.bySeq.size) return;
  st.loading = true;
  const scroller = $("message-scroller");
  const before = scroller.scrollHeight - scroller.scrollTop;
  try {
    const r = await parley.messages(id, { before_seq: minSeq(st), limit: PAGE });
    for (const m of r.messages || []) st.bySeq.set(m.seq, m);
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

/** In a window into older history: the next page towards the newest. */
export async function loadNewer() {
  const id = S.current;
  const st = messageStore(id);
  if (!st || !st.newerMissing || st.loading) return;
  st.loading = true;
  try {
    const r = await parley.messages(id, { after_seq: maxSeq(st), limit: PAGE });
    const msgs = r.messages || [];
    for (const m of msgs) st.bySeq.set(m.seq, m);
    const conv = S.conversations.get(id);
    const newest = conv && conv.last_message ? conv.last_message.seq : 0;
    st.newerMissing = msgs.length >= PAGE && maxSeq(st) < newest;
  } catch (err) {
    toast(errText(err));
  } finally {
    st.loading = false;
  }
  if (S.current === id) renderMessages();
}

/** Leaves a window into older history for the newest page. */
export async function jumpToLatest() {
  const id = S.current;
  const st = messageStore(id);
  if (!id || !st) return;
  if (st.newerMissing) {
    S.messages.delete(id);
    await openConversation(id, { keepPane: true, fromRoute: true });
  } else {
    renderMessages({ scrollBottom: true });
  }
}

export function renderChatHeader() {
  const conv = S.conversations.get(S.current);
  if (!conv) return;
  const p = peer(conv);
  setText("chat-title", nameOf(p) === "Unknown" ? "Conversation" : nameOf(p));
  let sub = conv.subject || "";
  const seen = p.online ? "online" : p.last_seen ? `last seen ${shortTime(p.last_seen)}` : "offline";
  sub = sub ? `${sub} · ${seen}` : seen;
  setText("chat-subtitle", sub);
  $("chat-presence").dataset.online = String(!!p.online);
  $("chat-presence").title = p.online ? "Online" : "Offline";
  avatar(p, $("chat-avatar"));
  renderMuteButton();
}

export function renderMuteButton() {
  const btn = $("mute-button");
  const muted = !!S.current && isMuted(S.current);
  btn.setAttribute("aria-pressed", String(muted));
  btn.replaceChildren(icon(muted ? "bellOff" : "bell", 20));
  btn.title = muted ? "Notifications muted — unmute" : "Mute notifications";
  btn.setAttribute("aria-label", muted ? "Unmute notifications for this conversation" : "Mute notifications for this conversation");
}

export function toggleMute() {
  if (!S.current) return;
  const muted = !isMuted(S.current);
  setMuted(S.current, muted);
  renderMuteButton();
  renderConversations();
  toast(muted ? "Muted: no sound or notification from this conversation." : "Notifications on for this conversation.", 2500);
}

export function renderTyping() {
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

export function renderReply() {
  const r = S.replyTo;
  show("reply-preview", !!r);
  if (r) {
    setText("reply-preview-author", userName(r.sender_id));
    setText("reply-preview-text", preview(r.body || (r.attachments && r.attachments.length ? "Attachment" : ""), 140));
  }
}

let markTimer = null;
export function scheduleMarkRead() {
  clearTimeout(markTimer);
  markTimer = setTimeout(markRead, 150);
}

export function markRead() {
  const conv = S.conversations.get(S.current);
  if (!conv || S.offline || document.visibilityState !== "visible" || S.pane !== "chat") return;
  const st = messageStore(conv.id);
  let upTo = conv.last_message ? conv.last_message.seq : 0;
  if (st && st.bySeq.size) upTo = Math.max(upTo, maxSeq(st));
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
export function sendRead(convId, upTo, attempt = 0) {
  parley.markRead(convId, upTo).catch((err) => {
    const s = (err && err.status) || 0;
    if (!(s === 0 || s === 408 || s === 429 || s >= 500) || attempt >= 10) return;
    setTimeout(() => {
      const c = S.conversations.get(convId);
      if (S.me && c && c.last_read_seq === upTo) sendRead(convId, upTo, attempt + 1);
    }, Math.min(30000, 1000 * 2 ** attempt));
  });
}
