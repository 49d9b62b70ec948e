// The conversation list.

import { openConversation } from "./chat.js";
import { $, h, preview, shortTime, show } from "./dom.js";
import { peer, sortedConversations } from "./model.js";
import { S } from "./state.js";

export function renderConversations() {
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
