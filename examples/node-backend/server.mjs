// A tiny app backend with Parley added: it has its own users and login
// (here a stand-in: POST /session {user}), signs each signed-in user a
// Parley token, registers its professionals with Parley at start, and posts
// a system message when a booking is confirmed. The page in public/ hands
// the token to Parley's browser SDK.
//
//   PARLEY_URL=http://127.0.0.1:8080 PARLEY_AUTH_SECRET=… PARLEY_API_KEY=… node server.mjs
//
// Parley runs with PARLEY_AUTH_SECRET (the same secret), PARLEY_API_KEYS
// (the same key) and PARLEY_CORS_ORIGINS=http://127.0.0.1:3000 (this app's
// origin, since the page talks to Parley directly).
import http from "node:http";
import { readFile } from "node:fs/promises";
import { ParleyBackend } from "./parley.mjs";

// The app's own users, as its database would hold them.
export const USERS = {
  "c-100": { id: "c-100", name: "Carla Client", role: "client" },
  "p-200": { id: "p-200", name: "Dr. Pia Pro", role: "professional" },
};

/** Builds the app's HTTP handler around a ParleyBackend. */
export function createApp(parley) {
  const json = (res, status, body) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const readBody = async (req) => {
    let s = "";
    for await (const chunk of req) s += chunk;
    return s ? JSON.parse(s) : {};
  };
  return async (req, res) => {
    try {
      const url = new URL(req.url, "http://app");
      if (req.method === "GET" && (url.pathname === "/" || url.pathname === "/chat.mjs")) {
        const file = url.pathname === "/" ? "index.html" : "chat.mjs";
        const body = await readFile(new URL(`./public/${file}`, import.meta.url));
        res.writeHead(200, { "Content-Type": file.endsWith(".html") ? "text/html" : "text/javascript" });
        return res.end(body);
      }
      if (req.method === "POST" && url.pathname === "/session") {
        // Stand-in for the app's real login: whoever it says.
        const { user } = await readBody(req);
        const u = USERS[user];
        if (!u) return json(res, 401, { error: "unknown user" });
        const token = await parley.userToken({ id: u.id, name: u.name, role: u.role });
        return json(res, 200, { parley_url: parley.url, parley_token: token, user: u });
      }
      const m = url.pathname.match(/^\/bookings\/([^/]+)\/confirm$/);
      if (req.method === "POST" && m) {
        // The app knows which Parley conversation the booking belongs to.
        const { conversation_id } = await readBody(req);
        const msg = await parley.systemMessage(conversation_id, `Booking ${m[1]} is confirmed.`, `booking-${m[1]}-confirmed`);
        return json(res, 200, { message: msg });
      }
      json(res, 404, { error: "not found" });
    } catch (err) {
      json(res, err.status && err.status < 500 ? err.status : 500, { error: String(err.message || err) });
    }
  };
}

/** Registers the app's professionals with Parley, so clients can reach them before they ever sign in. */
export async function syncProfessionals(parley) {
  for (const u of Object.values(USERS)) {
    if (u.role === "professional") await parley.putUser(u.id, { displayName: u.name, role: "professional" });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const parley = new ParleyBackend({
    url: process.env.PARLEY_URL ?? "http://127.0.0.1:8080",
    authSecret: process.env.PARLEY_AUTH_SECRET,
    apiKey: process.env.PARLEY_API_KEY,
  });
  await syncProfessionals(parley);
  const port = Number(process.env.PORT ?? 3000);
  http.createServer(createApp(parley)).listen(port, "127.0.0.1", () => console.log(`app on http://127.0.0.1:${port}/`));
}
