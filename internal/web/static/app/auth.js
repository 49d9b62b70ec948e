// Log in and register. Registration checks every field at once and shows each
// error under its field (aria-invalid, aria-describedby); usernames are
// lower-cased as they are typed.

import { $, errText, setText, show } from "./dom.js";
import { authError, setAuthMode } from "./screens.js";
import { startSession, tabs } from "./session.js";
import { S, parley } from "./state.js";

const USERNAME_RE = /^[a-z0-9_.-]{3,32}$/;

function fieldError(id, msg) {
  const input = $(id);
  const el = $(`${id}-error`);
  setText(`${id}-error`, msg || "");
  show(el, !!msg);
  if (msg) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

/** Every problem of the form at once; returns the fields in error. */
function validateRegister() {
  const username = $("register-username").value.trim();
  const password = $("register-password").value;
  const errors = {};
  if (!username) errors["register-username"] = "Choose a username.";
  else if (username.length < 3 || username.length > 32) errors["register-username"] = "Usernames have 3 to 32 characters.";
  else if (!USERNAME_RE.test(username)) errors["register-username"] = "Use only a–z, 0–9 and _ . - in usernames.";
  if (!password) errors["register-password"] = "Choose a password.";
  else if (password.length < 8) errors["register-password"] = "Passwords need at least 8 characters.";
  if ($("register-display-name").value.length > 100) errors["register-display-name"] = "Display names have at most 100 characters.";
  for (const id of ["register-username", "register-display-name", "register-password"]) fieldError(id, errors[id]);
  return Object.keys(errors);
}

export function clearRegisterErrors() {
  for (const id of ["register-username", "register-display-name", "register-password"]) fieldError(id, "");
}

async function onLogin(e) {
  e.preventDefault();
  const username = $("login-username").value.trim().toLowerCase();
  const password = $("login-password").value;
  if (!username || !password) return authError("Enter your username and password.");
  const btn = $("login-submit");
  btn.disabled = true;
  try {
    const r = await parley.login(username, password);
    S.me = r.user;
    $("login-password").value = "";
    startSession();
    tabs.post({ t: "login" });
  } catch (err) {
    authError(err.status === 401 ? "Wrong username or password." : errText(err));
  } finally {
    btn.disabled = false;
  }
}

async function onRegister(e) {
  e.preventDefault();
  show("auth-error", false);
  const bad = validateRegister();
  if (bad.length) {
    $(bad[0]).focus();
    return;
  }
  const username = $("register-username").value.trim();
  const password = $("register-password").value;
  const display_name = $("register-display-name").value.trim() || undefined;
  const role = $("register-role-professional").checked ? "professional" : "client";
  const btn = $("register-submit");
  btn.disabled = true;
  try {
    const r = await parley.register({ username, password, display_name, role });
    S.me = r.user;
    $("register-password").value = "";
    clearRegisterErrors();
    startSession();
    tabs.post({ t: "login" });
  } catch (err) {
    if (err.status === 409) {
      fieldError("register-username", "That username is taken. Try another.");
      $("register-username").focus();
    } else if (err.status === 400 && /password/i.test(err.message || "")) {
      fieldError("register-password", err.message);
      $("register-password").focus();
    } else if (err.status === 400 && /username/i.test(err.message || "")) {
      fieldError("register-username", err.message);
      $("register-username").focus();
    } else if (err.status === 403) authError("Registration is closed on this server. Ask an administrator for an account.");
    else authError(errText(err));
  } finally {
    btn.disabled = false;
  }
}

/** Lower-cases a username field as it is typed, keeping the caret where it was. */
function lowercaseAsTyped(input) {
  input.addEventListener("input", () => {
    const v = input.value;
    const lower = v.toLowerCase();
    if (v === lower) return;
    const start = input.selectionStart;
    const end = input.selectionEnd;
    input.value = lower;
    input.setSelectionRange(start, end);
  });
}

export function wireAuth() {
  $("show-register").addEventListener("click", () => {
    setAuthMode("register");
    $("register-username").focus();
  });
  $("show-login").addEventListener("click", () => {
    setAuthMode("login");
    clearRegisterErrors();
    $("login-username").focus();
  });
  $("login-form").addEventListener("submit", onLogin);
  $("register-form").addEventListener("submit", onRegister);
  lowercaseAsTyped($("register-username"));
  lowercaseAsTyped($("login-username"));
  // A field's error goes once it is fixed.
  $("register-username").addEventListener("input", () => $("register-username").hasAttribute("aria-invalid") && USERNAME_RE.test($("register-username").value.trim()) && fieldError("register-username", ""));
  $("register-password").addEventListener("input", () => $("register-password").hasAttribute("aria-invalid") && $("register-password").value.length >= 8 && fieldError("register-password", ""));
}
