// The open conversation: header, loading, typing, reply preview, read markers.

import { $, errText, preview, setText, shortTime, show, toast } from "./dom.js";
import { renderConversations } from "./list.js";
import { renderMessages } from "./messages.js";
import { messageStore, newer, peer, storeMessage, userName } from "./model.js";
import { setPane } from "./screens.js";
import { S, parley } from "./state.js";

export async function openConversation(id, { keepPane = false } = {}) {
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

export function closeConversation() {
  if (S.current) parley.stopTyping(S.current);
  S.current = null;
  S.replyTo = null;
  S.editing = null;
  delete $("chat-view").dataset.conversationId;
  setPane("list");
  renderConversations();
}

export async function loadOlder() {
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

export function renderChatHeader() {
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
    setText("reply-preview-text", preview(r.body, 140));
  }
}
export let markTimer = null;
export function scheduleMarkRead() {
  clearTimeout(markTimer);
  markTimer = setTimeout(markRead, 150);
}

export function markRead() {
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
