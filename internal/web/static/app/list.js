// The conversation list: avatar with presence, name, subject, last message,
// unread badge, muted mark.

import { openConversation } from "./chat.js";
import { $, avatar, h, icon, shortTime, show } from "./dom.js";
import { nameOf, peer, sortedConversations } from "./model.js";
import { isMuted } from "./prefs.js";
import { S } from "./state.js";

/** A one-line description of a message for the list and notifications. */
export function messageSummary(m) {
  if (!m) return "";
  if (m.deleted) return "Message deleted";
  const files = Array.isArray(m.attachments) ? m.attachments : [];
  if (m.body && m.body.trim()) return m.body;
  if (!files.length) return m.body || "";
  const images = files.filter((a) => String(a.content_type).startsWith("image/")).length;
  if (images === files.length) return images === 1 ? "Photo" : `${images} photos`;
  return files.length === 1 ? `File: ${files[0].name}` : `${files.length} files`;
}

export function renderConversations() {
  const list = $("conversation-list");
  if (!S.me) return;
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("[data-testid=conversation-item]");
  const focusedId = focused && focused.dataset.conversationId;
  const convs = sortedConversations();
  // Items are kept from one render to the next, keyed by conversation, and
  // updated in place: a render (a message, a receipt, presence) that
  // replaced them between a press and its release lost the click.
  const kept = new Map();
  for (const li of list.children) {
    const b = li.firstElementChild;
    if (b && b.dataset.conversationId) kept.set(b.dataset.conversationId, li);
  }
  const items = convs.map((c) => {
    const p = peer(c);
    const typing = S.typing.get(c.id);
    const unread = c.unread_count || 0;
    const last = c.last_message;
    const muted = isMuted(c.id);
    let text = "";
    if (typing) text = "typing…";
    else if (last) text = (last.sender_id === S.me.id ? "You: " : "") + messageSummary(last);
    const name = nameOf(p);
    const btn = h(
      "button",
      {
        type: "button",
        class: "conversation-item" + (c.id === S.current ? " active" : "") + (unread ? " unread" : ""),
        "data-testid": "conversation-item",
        "data-conversation-id": c.id,
        "data-unread": unread,
        "data-muted": muted ? "true" : null,
        "aria-current": c.id === S.current ? "true" : null,
      },
      h("span", { class: "avatar-wrap" }, avatar(p), h("span", { class: "presence", "data-testid": "presence", "data-online": String(!!p.online), title: p.online ? "Online" : "Offline" })),
      h(
        "span",
        { class: "conv-main" },
        h("span", { class: "conv-top" }, h("span", { class: "conv-name", "data-testid": "conversation-name", text: name }), h("time", { class: "conv-time", text: shortTime(last ? last.created_at : c.created_at) })),
        c.subject ? h("span", { class: "conv-subject", "data-testid": "conversation-subject", text: c.subject }) : null,
        h(
          "span",
          { class: "conv-bottom" },
          h("span", { class: "conv-last" + (typing ? " typing" : ""), "data-testid": "conversation-last", text }),
          h(
            "span",
            { class: "conv-flags" },
            muted ? h("span", { "data-testid": "muted-mark", title: "Muted" }, icon("bellOff", 14), h("span", { class: "visually-hidden", text: "muted" })) : null,
            unread ? h("span", { class: "badge", "data-testid": "unread-badge", text: unread > 99 ? "99+" : String(unread) }) : null,
            unread ? h("span", { class: "visually-hidden", text: unread === 1 ? " unread message" : " unread messages" }) : null,
            p.online ? h("span", { class: "visually-hidden", text: ", online" }) : null,
          ),
        ),
      ),
    );
    const li = kept.get(c.id);
    if (!li) {
      btn.addEventListener("click", () => openConversation(c.id));
      return h("li", {}, btn);
    }
    const was = li.firstElementChild;
    for (const a of [...was.attributes]) if (!btn.hasAttribute(a.name)) was.removeAttribute(a.name);
    for (const a of btn.attributes) if (was.getAttribute(a.name) !== a.value) was.setAttribute(a.name, a.value);
    if (was.innerHTML !== btn.innerHTML) was.replaceChildren(...btn.childNodes);
    return li;
  });
  if (items.length !== list.children.length || items.some((li, i) => list.children[i] !== li)) list.replaceChildren(...items);
  show("conversation-empty", convs.length === 0 && S.loaded);
  if (focusedId) {
    const again = list.querySelector(`[data-conversation-id="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
  const total = convs.reduce((n, c) => n + (c.unread_count || 0), 0);
  document.title = total ? `(${total}) Parley` : "Parley";
}
