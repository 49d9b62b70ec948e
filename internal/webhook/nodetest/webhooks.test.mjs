// Parley's webhooks as an app's backend receives them, checked by the
// Standard Webhooks scheme's own npm package: a real Parley process (built
// from this repository, or $PARLEY_BIN) POSTs to a real Node receiver.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";

const SECRET = "whsec_" + Buffer.from("parley-node-webhook-test-secret!").toString("base64");
const API_KEY = "nodetest-api-key";
const dirs = [];
let parley, receiver;
const deliveries = [];
let arrived = () => {};

function parleyBin() {
  if (process.env.PARLEY_BIN) return process.env.PARLEY_BIN;
  const dir = mkdtempSync(join(tmpdir(), "parley-bin-"));
  dirs.push(dir);
  const bin = join(dir, "parley");
  execFileSync("go", ["build", "-o", bin, "./cmd/parley"], { cwd: new URL("../../..", import.meta.url).pathname, stdio: "inherit" });
  return bin;
}

before(async () => {
  receiver = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(204).end();
      arrived();
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  const data = mkdtempSync(join(tmpdir(), "parley-data-"));
  dirs.push(data);
  const child = spawn(parleyBin(), ["serve"], {
    env: {
      ...process.env,
      PARLEY_ADDR: "127.0.0.1:0",
      PARLEY_DATA_DIR: data,
      PARLEY_API_KEYS: API_KEY,
      PARLEY_PASSWORD_COST: "4",
      PARLEY_RATE_LIMIT: "0",
      PARLEY_LOG_LEVEL: "info",
      PARLEY_WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hooks`,
      PARLEY_WEBHOOK_SECRET: SECRET,
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
  parley = { url, child };
});

after(async () => {
  if (parley) {
    const done = new Promise((r) => parley.child.once("exit", r));
    parley.child.kill("SIGTERM");
    await done;
  }
  receiver?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function call(method, path, token, body) {
  const res = await fetch(parley.url + path, {
    method,
    headers: { ...(token && { Authorization: `Bearer ${token}` }), ...(body && { "Content-Type": "application/json" }) },
    body: body && JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
}

async function waitFor(n) {
  const deadline = Date.now() + 10000;
  while (deliveries.length < n) {
    if (Date.now() > deadline) throw new Error(`got ${deliveries.length} webhooks, want ${n}`);
    await new Promise((r) => { arrived = r; setTimeout(r, 200); });
  }
  return deliveries;
}

test("deliveries verify with the standardwebhooks package; tampered or stale ones do not", async () => {
  const reg = async (username, role) =>
    (await call("POST", "/api/auth/register", null, { username, password: "password123", role })).body;
  const client = await reg("node_client", "client");
  const pro = await reg("node_pro", "professional");
  const conv = await call("POST", "/api/conversations", client.token, { professional_id: pro.user.id, message: { body: "hello from node" } });
  assert.equal(conv.status, 201);
  const sent = await call("POST", `/api/conversations/${conv.body.id}/messages`, pro.token, { body: "hi" });
  assert.equal(sent.status, 201);

  const got = await waitFor(3);
  const wh = new Webhook(SECRET);
  const types = got.map((d) => wh.verify(d.body, d.headers).type);
  assert.deepEqual(types, ["conversation.created", "message.created", "message.created"]);
  const last = wh.verify(got[2].body, got[2].headers);
  assert.equal(last.data.id, sent.body.id);
  assert.equal(last.data.body, "hi");
  assert.match(got[2].headers["webhook-id"], /^wh_/);
  assert.equal(got[2].headers["content-type"], "application/json");

  const tampered = got[2].body.replace('"hi"', '"ho"');
  assert.notEqual(tampered, got[2].body);
  assert.throws(() => wh.verify(tampered, got[2].headers), /signature/i);

  // A replay ten minutes later, correctly signed for its old timestamp.
  const old = new Date(Date.now() - 10 * 60 * 1000);
  const id = got[2].headers["webhook-id"];
  const stale = { "webhook-id": id, "webhook-timestamp": String(Math.floor(old.getTime() / 1000)), "webhook-signature": wh.sign(id, old, got[2].body) };
  assert.throws(() => wh.verify(got[2].body, stale), /timestamp/i);
  assert.throws(() => new Webhook("whsec_" + Buffer.from("another key entirely, not ours!!").toString("base64")).verify(got[2].body, got[2].headers));
});
