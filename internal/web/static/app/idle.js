// The idle logout warning: a dialog before the session ends for inactivity,
// with a countdown, "Stay signed in" (which counts as activity) and "Sign out".
// The deadline is the SDK's: the last activity any tab saw plus the server's
// idle timeout.

import { $, setText } from "./dom.js";
import { S, parley } from "./state.js";

const LEAD_MS = 60000;
let timer = null;
let quiet = false;

/** When the session will end for inactivity (ms since the epoch), or null. */
export function idleDeadline() {
  if (typeof parley.idleDeadline === "function") return parley.idleDeadline();
  if (typeof parley.idleDeadline === "number") return parley.idleDeadline || null;
  // Older SDKs: the server's clock restarts at the last activity the SDK
  // reported (r), which can be up to a report interval before the last one
  // it saw (a); warn from the earlier of the two.
  const t = parley.config && parley.config.idleTimeoutMs;
  const a = parley._activity;
  if (!(t > 0) || !a || !a.lastActivity) return null;
  const seen = typeof a._read === "function" ? a._read() : { a: a.lastActivity, r: a.lastActivity };
  return Math.min(seen.a || Infinity, seen.r || Infinity) + t;
}

/** 60 s before, or half the timeout when that is shorter (short test settings). */
function lead() {
  const t = (parley.config && parley.config.idleTimeoutMs) || 0;
  return Math.min(LEAD_MS, t / 2);
}

function tick() {
  const dlg = $("idle-dialog");
  const d = S.me && !S.offline ? idleDeadline() : null;
  const left = d == null ? Infinity : d - Date.now();
  if (left <= lead() && left > -5000) {
    setText("idle-countdown", String(Math.max(0, Math.ceil(left / 1000))));
    if (!dlg.open) {
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
  } else if (dlg.open) dlg.close();
}

export function startIdleWatch() {
  stopIdleWatch();
  timer = setInterval(tick, 500);
}

export function stopIdleWatch() {
  clearInterval(timer);
  timer = null;
  const dlg = $("idle-dialog");
  if (dlg.open) dlg.close();
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
    // The click is activity for the SDK already; tell the server now too, so
    // its timer restarts even if the SDK's last report was recent.
    parley.api("POST", "/api/auth/activity").catch(() => {});
    $("idle-dialog").close();
  });
  $("idle-logout").addEventListener("click", () => {
    $("idle-dialog").close();
    import("./session.js").then((s) => s.logout());
  });
  // Escape would close the dialog without saying whether to stay: treat it as "stay".
  $("idle-dialog").addEventListener("cancel", () => {
    parley.api("POST", "/api/auth/activity").catch(() => {});
  });
}
