// Tokens signed by the npm jose package, as an app's backend or identity
// provider signs them: HS256 with the shared secret, and RS256, ES256 and
// EdDSA with keys published as a JWKS from a local HTTP server. Each token
// opens a stream, sends a message, and is refused after logout, after
// /api/server/users/{id}/logout and after the idle timeout, with
// session.expired on its open stream each time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { SignJWT, generateKeyPair, exportJWK } from "jose";
import { startParley, call, openStream, API_KEY, AUTH_SECRET } from "./helpers.mjs";

const IDLE_MS = 3000;
const keys = {}; // alg → {privateKey, jwk}
let jwksServer, parley;

before(async () => {
  for (const [alg, opts] of [["RS256", {}], ["ES256", {}], ["EdDSA", { crv: "Ed25519" }]]) {
    const { privateKey, publicKey } = await generateKeyPair(alg, opts);
    keys[alg] = { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: `${alg}-key`, alg, use: "sig" } };
  }
  jwksServer = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ keys: Object.values(keys).map((k) => k.jwk) }));
  });
  await new Promise((r) => jwksServer.listen(0, "127.0.0.1", r));
  parley = await startParley({
    PARLEY_AUTH_JWKS_URL: `http://127.0.0.1:${jwksServer.address().port}/jwks.json`,
    PARLEY_IDLE_TIMEOUT: `${IDLE_MS / 1000}s`,
  });
  const pro = await call(parley.url, "PUT", "/api/server/users/pro-1", API_KEY, { role: "professional", display_name: "Dr. One" });
  assert.equal(pro.status, 201, JSON.stringify(pro.body));
});

after(async () => {
  await parley?.stop();
  jwksServer?.close();
});

function sign(alg, sub) {
  const jwt = new SignJWT({ name: `User ${alg}`, parley_role: "client" })
    .setProtectedHeader(alg === "HS256" ? { alg } : { alg, kid: `${alg}-key` })
    .setSubject(sub)
    .setJti(crypto.randomUUID())
    .setIssuedAt()
    .setExpirationTime("1h");
  return jwt.sign(alg === "HS256" ? new TextEncoder().encode(AUTH_SECRET) : keys[alg].privateKey);
}

for (const alg of ["HS256", "RS256", "ES256", "EdDSA"]) {
  test(`${alg} token: stream, send, and refused after logout, server logout and idle`, { concurrency: true }, async () => {
    const sub = `user-${alg}-${Date.now()}`;
    const base = parley.url;

    const tok = await sign(alg, sub);
    const s1 = await openStream(base, tok);
    await s1.next("ready");
    const me = await call(base, "GET", "/api/me", tok);
    assert.equal(me.status, 200);
    assert.equal(me.body.external_id, sub);
    assert.equal(me.body.username, null);
    assert.equal(me.body.display_name, `User ${alg}`);
    const conv = await call(base, "POST", "/api/conversations", tok, { professional_external_id: "pro-1", message: { body: `hi via ${alg}` } });
    assert.equal(conv.status, 201, JSON.stringify(conv.body));
    assert.equal((await s1.next("message.created")).data.body, `hi via ${alg}`);
    assert.equal((await call(base, "POST", "/api/auth/logout", tok)).status, 204);
    await s1.next("session.expired");
    assert.equal((await call(base, "GET", "/api/me", tok)).status, 401);

    const tok2 = await sign(alg, sub);
    const s2 = await openStream(base, tok2);
    await s2.next("ready");
    assert.equal((await call(base, "POST", `/api/conversations/${conv.body.id}/messages`, tok2, { body: "again" })).status, 201);
    assert.equal((await call(base, "POST", `/api/server/users/${encodeURIComponent(sub)}/logout`, API_KEY)).status, 204);
    await s2.next("session.expired");
    assert.equal((await call(base, "GET", "/api/me", tok2)).status, 401);

    const tok3 = await sign(alg, sub);
    const s3 = await openStream(base, tok3);
    await s3.next("ready");
    const start = Date.now();
    await s3.next("session.expired", IDLE_MS + 5000);
    assert.ok(Date.now() - start >= IDLE_MS - 1000, "expired before the idle timeout");
    assert.equal((await call(base, "GET", "/api/me", tok3)).status, 401);
    for (const s of [s1, s2, s3]) s.close();
  });
}

test("refused: alg none, HS256 keyed with a public key, wrong key, expired, no sub", async () => {
  const base = parley.url;
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const none = `${b64({ alg: "none" })}.${b64({ sub: "n-1", exp: now + 600 })}.`;
  const pubBytes = new TextEncoder().encode(JSON.stringify(keys.RS256.jwk));
  const confused = await new SignJWT({}).setProtectedHeader({ alg: "HS256", kid: "RS256-key" }).setSubject("n-2").setExpirationTime("1h").sign(pubBytes);
  const { privateKey: stranger } = await generateKeyPair("ES256");
  const forged = await new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: "ES256-key" }).setSubject("n-3").setExpirationTime("1h").sign(stranger);
  const expired = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("n-4").setExpirationTime(now - 10).sign(new TextEncoder().encode(AUTH_SECRET));
  const noSub = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(AUTH_SECRET));
  for (const [name, tok, sub] of [["none", none, "n-1"], ["key confusion", confused, "n-2"], ["forged", forged, "n-3"], ["expired", expired, "n-4"], ["no sub", noSub, null]]) {
    assert.equal((await call(base, "GET", "/api/me", tok)).status, 401, name);
    if (sub) assert.equal((await call(base, "GET", `/api/server/users/${sub}`, API_KEY)).status, 404, `${name} provisioned a user`);
  }
});
