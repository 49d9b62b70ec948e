// The directory of professionals (clients): a search over name, username and
// bio; each entry shows its @handle and bio so two people with one name can be
// told apart; and the new-conversation form.

import { openConversation } from "./chat.js";
import { $, appendMarked, avatar, errText, h, setText, show, toast } from "./dom.js";
import { nameOf, peer, rememberUser, upsertConversation } from "./model.js";
import { pushRoute } from "./router.js";
import { setPane } from "./screens.js";
import { S, parley } from "./state.js";

export async function openDirectory({ fromRoute = false } = {}) {
  if (!fromRoute) pushRoute({ view: "directory" });
  setPane("directory");
  S.newConvTo = null;
  show("new-conversation-form", false);
  show("professional-list", true);
  try {
    S.directory = await parley.users("professional");
    for (const u of S.directory) rememberUser(u);
  } catch (err) {
    toast(errText(err));
  }
  renderDirectory();
  const first = $("professional-list").querySelector("button");
  if (first) first.focus();
}

function fold(s) {
  return String(s || "")
    .normalize("NFD")
    .replace(/\p{M}/gu, "")
    .toLowerCase();
}

export function renderDirectory() {
  const q = fold($("directory-search").value.trim());
  const terms = q.split(/\s+/).filter(Boolean);
  const users = S.directory.map((u0) => S.users.get(u0.id) || u0);
  const shown = users.filter((u) => {
    const hay = fold(`${u.display_name || ""} ${u.username || ""} ${u.bio || ""}`);
    return terms.every((t) => hay.includes(t));
  });
  const names = new Map();
  for (const u of users) names.set(fold(nameOf(u)), (names.get(fold(nameOf(u))) || 0) + 1);
  const talking = new Set([...S.conversations.values()].map((c) => peer(c).id));
  const items = shown.map((u) => {
    const bio = h("span", { class: "pro-bio", "data-testid": "professional-bio" });
    appendMarked(bio, u.bio || "", terms);
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "professional-item", "data-testid": "professional-item", "data-user-id": u.id, onclick: () => chooseProfessional(u) },
        h("span", { class: "avatar-wrap" }, avatar(u), h("span", { class: "presence", "data-testid": "presence", "data-online": String(!!u.online) })),
        h(
          "span",
          { class: "pro-main" },
          h(
            "span",
            { class: "pro-top" },
            h("span", { class: "pro-name", text: nameOf(u) }),
            u.username ? h("span", { class: "pro-username", "data-testid": "professional-username", text: `@${u.username}` }) : null,
            names.get(fold(nameOf(u))) > 1 ? h("span", { class: "visually-hidden", text: "(same name as another professional)" }) : null,
          ),
          u.bio ? bio : null,
          talking.has(u.id) ? h("span", { class: "hint", text: "You already have a conversation" }) : null,
        ),
      ),
    );
  });
  $("professional-list").replaceChildren(...items);
  show("directory-empty", shown.length === 0);
  setText("directory-empty", S.directory.length === 0 ? "No professionals have registered yet." : "Nobody matches that search.");
}

export function chooseProfessional(u) {
  S.newConvTo = u;
  setText("new-conversation-to", u.display_name || u.username);
  show("new-conversation-error", false);
  show("new-conversation-form", true);
  $("new-conversation-body").focus();
}

export async function submitNewConversation(e) {
  e.preventDefault();
  const u = S.newConvTo;
  const body = $("new-conversation-body").value;
  if (!u) return;
  if (!body.trim()) {
    setText("new-conversation-error", "Write a first message.");
    show("new-conversation-error", true);
    return;
  }
  const btn = $("new-conversation-submit");
  btn.disabled = true;
  try {
    const conv = await parley.createConversation({ professional_id: u.id, subject: $("new-conversation-subject").value.trim(), body });
    upsertConversation(conv);
    $("new-conversation-subject").value = "";
    $("new-conversation-body").value = "";
    show("new-conversation-form", false);
    await openConversation(conv.id);
  } catch (err) {
    setText("new-conversation-error", errText(err));
    show("new-conversation-error", true);
  } finally {
    btn.disabled = false;
  }
}
