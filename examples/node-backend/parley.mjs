// The app's side of Parley, for a Node backend: sign a Parley token for the
// signed-in user (Parley takes it as is: no second login, no second
// account), and call Parley's server API with an API key to manage users
// and post system messages.
//
// Needs: PARLEY_URL (where Parley listens), PARLEY_AUTH_SECRET (the same
// secret Parley is started with, 32+ characters), PARLEY_API_KEY (one of
// Parley's PARLEY_API_KEYS).
import { SignJWT } from "jose";

export class ParleyBackend {
  /**
   * @param {{url: string, authSecret: string, apiKey: string, issuer?: string, audience?: string}} opts
   */
  constructor({ url, authSecret, apiKey, issuer, audience }) {
    this.url = url.replace(/\/+$/, "");
    this.secret = new TextEncoder().encode(authSecret);
    this.apiKey = apiKey;
    this.issuer = issuer;
    this.audience = audience;
  }

  /**
   * A token for one of the app's users, signed HS256 with the shared secret.
   * sub is the app's own user id: the first token creates the Parley user,
   * name sets (and later updates) their display name, parley_role their
   * role. Parley keeps a session per token (per jti), so logging out or
   * going idle ends it; a fresh token starts a new one.
   */
  async userToken({ id, name, role = "client", ttlSeconds = 3600 }) {
    let jwt = new SignJWT({ name, parley_role: role })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(String(id))
      .setJti(crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime(`${ttlSeconds}s`);
    if (this.issuer) jwt = jwt.setIssuer(this.issuer);
    if (this.audience) jwt = jwt.setAudience(this.audience);
    return jwt.sign(this.secret);
  }

  /** Calls the server API with the API key; resolves to the JSON answer (null for 204). */
  async api(method, path, body) {
    const res = await fetch(this.url + path, {
      method,
      headers: { Authorization: `Bearer ${this.apiKey}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const err = new Error(`${method} ${path}: ${res.status} ${data?.error?.code ?? ""} ${data?.error?.message ?? ""}`);
      err.status = res.status;
      err.code = data?.error?.code;
      throw err;
    }
    return data;
  }

  /** Creates or updates a user (e.g. a professional) before they ever sign in. */
  putUser(id, { displayName, role }) {
    return this.api("PUT", `/api/server/users/${encodeURIComponent(id)}`, { display_name: displayName, role });
  }

  getUser(id) {
    return this.api("GET", `/api/server/users/${encodeURIComponent(id)}`);
  }

  /** Ends every session of the user now (their open streams get session.expired). */
  logoutUser(id) {
    return this.api("POST", `/api/server/users/${encodeURIComponent(id)}/logout`);
  }

  /** Erases the user: sessions, message bodies, event log and account. */
  eraseUser(id) {
    return this.api("DELETE", `/api/server/users/${encodeURIComponent(id)}`);
  }

  /** A message from the app itself into a conversation (kind "system"); clientId makes a retry safe. */
  systemMessage(conversationId, body, clientId) {
    return this.api("POST", `/api/server/conversations/${encodeURIComponent(conversationId)}/messages`, { body, client_id: clientId });
  }
}
