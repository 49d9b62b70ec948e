// Notifications of new messages: a short sound while the tab is hidden or
// another conversation is open, a system notification while the tab is hidden
// (asked for after the first message you send, or from the profile's
// settings, never on load), per-conversation mute, and Web Push for when no
// tab is open (the service worker, /sw.js, shows those).

import { $, setText } from "./dom.js";
import { messageSummary } from "./list.js";
import { nameOf, peer } from "./model.js";
import { isMuted, saveSettings, settings } from "./prefs.js";
import { S, parley } from "./state.js";

const supported = () => typeof Notification === "function";
const tabId = Math.random().toString(36).slice(2);

export function startNotifications() {
  renderNotificationSettings();
  if (supported() && Notification.permission === "granted" && settings().notify) subscribePush().catch(() => {});
}

export function stopNotifications() {
  // The server drops this session's push subscriptions at logout.
}

/** Called after the person sends a message: the one moment we ask, once. */
export function askNotificationsOnce() {
  if (!S.me || !supported() || Notification.permission !== "default") return;
  const k = `parley:app:${S.me.id}:asked`;
  if (localStorage.getItem(k)) return;
  localStorage.setItem(k, "1");
  requestNotifications();
}

async function requestNotifications() {
  let p;
  try {
    p = await Notification.requestPermission();
  } catch {
    p = Notification.permission;
  }
  saveSettings({ notify: p === "granted" });
  renderNotificationSettings();
  if (p === "granted") subscribePush().catch(() => {});
  return p;
}

export function renderNotificationSettings() {
  const box = $("setting-notifications");
  const s = S.me ? settings() : { notify: false, sound: true };
  const perm = supported() ? Notification.permission : "unsupported";
  box.checked = s.notify && perm === "granted";
  box.disabled = perm === "denied" || perm === "unsupported";
  $("setting-sound").checked = s.sound;
  const notes = {
    denied: "Notifications are blocked for this site in your browser's settings.",
    unsupported: "This browser cannot show notifications.",
    default: "Your browser will ask for permission.",
    granted: box.checked ? "You get a notification when a message arrives while Parley is in the background." : "",
  };
  setText("setting-notifications-note", notes[perm] || "");
}

export function wireNotificationSettings() {
  $("setting-notifications").addEventListener("change", async (e) => {
    if (e.target.checked) {
      if (Notification.permission === "granted") {
        saveSettings({ notify: true });
        subscribePush().catch(() => {});
      } else await requestNotifications();
    } else {
      saveSettings({ notify: false });
      unsubscribePush().catch(() => {});
    }
    renderNotificationSettings();
  });
  $("setting-sound").addEventListener("change", (e) => {
    saveSettings({ sound: e.target.checked });
    if (e.target.checked) playSound();
  });
  // Browsers let a page play sound only after the person has interacted with it.
  const unlock = () => {
    audio();
    window.removeEventListener("pointerdown", unlock, true);
    window.removeEventListener("keydown", unlock, true);
  };
  window.addEventListener("pointerdown", unlock, true);
  window.addEventListener("keydown", unlock, true);
}

/**
 * A new message from the peer. Sound when it is not in front of the person
 * (tab hidden, or another conversation open); a notification when the tab is
 * hidden. Muted conversations stay silent. With several tabs, one of them does
 * it (a claim in localStorage per message).
 */
export async function notifyMessage(conv, m) {
  if (!S.me || isMuted(conv.id)) return;
  const visible = document.visibilityState === "visible";
  const inFront = visible && S.current === conv.id && S.pane === "chat";
  if (inFront) return;
  if (!(await claim(m.id, visible))) return;
  const s = settings();
  if (s.sound) playSound();
  if (!visible && s.notify && supported() && Notification.permission === "granted") await showNotification(conv, m);
}

async function claim(id, visible) {
  const key = `parley:app:notified:${id}`;
  try {
    if (!visible) await new Promise((r) => setTimeout(r, 120)); // a visible tab goes first
    if (localStorage.getItem(key)) return false;
    localStorage.setItem(key, tabId);
    setTimeout(() => localStorage.removeItem(key), 60000);
    await new Promise((r) => setTimeout(r, 30));
    return localStorage.getItem(key) === tabId;
  } catch {
    return true;
  }
}

async function showNotification(conv, m) {
  const title = nameOf(peer(conv));

  const opts = { body: messageSummary(m).slice(0, 200), tag: `parley:${conv.id}`, renotify: true, data: { url: `/?c=${encodeURIComponent(conv.id)}`, conversation_id: conv.id, message_id: m.id } };
  try {
    const reg = navigator.serviceWorker && (await navigator.serviceWorker.getRegistration());
    if (reg && reg.active) {
      await reg.showNotification(title, opts);
      return;
    }
  } catch (err) {
    console.warn("notification through the service worker:", err);
  }
  try {
    const n = new Notification(title, opts);
    n.onclick = () => {
      window.focus();
      import("./chat.js").then((c) => c.openConversation(conv.id));
      n.close();
    };
  } catch {
    /* some browsers allow notifications only from a service worker */
  }
}

// --- sound -------------------------------------------------------------------------

let ctx = null;
function audio() {
  if (!ctx) {
    try {
      ctx = new (window.AudioContext || window.webkitAudioContext)();
    } catch {
      ctx = null;
    }
  }
  if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
  return ctx;
}

let lastSound = 0;
/** Two short soft tones; at most one a second however many messages arrive. */
export function playSound() {
  const now = Date.now();
  if (now - lastSound < 1000) return;
  lastSound = now;
  const a = audio();
  if (!a) return;
  try {
    const t = a.currentTime;
    for (const [f, at] of [
      [880, 0],
      [1318.5, 0.09],
    ]) {
      const o = a.createOscillator();
      const g = a.createGain();
      o.type = "sine";
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, t + at);
      g.gain.exponentialRampToValueAtTime(0.08, t + at + 0.015);
      g.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.22);
      o.connect(g).connect(a.destination);
      o.start(t + at);
      o.stop(t + at + 0.25);
    }
    window.parleyApp.sounds = (window.parleyApp.sounds || 0) + 1;
  } catch {
    /* no sound is fine */
  }
}

// --- Web Push ----------------------------------------------------------------------

/**
 * Subscribes this browser to Web Push (the SDK uses the server's VAPID key and
 * registers the subscription for this session), so a message reaches the
 * person when no tab is open. Does nothing where the server or the browser
 * has no push.
 */
export async function subscribePush() {
  if (!("serviceWorker" in navigator) || typeof PushManager !== "function" || typeof parley.pushPublicKey !== "function") return;
  if (!(await parley.pushPublicKey())) return;
  const reg = await navigator.serviceWorker.ready;
  await parley.subscribePush(reg);
}

async function unsubscribePush() {
  if (!("serviceWorker" in navigator)) return;
  const reg = await navigator.serviceWorker.getRegistration();
  await parley.unsubscribePush(reg || undefined);
}
