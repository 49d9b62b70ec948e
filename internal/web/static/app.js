// Parley web app: plain ES modules, no build step. Uses the SDK at /sdk/parley.js.
// This file wires the page; the screens and concerns live in /app/*.js:
//   state.js      the SDK instance and the model (window.parleyApp)
//   dom.js        elements built with DOM calls, icons, avatars, links, toasts, times
//   model.js      users, conversations, loaded messages
//   prefs.js      per-user settings, written times, the offline snapshot (localStorage)
//   router.js     the open conversation / pane in the URL, back and forward
//   screens.js    screens and panes
//   session.js    boot (online or from the offline snapshot), snapshot loading, logout
//   auth.js       log in, register (inline errors)
//   events.js     SDK events applied to the model
//   status.js     connection words and the offline banner
//   list.js       the conversation list
//   chat.js       the open conversation, jumping to a message, read markers
//   messages.js   the timeline and message actions (delete with undo)
//   composer.js   the composer and file uploads
//   viewer.js     the image viewer
//   search.js     search over all conversations and in one
//   directory.js  the directory of professionals
//   profile.js    profile (bio) and notification settings
//   notify.js     sound, notifications, Web Push
//   idle.js       the idle logout warning
//   calls.js      calls and call records
// The service worker (/sw.js) caches the app shell for offline use and shows
// push notifications.
//
// Message bodies, names, subjects and every other server string are put in the
// page with textContent (or text nodes and <a>/<mark> made with DOM calls), never
// innerHTML: a body such as `<img src=x onerror=alert(1)>` shows as those characters.
//
// ---------------------------------------------------------------------------
// DOM hooks for browser tests (stable; change them only together with the tests)
//
// Screens: #app[data-screen="loading"|"auth"|"main"] and
//   [data-pane="list"|"chat"|"directory"|"profile"] (the pane matters on narrow
//   screens, where one pane shows at a time). The URL is /?c=<conversation id>,
//   /?view=directory, /?view=profile or /.
// Auth (#auth-view[data-mode="login"|"register"]):
//   login-form, login-username, login-password, login-submit, show-register,
//   register-form, register-username, register-display-name, register-password,
//   register-role-client, register-role-professional, register-submit, show-login,
//   register-username-error, register-display-name-error, register-password-error
//   (inline, the field gets aria-invalid="true"), auth-error (role=alert),
//   auth-notice (e.g. "session expired").
//   (Each is both the element id and its data-testid.)
// Header: profile-button, me-name, me-role, logout-button, reconnect-button
//   (shown while not connected), connection-status
//   [data-state="connecting|connected|reconnecting|polling|disconnected"]
//   [data-quality="good|poor|offline"]; offline-banner[data-kind="offline|reconnecting|"].
// Conversations: search-input, search-view, search-status, search-results with
//   [data-testid="search-result"][data-conversation-id][data-message-id][data-seq];
//   conversation-list; each [data-testid="conversation-item"]
//   [data-conversation-id][data-unread="N"][data-muted] (a button) holds
//   [data-testid="presence"][data-online="true|false"], [data-testid="conversation-name"],
//   [data-testid="conversation-last"], [data-testid="unread-badge"] (only when N > 0),
//   [data-testid="muted-mark"]. conversation-empty; new-conversation-button (clients only).
// Directory (clients): directory-view, directory-search, professional-list, each
//   [data-testid="professional-item"][data-user-id] (a button) with
//   [data-testid="professional-username"], [data-testid="professional-bio"];
//   new-conversation-form, new-conversation-subject, new-conversation-body,
//   new-conversation-submit, new-conversation-cancel, directory-back.
// Profile: profile-view, profile-display-name, profile-bio, profile-save,
//   profile-saved, profile-error, profile-back, setting-notifications, setting-sound.
// Chat: chat-view[data-conversation-id], chat-title, chat-subtitle,
//   chat-presence[data-online], back-button, chat-search-button, chat-search,
//   chat-search-input, chat-search-results (search-result items as above),
//   mute-button[aria-pressed], load-older, jump-latest, message-list,
//   typing-indicator (hidden when nobody types), reply-preview, reply-preview-text,
//   cancel-reply, attachment-tray with [data-testid="tray-item"][data-state=
//   "uploading|done|failed"] and [data-testid="tray-remove"], attach-button,
//   attach-input (the file input), composer, message-input, send-button,
//   call-audio-button, call-video-button.
// Timeline (#message-list): [data-testid="day-separator"], [data-testid="new-divider"],
//   [data-testid="call-record"][data-call-id][data-outcome="missed|declined|cancelled|completed"],
//   and messages: each li[data-testid="message"] with
//   data-message-id (absent while pending), data-seq (absent while pending),
//   data-client-id (when the message has one), data-sender-id, data-own="true|false",
//   data-kind="system" for system messages,
//   data-status = "pending" | "failed" | "sent" | "delivered" | "read" (own messages;
//   "received" for the peer's), data-deleted="true|false", data-edited="true|false",
//   data-grouped="true" when it continues the previous sender's group,
//   data-undo="true" while a delete can be undone, data-found="true" while
//   highlighted after a search.
//   Inside: [data-testid="message-body"] (links as a[data-testid="message-link"]),
//   [data-testid="message-time"], [data-testid="message-quote"] (replies),
//   [data-testid="attachment-image"] (a button opening image-viewer),
//   [data-testid="attachment-file"] (a download link),
//   [data-testid="message-status"] (a clock icon while pending, ✓ delivered, ✓✓ read),
//   [data-testid="message-edited"], buttons [data-testid="reply-button"],
//   [data-testid="edit-button"], [data-testid="delete-button"] (own, not deleted),
//   [data-testid="undo-delete"], [data-testid="retry-button"],
//   [data-testid="discard-button"] (failed sends); while editing
//   [data-testid="edit-input"], [data-testid="edit-save"], [data-testid="edit-cancel"].
// Calls: call-panel[data-call-state="none|incoming|outgoing|active|elsewhere|ended"]
//   [data-call-id][data-media], call-title, call-status, call-duration, call-mute and
//   call-camera (aria-pressed), call-accept, call-decline, call-end, remote-video, local-video.
// Dialogs: image-viewer (image-viewer-img, image-viewer-open, image-viewer-close),
//   idle-dialog (idle-countdown, idle-stay, idle-logout).
// toast (toast-action: e.g. Undo): transient notices and errors.
//
// window.parleyApp = { parley, state, sounds } is exposed for tests and debugging
// (sounds counts the message sounds played).
//
// ICE servers for calls come from /api/config (ice_servers); a JSON RTCIceServer
// array in localStorage["parley:iceServers"] overrides them in this browser.
// ---------------------------------------------------------------------------

import { wireAuth } from "./app/auth.js";
import { acceptCall, declineCall, endCall, startCall, toggleCamera, toggleMute } from "./app/calls.js";
import { closeConversation, jumpToLatest, openConversation, scheduleMarkRead, toggleMute as toggleConvMute } from "./app/chat.js";
import { sendCurrent, wireComposerFiles } from "./app/composer.js";
import { openDirectory, renderDirectory, submitNewConversation } from "./app/directory.js";
import { $, autosize, icon, runToastAction } from "./app/dom.js";
import { cancelEdit, cancelReply, flushDeletesOnExit, onScroll } from "./app/messages.js";
import { wireIdle } from "./app/idle.js";
import { wireNotificationSettings } from "./app/notify.js";
import { openProfile, wireProfile } from "./app/profile.js";
import { onRouteChange } from "./app/router.js";
import { leavePane, setPane } from "./app/screens.js";
import { boot, logout } from "./app/session.js";
import { wireSearch } from "./app/search.js";
import { S, parley } from "./app/state.js";
import { wireViewer } from "./app/viewer.js";

function wire() {
  $("loading-retry").addEventListener("click", boot);
  wireAuth();
  wireSearch();
  wireProfile();
  wireViewer();
  wireIdle();
  wireNotificationSettings();
  wireComposerFiles();

  for (const [id, name, size] of [
    ["chat-search-button", "search", 20],
    ["call-audio-button", "phone", 20],
    ["call-video-button", "video", 20],
    ["attach-button", "clip", 20],
  ])
    $(id).replaceChildren(icon(name, size));

  $("logout-button").addEventListener("click", logout);
  $("reconnect-button").addEventListener("click", () => parley.reconnect());
  $("new-conversation-button").addEventListener("click", () => openDirectory());
  $("directory-back").addEventListener("click", leavePane);
  $("directory-search").addEventListener("input", renderDirectory);
  $("new-conversation-form").addEventListener("submit", submitNewConversation);
  $("new-conversation-cancel").addEventListener("click", () => {
    S.newConvTo = null;
    $("new-conversation-form").hidden = true;
  });
  $("back-button").addEventListener("click", () => closeConversation());
  $("load-older").addEventListener("click", () => import("./app/chat.js").then((c) => c.loadOlder()));
  $("jump-latest").addEventListener("click", jumpToLatest);
  $("mute-button").addEventListener("click", toggleConvMute);
  $("cancel-reply").addEventListener("click", () => {
    cancelReply();
    $("message-input").focus();
  });
  $("toast-action").addEventListener("click", runToastAction);

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
  $("call-mute").addEventListener("click", toggleMute);
  $("call-camera").addEventListener("click", toggleCamera);

  $("message-scroller").addEventListener("scroll", onScroll);

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") scheduleMarkRead();
  });
  window.addEventListener("focus", scheduleMarkRead);
  window.addEventListener("pagehide", (e) => {
    flushDeletesOnExit();
    // A page that goes away (not into the back/forward cache) ends its
    // connection now. Otherwise the SDK sees its stream drop and polls once
    // on the way out, and a poll keeps its user online for 30 s: peers would
    // see someone who closed the app as online for half a minute.
    if (!e.persisted) parley.close();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && S.editing) cancelEdit();
  });

  // Back and forward: the URL says what is open.
  onRouteChange((route) => {
    if (route.c) {
      if (route.c !== S.current || S.pane !== "chat") openConversation(route.c, { fromRoute: true });
    } else if (route.view === "directory" && S.me.role === "client") openDirectory({ fromRoute: true });
    else if (route.view === "profile") openProfile({ fromRoute: true });
    else if (S.current) closeConversation({ fromRoute: true });
    else setPane("list");
  });

  // Notification clicks from the service worker: open that conversation here.
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.addEventListener("message", (e) => {
      const d = e.data || {};
      if (d.type === "open-conversation" && d.conversation_id && S.me) openConversation(d.conversation_id);
    });
  }
}

/**
 * The service worker keeps the app shell for a tab opened offline. It is
 * network-first, so a new binary's files are used as soon as the server
 * answers; it never touches /api/.
 */
function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((err) => console.warn("service worker", err));
}

wire();
boot();
registerServiceWorker();
