// The directory of professionals and the new-conversation form (clients).

import { openConversation } from "./chat.js";
import { $, errText, h, setText, show, toast } from "./dom.js";
import { rememberUser, upsertConversation } from "./model.js";
import { setPane } from "./screens.js";
import { S, parley } from "./state.js";

export async function openDirectory() {
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

export function renderDirectory() {
  const items = S.directory.map((u0) => {
    const u = S.users.get(u0.id) || u0;
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "professional-item", "data-testid": "professional-item", "data-user-id": u.id, onclick: () => chooseProfessional(u) },
        h("span", { class: "presence", "data-testid": "presence", "data-online": String(!!u.online) }),
        h("span", { class: "pro-name", text: u.display_name || u.username }),
        h("span", { class: "pro-username", text: `@${u.username}` }),
      ),
    );
  });
  $("professional-list").replaceChildren(...items);
  show("directory-empty", S.directory.length === 0);
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
