// Screens and panes (which part of the app shows).

import { $, setText, show } from "./dom.js";
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
  $("auth-view").dataset.mode = mode;
  show("login-form", mode === "login");
  show("register-form", mode === "register");
  show("auth-error", false);
}

export function authError(msg) {
  setText("auth-error", msg);
  show("auth-error", true);
}
