// Parley web app: plain ES module, no build step. Uses the SDK at /sdk/parley.js.
//
// Message bodies, names, subjects and every other server string are put in the
// page with textContent only, never innerHTML: a body such as
// `<img src=x onerror=alert(1)>` shows as those characters.
//
// ---------------------------------------------------------------------------
// DOM hooks for browser tests (stable; change them only together with the tests)
//
// Screens: #app[data-screen="loading"|"auth"|"main"] and [data-pane="list"|"chat"|"directory"]
//   (the pane matters on narrow screens, where one pane shows at a time).
// Auth (#auth-view[data-mode="login"|"register"]):
//   login-form, login-username, login-password, login-submit, show-register,
//   register-form, register-username, register-display-name, register-password,
//   register-role-client, register-role-professional, register-submit, show-login,
//   auth-error (role=alert), auth-notice (e.g. "session expired").
//   (Each is both the element id and its data-testid.)
// Header: me-name, me-role, logout-button, reconnect-button,
//   connection-status [data-state="connecting|connected|reconnecting|polling|disconnected"]
//                     [data-quality="good|poor|offline"].
// Conversations: conversation-list; each [data-testid="conversation-item"]
//   [data-conversation-id][data-unread="N"] (a button) holds
//   [data-testid="presence"][data-online="true|false"], [data-testid="conversation-name"],
//   [data-testid="conversation-last"], [data-testid="unread-badge"] (only when N > 0).
//   conversation-empty; new-conversation-button (clients only).
// Directory (clients): directory-view, professional-list, each
//   [data-testid="professional-item"][data-user-id] (a button); new-conversation-form,
//   new-conversation-subject, new-conversation-body, new-conversation-submit,
//   new-conversation-cancel, directory-back.
// Chat: chat-view[data-conversation-id], chat-title, chat-subtitle,
//   chat-presence[data-online], back-button, load-older, message-list,
//   typing-indicator (hidden when nobody types), reply-preview, reply-preview-text,
//   cancel-reply, composer, message-input, send-button, call-audio-button,
//   call-video-button.
// Messages: each li[data-testid="message"] with
//   data-message-id (absent while pending), data-seq (absent while pending),
//   data-client-id (when the message has one), data-sender-id, data-own="true|false",
//   data-status = "pending" | "failed" | "sent" | "delivered" | "read" (own messages;
//   "received" for the peer's), data-deleted="true|false", data-edited="true|false",
//   data-grouped="true" when it continues the previous sender's group.
//   Inside: [data-testid="message-body"], [data-testid="message-quote"] (replies),
//   [data-testid="message-status"] (✓ delivered, ✓✓ read), [data-testid="message-edited"],
//   buttons [data-testid="reply-button"], [data-testid="edit-button"],
//   [data-testid="delete-button"] (own, not deleted), [data-testid="retry-button"],
//   [data-testid="discard-button"] (failed sends); while editing
//   [data-testid="edit-input"], [data-testid="edit-save"], [data-testid="edit-cancel"].
// Calls: call-panel[data-call-state="none|incoming|outgoing|active|elsewhere|ended"]
//   [data-call-id][data-media], call-title, call-status, call-accept, call-decline,
//   call-end, remote-video, local-video.
// toast: transient notices and errors.
//
// window.parleyApp = { parley, state } is exposed for tests and debugging.
//
// ICE servers for calls: none by default (works on a LAN / same host); set
// localStorage["parley:iceServers"] to a JSON RTCIceServer array to add STUN/TURN.

import { acceptCall, declineCall, endCall, startCall } from "./app/calls.js";
import { closeConversation, loadOlder, scheduleMarkRead } from "./app/chat.js";
import { sendCurrent } from "./app/composer.js";
import { openDirectory, submitNewConversation } from "./app/directory.js";
import { $, autosize, errText, show } from "./app/dom.js";
import { cancelEdit, cancelReply } from "./app/messages.js";
import { authError, setAuthMode, setPane } from "./app/screens.js";
import { boot, logout, startSession, tabs } from "./app/session.js";
import { S, parley } from "./app/state.js";

function wire() {
  $("loading-retry").addEventListener("click", boot);
  $("show-register").addEventListener("click", () => {
    setAuthMode("register");
    $("register-username").focus();
  });
  $("show-login").addEventListener("click", () => {
    setAuthMode("login");
    $("login-username").focus();
  });

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("login-username").value.trim();
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
  });

  $("register-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("register-username").value.trim();
    const password = $("register-password").value;
    const display_name = $("register-display-name").value.trim() || undefined;
    const role = $("register-role-professional").checked ? "professional" : "client";
    if (!/^[a-z0-9_.-]{3,32}$/.test(username)) return authError("Usernames are 3–32 characters: a–z, 0–9, _ . -");
    if (password.length < 8) return authError("Passwords need at least 8 characters.");
    const btn = $("register-submit");
    btn.disabled = true;
    try {
      const r = await parley.register({ username, password, display_name, role });
      S.me = r.user;
      $("register-password").value = "";
      startSession();
      tabs.post({ t: "login" });
    } catch (err) {
      authError(err.status === 409 ? "That username is taken." : errText(err));
    } finally {
      btn.disabled = false;
    }
  });

  $("logout-button").addEventListener("click", logout);
  $("reconnect-button").addEventListener("click", () => parley.reconnect());
  $("new-conversation-button").addEventListener("click", openDirectory);
  $("directory-back").addEventListener("click", () => setPane(S.current ? "chat" : "list"));
  $("new-conversation-form").addEventListener("submit", submitNewConversation);
  $("new-conversation-cancel").addEventListener("click", () => {
    S.newConvTo = null;
    show("new-conversation-form", false);
  });
  $("back-button").addEventListener("click", closeConversation);
  $("load-older").addEventListener("click", loadOlder);
  $("cancel-reply").addEventListener("click", () => {
    cancelReply();
    $("message-input").focus();
  });

  const input = $("message-input");
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    sendCurrent();
    input.focus();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendCurrent();
    } else if (e.key === "Escape") {
      if (S.replyTo) cancelReply();
    }
  });
  input.addEventListener("input", () => {
    autosize(input);
    if (S.current && input.value.trim()) parley.typing(S.current);
    else if (S.current) parley.stopTyping(S.current);
  });

  $("call-audio-button").addEventListener("click", () => startCall("audio"));
  $("call-video-button").addEventListener("click", () => startCall("video"));
  $("call-accept").addEventListener("click", acceptCall);
  $("call-decline").addEventListener("click", declineCall);
  $("call-end").addEventListener("click", endCall);

  $("message-scroller").addEventListener("scroll", () => {
    const sc = $("message-scroller");
    if (sc.scrollTop < 40) loadOlder();
  });

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") scheduleMarkRead();
  });
  window.addEventListener("focus", scheduleMarkRead);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && S.editing) cancelEdit();
  });
}

wire();
boot();
