// The idle logout warning: a dialog 60 s before the session ends for
// inactivity (half the timeout when that is shorter), with a countdown,
// "Stay signed in" (activity, told to the server at once) and "Sign out".
// The deadline and the logout are the SDK's (onIdleWarning), so the
// countdown and the logout agree across tabs.

import { $, setText } from "./dom.js";
import { S, parley } from "./state.js";

const LEAD_MS = 60000;
let off = null;
let deadline = 0;
let ticker = null;
let quiet = false;

function countdown() {
  setText("idle-countdown", String(Math.max(0, Math.ceil((deadline - Date.now()) / 1000))));
}

function open(w) {
  const dlg = $("idle-dialog");
  deadline = w.deadline;
  countdown();
  clearInterval(ticker);
  ticker = setInterval(countdown, 250);
  if (dlg.open) return;
  // Opening the dialog moves focus into it; that is not the person being
  // active, so the SDK's activity listener must not see it.
  quiet = true;
  try {
    dlg.showModal();
    $("idle-stay").focus();
  } finally {
    quiet = false;
  }
}

function close() {
  clearInterval(ticker);
  ticker = null;
  const dlg = $("idle-dialog");
  if (dlg.open) dlg.close();
}

export function startIdleWatch() {
  stopIdleWatch();
  if (typeof parley.onIdleWarning !== "function") return; // an SDK without idle warnings
  off = parley.onIdleWarning((w) => (w && S.me && !S.offline ? open(w) : close()), { beforeMs: LEAD_MS });
}

export function stopIdleWatch() {
  if (off) off();
  off = null;
  close();
}

export function wireIdle() {
  // Registered before the SDK's own capture listeners (wire() runs before
  // connect()), so it can hide the focus moves the app makes itself.
  for (const type of ["focus", "focusin"]) {
    window.addEventListener(
      type,
      (e) => {
        if (quiet) e.stopImmediatePropagation();
      },
      { capture: true },
    );
  }
  $("idle-stay").addEventListener("click", () => {
    close();
    parley.stayActive().catch(() => {});
  });
  $("idle-logout").addEventListener("click", () => {
    close();
    import("./session.js").then((s) => s.logout());
  });
  // Escape closes a modal dialog: take it as "stay".
  $("idle-dialog").addEventListener("cancel", () => {
    clearInterval(ticker);
    parley.stayActive().catch(() => {});
  });
}
