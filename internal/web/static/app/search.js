// Search: the box over the conversation list searches every conversation; the
// one in a conversation's header searches only it. A result opens the
// conversation at that message, loading the page around it, highlighted.

import { focusMessage, openConversation } from "./chat.js";
import { $, appendMarked, h, preview, shortTime, show, setText, avatar } from "./dom.js";
import { messageSummary } from "./list.js";
import { nameOf, peer, userName } from "./model.js";
import { S, parley } from "./state.js";

const DEBOUNCE_MS = 250;
let timer = null;
let seq = 0;

/** The words of a query, lower-cased, for highlighting. */
function words(q) {
  return q
    .toLowerCase()
    .split(/\s+/)
    .map((w) => w.replace(/[^\p{L}\p{N}_.-]/gu, ""))
    .filter(Boolean);
}

function runSearch(q, conversationId) {
  return parley.search(q, { conversationId: conversationId || undefined, limit: 30 });
}

function resultItem(m, q, { inChat }) {
  const conv = S.conversations.get(m.conversation_id);
  const p = conv ? peer(conv) : {};
  const who = userName(m.sender_id);
  const title = inChat ? who : nameOf(p);
  const text = h("span", { class: "result-body" });
  const prefix = inChat || m.sender_id !== (S.me && S.me.id) ? "" : "You: ";
  appendMarked(text, prefix + preview(messageSummary(m), 160), words(q));
  return h(
    "li",
    {},
    h(
      "button",
      {
        type: "button",
        class: "search-result",
        "data-testid": "search-result",
        "data-message-id": m.id,
        "data-conversation-id": m.conversation_id,
        "data-seq": String(m.seq),
        onclick: () => openResult(m),
      },
      inChat ? null : avatar(p),
      h("span", { class: "result-main" }, h("span", { class: "result-top" }, h("span", { class: "result-name", text: title }), h("time", { class: "result-time", datetime: m.created_at, text: shortTime(m.created_at) })), text),
    ),
  );
}

async function openResult(m) {
  if (S.current === m.conversation_id && S.pane === "chat") await focusMessage(m.conversation_id, m.seq);
  else await openConversation(m.conversation_id, { focusSeq: m.seq });
}

function scheduleSearch(input, statusId, listId, conversationId) {
  clearTimeout(timer);
  const q = input.value.trim();
  const mine = ++seq;
  if (q.length < 2) {
    setText(statusId, q ? "Type at least 2 characters." : "");
    $(listId).replaceChildren();
    return false;
  }
  setText(statusId, "Searching…");
  timer = setTimeout(async () => {
    let r;
    try {
      r = await runSearch(q, conversationId);
    } catch (err) {
      if (mine === seq) setText(statusId, err.code === "network_error" ? "Search needs a connection." : `Search failed: ${err.message || err}`);
      return;
    }
    if (mine !== seq) return; // a newer query is on its way
    const msgs = (r && r.messages) || [];
    for (const m of msgs) if (!S.conversations.has(m.conversation_id)) await loadConv(m.conversation_id);
    setText(statusId, msgs.length ? `${msgs.length}${r.has_more ? "+" : ""} ${msgs.length === 1 ? "message" : "messages"} found` : "No messages found.");
    $(listId).replaceChildren(...msgs.map((m) => resultItem(m, q, { inChat: !!conversationId })));
  }, DEBOUNCE_MS);
  return true;
}

async function loadConv(id) {
  try {
    const { upsertConversation } = await import("./model.js");
    upsertConversation(await parley.getConversation(id));
  } catch {
    /* shown without a name */
  }
}

function onGlobalInput() {
  const input = $("search-input");
  const active = input.value.trim().length > 0;
  show("search-view", active);
  show("conversation-list", !active);
  if (active) show("conversation-empty", false);
  else if (S.loaded) show("conversation-empty", S.conversations.size === 0);
  scheduleSearch(input, "search-status", "search-results", null);
}

export function clearSearch() {
  const input = $("search-input");
  input.value = "";
  onGlobalInput();
  closeChatSearch();
}

export function openChatSearch() {
  show("chat-search", true);
  $("chat-search-button").setAttribute("aria-expanded", "true");
  $("chat-search-input").focus();
}

export function closeChatSearch() {
  const wasOpen = !$("chat-search").hidden;
  show("chat-search", false);
  $("chat-search-button").setAttribute("aria-expanded", "false");
  $("chat-search-input").value = "";
  setText("chat-search-status", "");
  $("chat-search-results").replaceChildren();
  if (wasOpen && document.activeElement === document.body) $("chat-search-button").focus();
}

export function wireSearch() {
  $("search-form").addEventListener("submit", (e) => e.preventDefault());
  $("search-input").addEventListener("input", onGlobalInput);
  $("search-input").addEventListener("keydown", (e) => {
    if (e.key === "Escape") clearSearch();
  });
  $("chat-search-button").addEventListener("click", () => ($("chat-search").hidden ? openChatSearch() : closeChatSearch()));
  $("chat-search-close").addEventListener("click", () => {
    closeChatSearch();
    $("chat-search-button").focus();
  });
  $("chat-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const first = $("chat-search-results").querySelector("button");
    if (first) first.click();
  });
  $("chat-search-input").addEventListener("input", () => scheduleSearch($("chat-search-input"), "chat-search-status", "chat-search-results", S.current));
  $("chat-search-input").addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      closeChatSearch();
      $("chat-search-button").focus();
    }
  });
}
