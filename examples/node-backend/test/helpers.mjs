// Test helpers: a real Parley process, and an SSE reader on fetch.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const API_KEY = "example-api-key";
export const AUTH_SECRET = "example-app-secret-example-app-secret-example-app-secret-123456";

let built;
/** The parley binary: $PARLEY_BIN, else built once from this repository. */
function parleyBin() {
  if (process.env.PARLEY_BIN) return process.env.PARLEY_BIN;
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), "parley-bin-"));
    built = join(dir, "parley");
    execFileSync("go", ["build", "-o", built, "./cmd/parley"], { cwd: new URL("../../..", import.meta.url).pathname, stdio: "inherit" });
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return built;
}

/** Starts Parley on a free port with env added; resolves to {url, stop}. */
export async function startParley(env = {}) {
  const data = mkdtempSync(join(tmpdir(), "parley-data-"));
  const child = spawn(parleyBin(), ["serve"], {
    env: {
      ...process.env,
      PARLEY_ADDR: "127.0.0.1:0",
      PARLEY_DATA_DIR: data,
      PARLEY_API_KEYS: API_KEY,
      PARLEY_AUTH_SECRET: AUTH_SECRET,
      PARLEY_PASSWORD_COST: "4",
      PARLEY_RATE_LIMIT: "0",
      PARLEY_LOG_LEVEL: "info", // the "parley listening" line gives the port
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`parley did not start: ${log}`)), 20000);
    child.stderr.on("data", (b) => {
      log += b;
      const m = log.match(/parley listening"? addr=(\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    });
    child.on("exit", (code) => reject(new Error(`parley exited (${code}): ${log}`)));
  });
  return {
    url,
    log: () => log,
    async stop() {
      const done = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await done;
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/** JSON request; resolves to {status, body}. */
export async function call(base, method, path, token, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/**
 * An open GET /api/events read with fetch: events are queued as they come;
 * next(type) waits for the next one of that type.
 */
export async function openStream(base, token, lastId) {
  const ctrl = new AbortController();
  const headers = { Authorization: `Bearer ${token}` };
  if (lastId != null) headers["Last-Event-ID"] = String(lastId);
  const res = await fetch(`${base}/api/events`, { headers, signal: ctrl.signal });
  if (res.status !== 200) throw new Error(`stream: ${res.status} ${await res.text()}`);
  const events = [];
  const waiters = new Set();
  let ended = false;
  const wake = () => {
    for (const w of waiters) w();
  };
  (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    let ev = { data: [] };
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, "");
          buf = buf.slice(i + 1);
          if (line === "") {
            if (ev.type || ev.data.length) events.push({ id: ev.id ?? null, type: ev.type ?? "message", data: JSON.parse(ev.data.join("\n") || "null") });
            ev = { data: [] };
            wake();
          } else if (!line.startsWith(":")) {
            const c = line.indexOf(":");
            const field = c < 0 ? line : line.slice(0, c);
            const value = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
            if (field === "id") ev.id = Number(value);
            else if (field === "event") ev.type = value;
            else if (field === "data") ev.data.push(value);
          }
        }
      }
    } catch {
      // aborted or cut
    }
    ended = true;
    wake();
  })();
  let read = 0;
  return {
    events,
    async next(type, timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        while (read < events.length) {
          const e = events[read++];
          if (e.type === type) return e;
        }
        if (ended) throw new Error(`stream ended before ${type}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no ${type} within ${timeoutMs} ms; got ${events.map((e) => e.type).join(", ")}`);
        await new Promise((r) => {
          const t = setTimeout(r, left);
          const w = () => {
            clearTimeout(t);
            waiters.delete(w);
            r();
          };
          waiters.add(w);
        });
      }
    },
    close: () => ctrl.abort(),
  };
}
