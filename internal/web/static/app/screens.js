// Screens (loading, auth, main) and the panes of the main screen (list, chat,
// directory, profile; on a phone one pane shows at a time).

import { $, setText, show } from "./dom.js";
import { pushRoute } from "./router.js";
import { S } from "./state.js";

export function setScreen(name) {
  $("app").dataset.screen = name;
  show("loading-view", name === "loading");
  show("auth-view", name === "auth");
  show("main-view", name === "main");
}

export function setPane(name) {
  S.pane = name;
  $("app").dataset.pane = name;
  show("chat-view", name === "chat" && !!S.current);
  show("directory-view", name === "directory");
  show("profile-view", name === "profile");
  show("empty-view", name === "list" || (name === "chat" && !S.current));
}

export function showAuth(notice) {
  setScreen("auth");
  setAuthMode("login");
  show("auth-error", false);
  if (notice) {
    setText("auth-notice", notice);
    show("auth-notice", true);
  } else show("auth-notice", false);
  document.title = "Parley";
  $("login-username").focus();
}

export function setAuthMode(mode) {
  if (mode === "register" && S.config.registration === "closed") mode = "login";
  $("auth-view").dataset.mode = mode;
  show("login-form", mode === "login");
  show("register-form", mode === "register");
  show("auth-error", false);
}

export function authError(msg) {
  setText("auth-error", msg);
  show("auth-error", true);
}

/** Back from the directory or the profile: to the open conversation, else the list. */
export function leavePane() {
  pushRoute(S.current ? { c: S.current } : {});
  setPane(S.current ? "chat" : "list");
}
