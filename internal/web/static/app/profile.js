// The profile pane: display name and bio (PATCH /api/me), and this browser's
// notification settings.

import { $, avatar, errText, setText, show } from "./dom.js";
import { rememberUser } from "./model.js";
import { renderNotificationSettings } from "./notify.js";
import { pushRoute } from "./router.js";
import { leavePane, setPane } from "./screens.js";
import { renderMe } from "./session.js";
import { S, parley } from "./state.js";

const BIO_MAX = 280;

export function openProfile({ fromRoute = false } = {}) {
  if (!S.me) return;
  if (!fromRoute) pushRoute({ view: "profile" });
  setPane("profile");
  fill();
  renderNotificationSettings();
  parley
    .me()
    .then((u) => {
      S.me = { ...S.me, ...u };
      if (S.pane === "profile" && !document.getElementById("profile-form").contains(document.activeElement)) fill();
    })
    .catch(() => {});
  $("profile-display-name").focus();
}

function fill() {
  const me = S.me;
  avatar(me, $("profile-avatar"), "large");
  setText("profile-username", me.username ? `@${me.username}` : me.display_name || "");
  setText("profile-role", me.role === "professional" ? "Professional" : "Client");
  $("profile-display-name").value = me.display_name || "";
  $("profile-bio").value = me.bio || "";
  setText("profile-saved", "");
  show("profile-error", false);
  countBio();
}

function countBio() {
  const n = [...$("profile-bio").value].length;
  setText("profile-bio-count", `${n} / ${BIO_MAX}`);
}

async function save(e) {
  e.preventDefault();
  const display_name = $("profile-display-name").value.trim();
  const bio = $("profile-bio").value.trim();
  show("profile-error", false);
  if ([...bio].length > BIO_MAX) {
    setText("profile-error", `The bio can have at most ${BIO_MAX} characters.`);
    show("profile-error", true);
    $("profile-bio").setAttribute("aria-invalid", "true");
    return;
  }
  $("profile-bio").removeAttribute("aria-invalid");
  const btn = $("profile-save");
  btn.disabled = true;
  try {
    const body = { bio };
    if (display_name) body.display_name = display_name;
    const u = await parley.updateProfile(body);
    S.me = { ...S.me, ...u };
    rememberUser(S.me);
    renderMe();
    fill();
    setText("profile-saved", "Saved.");
  } catch (err) {
    setText("profile-error", errText(err));
    show("profile-error", true);
  } finally {
    btn.disabled = false;
  }
}

export function wireProfile() {
  $("profile-button").addEventListener("click", () => openProfile());
  $("profile-back").addEventListener("click", leavePane);
  $("profile-form").addEventListener("submit", save);
  $("profile-bio").addEventListener("input", countBio);
}
