// Parley's service worker: the app shell for a tab opened offline, and Web Push.
//
// Shell: network first, always. A file is fetched from the server when it
// answers (so a new binary's code is used at once, never a stale copy) and
// kept in the cache; only when the network fails does the cached copy serve.
// Nothing under /api/ (or anything else outside the shell) is touched: those
// requests go to the network as if there were no service worker.
//
// Push: a push message (the server's JSON: {type: "message.created",
// conversation_id, message_id, sender_name, preview (null when previews are
// off), attachments (a count), …}) shows a notification, unless a tab of the
// app is in front; clicking it focuses a tab of the app on that conversation,
// or opens one.

const CACHE = "parley-shell-v1";

// Every file of the app shell. internal/web's tests check that each module
// under /app/ and the SDK is listed here.
const SHELL = [
  "/",
  "/app.css",
  "/app.js",
  "/app/auth.js",
  "/app/calls.js",
  "/app/chat.js",
  "/app/composer.js",
  "/app/directory.js",
  "/app/dom.js",
  "/app/events.js",
  "/app/idle.js",
  "/app/list.js",
  "/app/messages.js",
  "/app/model.js",
  "/app/notify.js",
  "/app/prefs.js",
  "/app/profile.js",
  "/app/router.js",
  "/app/screens.js",
  "/app/search.js",
  "/app/session.js",
  "/app/state.js",
  "/app/status.js",
  "/app/viewer.js",
  "/sdk/parley.js",
  "/sdk/core.js",
];
const SHELL_SET = new Set(SHELL);

self.addEventListener("install", (event) => {
  // Best effort: a file that cannot be fetched now is cached on its next use.
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => Promise.all(SHELL.map((u) => cache.add(new Request(u, { cache: "no-cache" })).catch(() => {}))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("parley-shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/api/")) return;
  const page = req.mode === "navigate" && url.pathname === "/";
  if (!page && !SHELL_SET.has(url.pathname)) return;
  event.respondWith(networkFirst(req, page ? "/" : url.pathname));
});

async function networkFirst(req, key) {
  const cache = await caches.open(CACHE);
  try {
    // The server marks every file no-cache, so this revalidates: a new
    // binary's files are what comes back.
    const res = await fetch(req);
    if (res.ok && res.type === "basic") cache.put(key, res.clone()).catch(() => {});
    return res;
  } catch (err) {
    const hit = await cache.match(key);
    if (hit) return hit;
    throw err;
  }
}

self.addEventListener("push", (event) => {
  let d = {};
  try {
    d = event.data ? event.data.json() : {};
  } catch {
    d = { body: event.data ? event.data.text() : "" };
  }
  const conv = d.conversation_id || "";
  const title = d.title || d.sender_name || "New message";
  const files = Number(d.attachments) || 0;
  const body = typeof d.preview === "string" && d.preview ? d.preview : d.body || (files ? (files === 1 ? "Sent a file" : `Sent ${files} files`) : "New message");
  const url = d.url || (conv ? `/?c=${encodeURIComponent(conv)}` : "/");
  event.waitUntil(
    (async () => {
      // A visible tab of the app shows the message itself.
      const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      if (wins.some((w) => w.visibilityState === "visible" && w.focused)) return;
      await self.registration.showNotification(title, { body: String(body).slice(0, 200), tag: conv ? `parley:${conv}` : "parley", renotify: true, data: { url, conversation_id: conv, message_id: d.message_id || "" } });
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const url = new URL(data.url || "/", self.location.origin).href;
  event.waitUntil(
    (async () => {
      const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const tab = wins.find((w) => new URL(w.url).origin === self.location.origin);
      if (tab) {
        await tab.focus();
        if (data.conversation_id) tab.postMessage({ type: "open-conversation", conversation_id: data.conversation_id });
        return;
      }
      await self.clients.openWindow(url);
    })(),
  );
});
