// The message timeline (messages, day separators, the "new messages" divider,
// call records, system notes) and the actions on a message (reply, edit,
// delete with undo, retry).

import { callRecordText } from "./calls.js";
import { loadNewer, renderReply } from "./chat.js";
import { $, appendRich, clockTime, dayKey, dayLabel, errText, fileSize, fullTime, h, icon, preview, show, toast, hideToast } from "./dom.js";
import { onMessage } from "./events.js";
import { messageStore, userName } from "./model.js";
import { writtenAt } from "./prefs.js";
import { S, parley } from "./state.js";
import { openViewer } from "./viewer.js";

const GROUP_MS = 5 * 60 * 1000;
const UNDO_MS = 5000;

/** The list shown in the chat: loaded messages by seq, then this conversation's outbox. */
function chatItems() {
  const id = S.current;
  const st = messageStore(id);
  const msgs = st ? [...st.bySeq.values()].sort((a, b) => a.seq - b.seq) : [];
  const known = new Set(msgs.map((m) => m.client_id).filter(Boolean));
  const pending = parley.outbox.filter((it) => it.conversation_id === id && !known.has(it.client_id));
  return { st, msgs, pending };
}

function ownStatus(conv, m) {
  if (m.seq <= (conv.peer_last_read_seq || 0)) return "read";
  if (m.seq <= (conv.peer_delivered_seq || 0)) return "delivered";
  return "sent";
}

/** The time to show for a message: when it was written, for one of ours sent later. */
function shownTime(m, own) {
  if (own && m.client_id) {
    const w = writtenAt(m.client_id);
    if (w && w < Date.parse(m.created_at)) return new Date(w).toISOString();
  }
  return m.created_at;
}

/** Final call records of the open conversation within the loaded span. */
function callRecords(convId, msgs, st) {
  const out = [];
  const first = msgs.length ? Date.parse(msgs[0].created_at) : -Infinity;
  const last = msgs.length ? Date.parse(msgs[msgs.length - 1].created_at) : Infinity;
  for (const c of S.calls.values()) {
    if (c.conversation_id !== convId || c.state === "ringing" || c.state === "active") continue;
    const t = Date.parse(c.created_at);
    if (st && st.hasMore && t < first) continue; // shown when older messages load
    if (st && st.newerMissing && t > last) continue;
    out.push(c);
  }
  return out.sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
}

export function renderMessages({ stick = false, scrollBottom = false } = {}) {
  const conv = S.conversations.get(S.current);
  const list = $("message-list");
  if (!conv || !S.me) {
    list.replaceChildren();
    return;
  }
  const scroller = $("message-scroller");
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  const { st, msgs, pending } = chatItems();
  show("load-older", !!(st && st.hasMore && !st.loading));
  show("jump-latest", !!(st && st.newerMissing));

  // Messages (by seq) then the outbox, with call records slotted in by time.
  const entries = [];
  const calls = callRecords(conv.id, msgs, st);
  let ci = 0;
  const pushCallsBefore = (t) => {
    while (ci < calls.length && Date.parse(calls[ci].created_at) <= t) entries.push({ call: calls[ci++] });
  };
  for (const m of msgs) {
    pushCallsBefore(Date.parse(m.created_at));
    entries.push({ msg: m });
  }
  if (!(st && st.newerMissing)) pushCallsBefore(Infinity);
  for (const it of pending) entries.push({ item: it });

  const unreadFrom = S.unreadFrom.get(conv.id);
  let dividerDone = unreadFrom == null;
  const views = [];
  let prev = null;
  let prevDay = st && st.hasMore && msgs.length ? null : "";
  for (const e of entries) {
    let v;
    if (e.call) {
      v = { kind: "call", key: `c:${e.call.id}`, call: e.call, time: e.call.created_at };
    } else if (e.msg) {
      const m = e.msg;
      const system = m.kind === "system" || m.sender_id == null;
      const own = !system && m.sender_id === S.me.id;
      const pendingDelete = S.pendingDeletes.has(m.id);
      const grouped = !system && !!prev && prev.sender_id === m.sender_id && !prev.deleted && Date.parse(m.created_at) - Date.parse(prev.created_at) < GROUP_MS;
      v = {
        kind: "message",
        system,
        key: `m:${m.id}`,
        own,
        grouped,
        status: own ? ownStatus(conv, m) : "received",
        msg: pendingDelete ? { ...m, deleted: true, body: "", attachments: [] } : m,
        undo: pendingDelete,
        editing: S.editing === m.id,
        time: shownTime(m, own),
      };
      v.newHere = !dividerDone && !own && !system && m.seq > unreadFrom;
      if (v.newHere) dividerDone = true;
    } else {
      const it = e.item;
      const grouped = !!prev && prev.sender_id === S.me.id;
      const created = new Date(it.created_at).toISOString();
      v = {
        kind: "message",
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
          created_at: created,
          reply_to: it.reply_to_id ? replyRef(it.reply_to_id) : null,
          attachments: S.sentAttachments.get(it.client_id) || pendingFiles(it),
          deleted: false,
        },
        error: it.error,
        time: created,
      };
    }
    const day = dayKey(v.time);
    if (day && prevDay !== null && day !== prevDay) {
      views.push({ kind: "day", key: `d:${day}`, sig: `d:${day}:${dayLabel(v.time)}`, label: dayLabel(v.time) });
      if (v.kind === "message") v.grouped = false;
    }
    if (day) prevDay = day;
    if (v.newHere) {
      views.push({ kind: "new", key: "new", sig: "new" });
      v.grouped = false;
    }
    views.push(v);
    if (v.kind === "message") prev = v.msg.id ? v.msg : { sender_id: S.me.id };
    else prev = null;
  }

  // Keyed update: unchanged items keep their element (and any focus or edit
  // box inside it); changed ones are rebuilt; order is fixed up in place.
  const existing = new Map();
  for (const el of list.children) existing.set(el.dataset.key, el);
  let cursor = list.firstElementChild;
  for (const v of views) {
    const sig = v.sig || signature(v);
    let el = existing.get(v.key);
    if (el && el.dataset.sig !== sig) {
      const fresh = viewElement(v, sig);
      el.replaceWith(fresh);
      if (cursor === el) cursor = fresh;
      el = fresh;
    } else if (!el) {
      el = viewElement(v, sig);
    }
    existing.delete(v.key);
    if (el === cursor) cursor = cursor.nextElementSibling;
    else list.insertBefore(el, cursor);
  }
  for (const el of existing.values()) el.remove();

  if (scrollBottom || (nearBottom && !(st && st.newerMissing))) scroller.scrollTop = scroller.scrollHeight;
  void stick;
}

/** Loads more when the reader reaches either end of the loaded block. */
export function onScroll() {
  const sc = $("message-scroller");
  if (sc.scrollTop < 40) import("./chat.js").then((c) => c.loadOlder());
  else if (sc.scrollHeight - sc.scrollTop - sc.clientHeight < 40) loadNewer();
}

/** Files of an outbox item sent from another tab or before a reload: named only by id. */
function pendingFiles(it) {
  const ids = (it.extra && it.extra.attachment_ids) || [];
  return ids.map((id) => ({ id, name: "Attachment", content_type: "", size: 0, url: "" }));
}

function replyRef(id) {
  for (const st of S.messages.values()) {
    for (const m of st.bySeq.values()) if (m.id === id) return { id, sender_id: m.sender_id, preview: preview(m.body, 140) };
  }
  return { id, sender_id: null, preview: "" };
}

function signature(v) {
  if (v.kind === "call") return JSON.stringify(["call", v.call.id, v.call.state, v.call.answered_at, v.call.ended_at]);
  const m = v.msg;
  const files = (m.attachments || []).map((a) => a.id || a.name);
  return JSON.stringify([v.key, v.kind, v.system || false, v.own, v.grouped, v.status, m.body, m.deleted, m.edited_at || null, m.reply_to ? m.reply_to.preview : null, v.editing || false, v.error || null, m.seq, v.undo || false, v.time, files]);
}

function viewElement(v, sig) {
  if (v.kind === "day") return h("li", { class: "day-separator", "data-testid": "day-separator", "data-key": v.key, "data-sig": sig }, h("span", { text: v.label }));
  if (v.kind === "new") return h("li", { class: "new-divider", "data-testid": "new-divider", "data-key": v.key, "data-sig": sig }, h("span", { text: "New messages" }));
  if (v.kind === "call") {
    const r = callRecordText(v.call);
    return h(
      "li",
      { class: "call-record", "data-testid": "call-record", "data-call-id": v.call.id, "data-outcome": r.outcome, "data-key": v.key, "data-sig": sig },
      h("span", {}, icon(r.outcome === "missed" || r.outcome === "declined" ? "phoneMissed" : v.call.media === "video" ? "video" : "phone", 14), h("span", { text: r.text }), h("time", { datetime: v.call.created_at, title: fullTime(v.call.created_at), text: clockTime(v.call.created_at) })),
    );
  }
  return messageElement(v, sig);
}

function attachmentsView(m) {
  const files = Array.isArray(m.attachments) ? m.attachments : [];
  if (!files.length || m.deleted) return null;
  return h(
    "div",
    { class: "attachments" },
    files.map((a) => {
      const image = String(a.content_type || "").startsWith("image/") && a.url;
      if (image) {
        return h(
          "button",
          { type: "button", class: "image-attachment", "data-testid": "attachment-image", "data-attachment-id": a.id || null, "aria-label": `Open image ${a.name || ""}`.trim(), onclick: () => openViewer(a) },
          h("img", { src: a.url, alt: a.name || "Image", loading: "lazy", decoding: "async" }),
        );
      }
      const body = [icon("file", 22), h("span", { class: "file-meta" }, h("span", { class: "file-name" }, a.url ? h("span", { class: "visually-hidden", text: "Download " }) : null, a.name || "File"), h("span", { class: "file-size", text: a.size ? fileSize(a.size) : "" }))];
      if (!a.url) return h("span", { class: "file-card", "data-testid": "attachment-file" }, body);
      return h("a", { class: "file-card", "data-testid": "attachment-file", "data-attachment-id": a.id || null, href: a.url, download: a.name || "", rel: "noopener noreferrer" }, body);
    }),
  );
}

const MARK_LABELS = { pending: "Sending", failed: "Not sent", sent: "Sent", delivered: "Delivered", read: "Read" };

function statusMark(status) {
  const attrs = { class: `status-mark ${status}`, "data-testid": "message-status", "data-status": status, title: MARK_LABELS[status], role: "img", "aria-label": MARK_LABELS[status] };
  if (status === "pending") return h("span", attrs, icon("clock", 13));
  if (status === "failed") return h("span", attrs, icon("alert", 13));
  if (status === "sent") return h("span", { ...attrs, role: null, "aria-label": null }, h("span", { class: "visually-hidden", text: "Sent" }));
  return h("span", attrs, status === "read" ? "✓✓" : "✓");
}

function messageElement(v, sig) {
  const m = v.msg;
  const own = v.own;
  const attrs = {
    class: `message${own ? " own" : " theirs"}${v.system ? " system" : ""}${v.grouped ? " grouped" : ""}${m.deleted ? " deleted" : ""} status-${v.status}`,
    "data-testid": "message",
    "data-kind": v.system ? "system" : "user",
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
    "data-undo": v.undo ? "true" : null,
  };
  const li = h("li", attrs);
  const bubble = h("div", { class: "bubble" });
  if (!own && !v.grouped) bubble.append(h("div", { class: "sender", text: userName(m.sender_id) }));
  if (m.reply_to && !m.deleted) {
    bubble.append(
      h(
        "button",
        {
          type: "button",
          class: "quote",
          "data-testid": "message-quote",
          "data-reply-to-id": m.reply_to.id,
          onclick: () => jumpTo(m.reply_to.id),
        },
        h("span", { class: "quote-author" }, h("span", { class: "visually-hidden", text: "In reply to " }), m.reply_to.sender_id ? userName(m.reply_to.sender_id) : ""),
        h("span", { class: "quote-text", text: m.reply_to.preview || "" }),
      ),
    );
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
  } else if (v.undo) {
    bubble.append(
      h(
        "div",
        { class: "undo-note" },
        h("span", { class: "body", "data-testid": "message-body", text: "Message deleted" }),
        h("button", { type: "button", class: "small", "data-testid": "undo-delete", text: "Undo", onclick: () => undoDelete(m.id) }),
      ),
    );
  } else {
    const files = attachmentsView(m);
    if (files) bubble.append(files);
    if (m.deleted || (m.body && m.body.length) || !files) {
      bubble.append(appendRich(h("div", { class: "body", "data-testid": "message-body" }), m.deleted ? "Message deleted" : m.body));
    } else {
      bubble.append(h("div", { class: "body visually-hidden", "data-testid": "message-body" }));
    }
  }
  const meta = h("div", { class: "meta" });
  const late = v.time !== m.created_at;
  meta.append(h("time", { "data-testid": "message-time", datetime: v.time, title: late ? `Written ${fullTime(v.time)}, sent ${fullTime(m.created_at)}` : fullTime(v.time), text: clockTime(v.time) }));
  if (m.edited_at && !m.deleted) meta.append(h("span", { class: "edited", "data-testid": "message-edited", title: fullTime(m.edited_at), text: "edited" }));
  if (own) meta.append(statusMark(v.status));
  bubble.append(meta);
  if (v.status === "failed") {
    bubble.append(
      h(
        "div",
        { class: "failed-note", role: "alert" },
        h("span", { text: v.error ? `Not sent: ${v.error}` : "Not sent." }),
        h("button", { type: "button", class: "small", "data-testid": "retry-button", text: "Tap to retry", onclick: () => parley.retry(m.client_id).catch(() => {}) }),
        h("button", { type: "button", class: "small", "data-testid": "discard-button", text: "Discard", onclick: () => parley.discard(m.client_id) }),
      ),
    );
  }
  li.append(bubble);
  if (m.id && !m.deleted && !v.editing && !v.system) {
    const actions = h("div", { class: "actions", role: "group", "aria-label": "Message actions" });
    actions.append(h("button", { type: "button", class: "icon small", "data-testid": "reply-button", "aria-label": "Reply", title: "Reply", onclick: () => startReply(m) }, icon("reply")));
    if (own) {
      if (m.body) actions.append(h("button", { type: "button", class: "icon small", "data-testid": "edit-button", "aria-label": "Edit", title: "Edit", onclick: () => startEdit(m) }, icon("edit")));
      actions.append(h("button", { type: "button", class: "icon small", "data-testid": "delete-button", "aria-label": "Delete", title: "Delete", onclick: () => deleteMessage(m) }, icon("trash")));
    }
    li.append(actions);
  }
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

/**
 * Delete with a way back: the message shows as deleted at once with Undo (in
 * the bubble and in a notice) for 5 s; only then is the DELETE sent. Leaving
 * the page or logging out sends it at once.
 */
export function deleteMessage(m) {
  if (S.pendingDeletes.has(m.id)) return;
  const timer = setTimeout(() => commitDelete(m.id), UNDO_MS);
  S.pendingDeletes.set(m.id, { timer, message: m });
  renderMessages();
  toast("Message deleted.", UNDO_MS, { label: "Undo", run: () => undoDelete(m.id) });
}

export function undoDelete(id) {
  const p = S.pendingDeletes.get(id);
  if (!p) return;
  clearTimeout(p.timer);
  S.pendingDeletes.delete(id);
  hideToast();
  renderMessages();
}

async function commitDelete(id) {
  const p = S.pendingDeletes.get(id);
  if (!p) return;
  clearTimeout(p.timer);
  try {
    const tomb = await parley.deleteMessage(id);
    S.pendingDeletes.delete(id);
    onMessage(tomb, false);
  } catch (err) {
    S.pendingDeletes.delete(id);
    renderMessages();
    toast(`Could not delete the message: ${errText(err)}`);
  }
}

/** Sends every delete still in its undo window (logout). */
export async function flushDeletes() {
  await Promise.all([...S.pendingDeletes.keys()].map((id) => commitDelete(id)));
}

/** The page is going away: the deletes in their undo window go now, in a request that outlives the page. */
export function flushDeletesOnExit() {
  for (const [id, p] of S.pendingDeletes) {
    clearTimeout(p.timer);
    try {
      fetch(`/api/messages/${encodeURIComponent(id)}`, { method: "DELETE", credentials: "include", keepalive: true, headers: { Accept: "application/json" } });
    } catch {
      /* best effort */
    }
  }
  S.pendingDeletes.clear();
}

