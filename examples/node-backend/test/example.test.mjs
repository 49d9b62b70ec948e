// The example of docs/integrate.md, end to end against a real Parley: the
// app's backend (server.mjs) registers its professional, signs its users'
// tokens, and posts a system message when a booking is confirmed; the
// client side uses Parley's own SDK (downloaded from the Parley server, as
// a browser would load it) with the token the backend gave it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ParleyBackend } from "../parley.mjs";
import { createApp, syncProfessionals } from "../server.mjs";
import { startParley, openStream, call, API_KEY, AUTH_SECRET } from "./helpers.mjs";

let parley, app, appURL, sdkDir, Parley;

before(async () => {
  parley = await startParley();
  const backend = new ParleyBackend({ url: parley.url, authSecret: AUTH_SECRET, apiKey: API_KEY });
  await syncProfessionals(backend);
  app = http.createServer(createApp(backend));
  await new Promise((r) => app.listen(0, "127.0.0.1", r));
  appURL = `http://127.0.0.1:${app.address().port}`;
  // The SDK as the browser gets it: served by Parley.
  sdkDir = mkdtempSync(join(tmpdir(), "parley-sdk-"));
  for (const f of ["parley.js", "core.js"]) {
    const res = await fetch(`${parley.url}/sdk/${f}`);
    assert.equal(res.status, 200);
    writeFileSync(join(sdkDir, f), await res.text());
  }
  ({ Parley } = await import(pathToFileURL(join(sdkDir, "parley.js")).href));
});

after(async () => {
  app?.close();
  await parley?.stop();
  if (sdkDir) rmSync(sdkDir, { recursive: true, force: true });
});

async function signIn(user) {
  const res = await fetch(`${appURL}/session`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user }) });
  assert.equal(res.status, 200);
  return res.json();
}

test("the app's users chat through Parley with the app's tokens", async () => {
  // The professional exists in Parley before signing in, as the backend put them.
  const pro = await call(parley.url, "GET", "/api/server/users/p-200", API_KEY);
  assert.equal(pro.status, 200);
  assert.equal(pro.body.display_name, "Dr. Pia Pro");
  assert.equal(pro.body.role, "professional");

  // Carla signs in to the app; her page hands the token to the SDK.
  const carla = await signIn("c-100");
  const sdk = new Parley({ baseUrl: carla.parley_url, token: carla.parley_token, shared: false, storage: null, trackActivity: false });
  const me = await sdk.me();
  assert.equal(me.external_id, "c-100");
  assert.equal(me.username, null);
  assert.equal(me.display_name, "Carla Client");
  const conv = await sdk.createConversation({ professional_external_id: "p-200", subject: "Booking 42", body: "Hello, is Tuesday free?" });
  assert.equal(conv.professional.external_id, "p-200");

  // Dr. Pia signs in too and watches her stream.
  const pia = await signIn("p-200");
  const piaStream = await openStream(pia.parley_url, pia.parley_token, 0);
  assert.equal((await piaStream.next("conversation.created")).data.id, conv.id);
  assert.equal((await piaStream.next("message.created")).data.body, "Hello, is Tuesday free?");
  const carlaStream = await openStream(carla.parley_url, carla.parley_token);
  await carlaStream.next("ready");

  // Carla writes through the SDK's outbox (optimistic, safe to retry).
  const sent = await sdk.send(conv.id, "I could come at 10.");
  assert.equal(sent.kind, "user");
  assert.equal((await piaStream.next("message.created")).data.id, sent.id);
  assert.equal((await carlaStream.next("message.created")).data.id, sent.id, "her own other devices get it too");

  // The app confirms the booking: a system message reaches both.
  const confirm = async () => {
    const res = await fetch(`${appURL}/bookings/42/confirm`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ conversation_id: conv.id }) });
    assert.equal(res.status, 200);
    return (await res.json()).message;
  };
  const sys = await confirm();
  assert.equal(sys.kind, "system");
  assert.equal(sys.sender_id, null);
  for (const s of [piaStream, carlaStream]) {
    const e = await s.next("message.created");
    assert.equal(e.data.id, sys.id);
    assert.equal(e.data.kind, "system");
  }
  assert.equal((await confirm()).id, sys.id, "a retried confirmation posts nothing new");
  const history = await sdk.messages(conv.id);
  assert.deepEqual(history.messages.map((m) => m.kind), ["user", "user", "system"]);

  // Carla closes her account in the app: the backend erases her from Parley.
  await new ParleyBackend({ url: parley.url, authSecret: AUTH_SECRET, apiKey: API_KEY }).eraseUser("c-100");
  await carlaStream.next("session.expired");
  const gone = await call(parley.url, "GET", `/api/conversations/${conv.id}/messages`, pia.parley_token);
  assert.deepEqual(gone.body.messages.map((m) => [m.kind, m.deleted]), [["user", true], ["user", true], ["system", false]]);
  sdk.close();
  piaStream.close();
  carlaStream.close();
});
