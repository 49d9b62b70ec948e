// The message timeline and the actions on a message.

import { renderReply } from "./chat.js";
import { $, errText, fullTime, h, icon, preview, shortTime, show, toast } from "./dom.js";
import { onMessage } from "./events.js";
import { messageStore, userName } from "./model.js";
import { S, parley } from "./state.js";

export const GROUP_MS = 5 * 60 * 1000;

/** The list shown in the chat: loaded messages by seq, then this conversation's outbox. */
export function chatItems() {
  const id = S.current;
  const st = messageStore(id);
  const msgs = st ? [...st.bySeq.values()].sort((a, b) => a.seq - b.seq) : [];
  const known = new Set(msgs.map((m) => m.client_id).filter(Boolean));
  const pending = parley.outbox.filter((it) => it.conversation_id === id && !known.has(it.client_id));
  return { msgs, pending };
}

export function ownStatus(conv, m) {
  if (m.seq <= (conv.peer_last_read_seq || 0)) return "read";
  if (m.seq <= (conv.peer_delivered_seq || 0)) return "delivered";
  return "sent";
}

export function renderMessages({ stick = false, scrollBottom = false } = {}) {
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

export function replyRef(id) {
  for (const st of S.messages.values()) {
    for (const m of st.bySeq.values()) if (m.id === id) return { id, sender_id: m.sender_id, preview: preview(m.body, 140) };
  }
  return { id, sender_id: null, preview: "" };
}

export function signature(v) {
  const m = v.msg;
  return JSON.stringify([v.key, v.own, v.grouped, v.status, m.body, m.deleted, m.edited_at || null, m.reply_to ? m.reply_to.preview : null, v.editing || false, v.error || null, m.seq]);
}

export function messageElement(v, sig) {
  const m = v.msg;
  const own = v.own;
  const attrs = {
    class: `message${own ? " own" : " theirs"}${v.grouped ? " grouped" : ""}${m.deleted ? " deleted" : ""} status-${v.status}`,
    "data-testid": "message",
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

export function jumpTo(messageId) {
  const el = $("message-list").querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
  if (!el) return;
  el.scrollIntoView({ block: "center", behavior: "smooth" });
  el.classList.add("highlight");
  setTimeout(() => el.classList.remove("highlight"), 1500);
}

export function startReply(m) {
  S.replyTo = m;
  renderReply();
  $("message-input").focus();
}

export function cancelReply() {
  S.replyTo = null;
  renderReply();
}

export function startEdit(m) {
  S.editing = m.id;
  renderMessages();
}

export function cancelEdit() {
  S.editing = null;
  renderMessages();
  $("message-input").focus();
}

export async function saveEdit(m, body) {
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

export async function deleteMessage(m) {
  try {
    const tomb = await parley.deleteMessage(m.id);
    onMessage(tomb, false);
  } catch (err) {
    toast(errText(err));
  }
}
