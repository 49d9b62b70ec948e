// Events from the SDK applied to the model and the screen.

import { onCallEvent, onSignal, recordCall } from "./calls.js";
import { renderChatHeader, renderTyping, scheduleMarkRead } from "./chat.js";
import { renderDirectory } from "./directory.js";
import { errText, toast } from "./dom.js";
import { renderConversations } from "./list.js";
import { renderMessages } from "./messages.js";
import { newer, recountUnread, storeMessage, upsertConversation } from "./model.js";
import { notifyMessage } from "./notify.js";
import { rememberWritten, saveSession } from "./prefs.js";
import { endSession, loadAll } from "./session.js";
import { S, parley } from "./state.js";
import { renderStatus } from "./status.js";

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
  rememberWritten(items);
  renderStatus();
  // The HTTP answer can come before the message.created event: show the stored
  // message at once so the bubble does not blink out in between.
  if (change && change.type === "sent" && change.message && change.message.conversation_id && S.loaded) onMessage(change.message, true);
  else if (S.current) renderMessages();
});

export function apply(ev) {
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
      recordCall(d);
      onCallEvent(ev.type, d);
      break;
    case "call.signal":
      onSignal(d);
      break;
    default:
      break;
  }
}

export let expiring = false;
export async function sessionExpired(d) {
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

export async function onMessage(m, created) {
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
  const fromPeer = !!S.me && m.sender_id !== S.me.id && m.sender_id != null;
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
  if (fromPeer && created && !m.deleted) notifyMessage(conv, m);
  saveSoon();
}

let saveTimer = null;
/** Keeps the offline snapshot fresh without writing storage on every event. */
function saveSoon() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(saveSession, 2000);
}

export function onReceipt(r) {
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

export const typingTimers = new Map();
export function onTyping(t) {
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

export function onPresence(p) {
  const u = S.users.get(p.user_id);
  if (!u) return;
  u.online = !!p.online;
  if (p.last_seen !== undefined) u.last_seen = p.last_seen;
  renderConversations();
  renderChatHeader();
  if (S.pane === "directory") renderDirectory();
}
