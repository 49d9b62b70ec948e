// What the app keeps in localStorage besides the SDK's own keys: per-user
// settings (mutes, notifications, sound), the time each message was written,
// and the last snapshot of the session for the offline shell. All of it is
// scoped by user id and dropped at logout.

import { S } from "./state.js";

const P = "parley:app:";

function read(key, fallback) {
  try {
    const v = JSON.parse(localStorage.getItem(key));
    return v == null ? fallback : v;
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* storage full or disabled: the app works without it */
  }
}

const userKey = (name) => (S.me ? `${P}${S.me.id}:${name}` : null);

/** Settings of the signed-in user: { sound, notify, muted: [conversation ids] }. */
export function settings() {
  const k = userKey("settings");
  const s = k ? read(k, {}) : {};
  return { sound: s.sound !== false, notify: !!s.notify, muted: Array.isArray(s.muted) ? s.muted : [] };
}

export function saveSettings(patch) {
  const k = userKey("settings");
  if (k) write(k, { ...settings(), ...patch });
}

export function isMuted(convId) {
  return settings().muted.includes(convId);
}

export function setMuted(convId, on) {
  const muted = new Set(settings().muted);
  if (on) muted.add(convId);
  else muted.delete(convId);
  saveSettings({ muted: [...muted] });
}

// A message keeps the time it was written: an item queued while offline is
// sent later and gets the server's time then, so the composer's time is kept
// here by client_id (a few hundred entries at most).
const WRITTEN = `${P}written`;

export function rememberWritten(items) {
  if (!items.length) return;
  const map = read(WRITTEN, {});
  let changed = false;
  for (const it of items) {
    if (it.client_id && it.created_at && !map[it.client_id]) {
      map[it.client_id] = it.created_at;
      changed = true;
    }
  }
  if (!changed) return;
  const keys = Object.keys(map);
  if (keys.length > 300) for (const k of keys.slice(0, keys.length - 300)) delete map[k];
  write(WRITTEN, map);
}

/** The time (ms) the message with that client_id was written in this browser, or 0. */
export function writtenAt(clientId) {
  if (!clientId) return 0;
  return Number(read(WRITTEN, {})[clientId]) || 0;
}

// The offline shell: who was signed in, their conversations and the open
// conversation's last page, so that a tab opened while the server is down shows
// the app (with its outbox) instead of an error page.
const LAST = `${P}last-session`;

export function cachedSession() {
  return read(LAST, null);
}

export function saveSession() {
  if (!S.me || S.offline) return;
  const convs = [...S.conversations.values()].slice(0, 100);
  const open = S.current && S.messages.get(S.current);
  const msgs = open ? [...open.bySeq.values()].sort((a, b) => a.seq - b.seq).slice(-50) : [];
  write(LAST, { me: S.me, conversations: convs, current: S.current, messages: msgs, at: Date.now() });
}

export function forgetSession() {
  const me = S.me;
  write(LAST, null);
  write(WRITTEN, null);
  if (me) {
    try {
      for (let i = localStorage.length - 1; i >= 0; i--) {
        const k = localStorage.key(i);
        if (k && k.startsWith(`${P}${me.id}:`) && !k.endsWith(":settings")) localStorage.removeItem(k);
      }
    } catch {
      /* ignore */
    }
  }
}
