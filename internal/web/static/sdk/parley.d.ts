// TypeScript declarations for the Parley browser SDK (/sdk/parley.js).
// Wire types follow SPEC.md (§2–§5); field names are the server's snake_case.

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "polling" | "disconnected";
export type ConnectionQuality = "good" | "poor" | "offline";
export type Role = "client" | "professional";

export interface User {
  id: string;
  /** Parley's own accounts; null for users of the app Parley is part of. */
  username: string | null;
  /** The app's id for its users (its token's `sub`); null for Parley's own accounts. */
  external_id: string | null;
  display_name: string;
  role: Role;
  online: boolean;
  last_seen: string | null;
  /** Up to 280 characters, "" when unset (PATCH /api/me). */
  bio: string;
}

/** A file sent with a message (POST /api/conversations/{id}/attachments). */
export interface Attachment {
  id: string;
  name: string;
  /**
   * image/png, image/jpeg, image/gif or image/webp when the bytes are one
   * (sniffed by the server; show it inline); otherwise the uploader's type as
   * a hint, or application/octet-stream. Non-images are served as downloads.
   */
  content_type: string;
  /** Bytes. */
  size: number;
  /** Where to GET it: "/api/attachments/{id}" (participants only). */
  url: string;
}

export interface ReplyRef {
  id: string;
  /** null when the quoted message is a system message. */
  sender_id: string | null;
  preview: string;
}

/** "system": posted by the app's backend (no sender); "user": by a participant. */
export type MessageKind = "user" | "system";

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  kind: MessageKind;
  /** null for a system message. */
  sender_id: string | null;
  body: string;
  client_id: string | null;
  reply_to: ReplyRef | null;
  created_at: string;
  edited_at: string | null;
  deleted: boolean;
  /** Always an array; [] when the message has none or was deleted. */
  attachments: Attachment[];
}

export interface Conversation {
  id: string;
  client: User;
  professional: User;
  subject: string;
  created_at: string;
  last_message: Message | null;
  unread_count: number;
  last_read_seq: number;
  peer_last_read_seq: number;
  peer_delivered_seq: number;
}

export interface Receipt {
  conversation_id: string;
  user_id: string;
  kind: "delivered" | "read";
  up_to_seq: number;
  at: string;
}

export interface Call {
  id: string;
  conversation_id: string;
  caller_id: string;
  callee_id: string;
  media: "audio" | "video";
  state: "ringing" | "active" | "declined" | "ended" | "missed";
  created_at: string;
  answered_at: string | null;
  ended_at: string | null;
}

export interface CallSignal {
  call_id: string;
  from_user_id: string;
  payload: unknown;
}

export interface Typing {
  conversation_id: string;
  user_id: string;
  state: "start" | "stop";
}

export interface Presence {
  user_id: string;
  online: boolean;
  last_seen: string | null;
}

export interface Ready {
  user_id: string;
  last_id: number;
  server_time?: string;
  /** Set when a follower tab joined a stream that was already live. */
  shared?: boolean;
}

export interface Reset {
  reason: string;
  last_id: number;
}

export interface SessionExpired {
  /** "idle" (client-side idle logout), "unauthorized" (a 401), or what the server sent. */
  reason?: string;
  /** Set by the SDK when the page saw no activity for about the idle timeout. */
  idle?: boolean;
  [k: string]: unknown;
}

/** Event type → data. `app.*` events carry what the publisher sent. */
export interface EventMap {
  ready: Ready;
  reset: Reset;
  "session.expired": SessionExpired;
  "conversation.created": Conversation;
  "message.created": Message;
  "message.updated": Message;
  "message.deleted": Message;
  receipt: Receipt;
  "call.ringing": Call;
  "call.accepted": Call;
  "call.declined": Call;
  "call.ended": Call;
  "call.missed": Call;
  "call.signal": CallSignal;
  typing: Typing;
  presence: Presence;
}

export interface ParleyEvent<T = unknown> {
  /** The durable event id; null for ephemeral events (typing, presence, ready, reset, session.expired). */
  id: number | null;
  type: string;
  data: T;
  /** Present for events that came by long-poll. */
  time?: string;
}

export type Unsubscribe = () => void;

export interface OutboxItem {
  client_id: string;
  conversation_id: string;
  body: string;
  reply_to_id: string | null;
  /** Set when the message carries attachments. */
  extra?: { attachment_ids: string[] };
  status: "pending" | "failed";
  attempts: number;
  /** ms since the epoch */
  created_at: number;
  /** when a pending item is marked failed (ms since the epoch) */
  deadline: number;
  last_attempt_at?: number;
  error: string | null;
  failed_status?: number;
}

export interface OutboxChange {
  type: "queued" | "loaded" | "waiting" | "retrying" | "sent" | "failed" | "discarded" | "cleared";
  item: (OutboxItem | (Omit<OutboxItem, "status"> & { status: "sent" })) | null;
  /** The server's message, for "sent". */
  message?: Message;
}

/** Web Storage-like object (localStorage by default). */
export interface StorageLike {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ParleyOptions {
  /** Server origin; "" (default) for the page's own. */
  baseUrl?: string;
  /** A user token; without it the HttpOnly session cookie is used. The stream then gets ?token=. */
  token?: string;
  /** One connection per browser via Web Locks + BroadcastChannel (default true). */
  shared?: boolean;
  /** Resume from the last id persisted in storage after a reload (default true). */
  resume?: boolean;
  /** Consecutive failures before giving up ("disconnected" until reconnect()); default 0 = never give up, retrying every backoffMaxMs at most. */
  maxFailures?: number;
  backoffBaseMs?: number; // 1000
  backoffMaxMs?: number; // 30000
  jitter?: number; // 0.2
  /** A stream that sends no ready in this time counts as failed (default 5000). */
  readyTimeoutMs?: number;
  /** A stream closing sooner than this after ready counts as short-lived (default 5000). */
  shortLivedMs?: number;
  /**
   * Short-lived or unready streams in a row before long-polling (default 3).
   * A failure counts only when a poll right after it gets through: a server
   * that is down is not a network that blocks streams.
   */
  badStreamsBeforePolling?: number;
  /** Allow the long-poll fallback (default true). */
  polling?: boolean;
  /** While polling, try streaming again this often (default 60000), and at once when a poll succeeds after failed ones. */
  streamRetryMs?: number;
  pollWaitSec?: number; // 25
  gapTimeoutMs?: number; // 3000
  /** A message not sent within this time is marked failed (default 60000). */
  sendTimeoutMs?: number;
  requestTimeoutMs?: number; // 20000
  typingIntervalMs?: number; // 3000
  typingIdleMs?: number; // 4000
  /** POST /api/auth/activity at most this often while the user is active (default 60000). */
  activityIntervalMs?: number;
  /** Track activity and log out when idle (default: true in a page using the cookie). */
  trackActivity?: boolean;
  /** Storage for the outbox, resume point and activity time (default localStorage; null = none). */
  storage?: StorageLike | null;
  /** How often the idle warning is checked while someone listens (default 1000). */
  idleCheckMs?: number;
}

/** An RTCIceServer as given in ice_servers. */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** GET /api/config as the server sends it (the fields this SDK knows of). */
export interface ServerConfig {
  heartbeat_ms?: number;
  idle_timeout_ms?: number;
  activity_interval_ms?: number;
  max_body_chars?: number;
  /** STUN/TURN servers for calls; [] when none are configured. */
  ice_servers?: IceServer[];
  /** The VAPID public key (base64url) to subscribe with; null when Web Push is off. */
  push_public_key?: string | null;
  max_attachment_bytes?: number;
  max_attachments_per_message?: number;
  max_bio_chars?: number;
  registration?: "open" | "closed";
  [k: string]: unknown;
}

export interface ParleyConfig {
  heartbeatMs: number;
  idleTimeoutMs: number;
  /** GET /api/config as served; `raw.registration` is "open" or "closed" (the app signs its users in). */
  raw: ServerConfig;
}

/** What the push service delivers to the service worker (event.data.json()). */
export interface PushPayload {
  type: "message.created";
  conversation_id: string;
  message_id: string;
  seq: number;
  /** "" for a system message. */
  sender_id: string;
  sender_name: string;
  /** The first 100 characters of the message; null when the server sends no previews. */
  preview: string | null;
  /** How many files the message carries. */
  attachments: number;
  created_at: string;
}

export interface PushSubscriptionRecord {
  endpoint: string;
  created_at: string;
}

export interface IdleWarning {
  /** When the session ends for inactivity (ms since the epoch). */
  deadline: number;
  remainingMs: number;
}

export interface UploadProgress {
  loaded: number;
  total: number | undefined;
}

export interface AuthResult {
  user: User;
  token: string;
  expires_at: string;
}

/** Error from a REST helper: the HTTP status and the SPEC error code. */
export declare class ParleyError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: unknown;
}

/** Rejection of send()/retry() when a message is marked failed or discarded. */
export declare class OutboxError extends Error {
  readonly client_id: string;
  readonly status: number;
  readonly code: string;
}

export declare const STATES: readonly ConnectionState[];
export declare const KNOWN_TYPES: readonly string[];
export declare const EPHEMERAL_TYPES: ReadonlySet<string>;
export declare function backoffDelay(attempt: number, opts?: { baseMs?: number; maxMs?: number; jitter?: number; random?: () => number }): number;

export declare class Parley {
  constructor(options?: ParleyOptions);

  readonly options: Required<Pick<ParleyOptions, "shared" | "resume">> & ParleyOptions;
  readonly baseUrl: string;
  token: string | undefined;
  /** Normalised /api/config (defaults until loaded). */
  config: ParleyConfig;
  /** The logged-in user once known (login, register, me()). */
  user: User | null;

  on<K extends keyof EventMap>(type: K, handler: (data: EventMap[K], event: ParleyEvent<EventMap[K]>) => void): Unsubscribe;
  on(type: "*" | string, handler: (data: any, event: ParleyEvent<any>) => void): Unsubscribe;
  once<K extends keyof EventMap>(type: K, handler: (data: EventMap[K], event: ParleyEvent<EventMap[K]>) => void): Unsubscribe;
  once(type: string, handler: (data: any, event: ParleyEvent<any>) => void): Unsubscribe;
  off(type: string, handler: (...args: any[]) => void): void;
  onState(handler: (state: ConnectionState) => void): Unsubscribe;
  onQuality(handler: (quality: ConnectionQuality) => void): Unsubscribe;
  onOutbox(handler: (items: OutboxItem[], change: OutboxChange) => void): Unsubscribe;

  readonly state: ConnectionState;
  readonly quality: ConnectionQuality;
  /** The id of the last durable event handed to handlers (null before any). */
  readonly lastEventId: number | null;
  /** "solo" (own stream), "leader" (holds the browser's stream), "follower" (gets it relayed), "none". */
  readonly role: "none" | "solo" | "leader" | "follower";
  readonly outbox: OutboxItem[];
  readonly userId: string | null;

  connect(): this;
  reconnect(): this;
  close(): void;

  /**
   * Optimistic send through the outbox; resolves with the stored message. With
   * attachmentIds (uploads of this user to this conversation, at most 10, each
   * sent once) the body may be "".
   */
  send(conversationId: string, body: string, options?: { replyToId?: string; clientId?: string; attachmentIds?: string[] }): Promise<Message>;
  retry(clientId: string): Promise<Message>;
  discard(clientId: string): boolean;

  /** Call on each keystroke: throttled typing start, stop after inactivity. */
  typing(conversationId: string): void;
  stopTyping(conversationId: string): void;

  /** Any endpoint: resolves to the JSON answer (null for 204); throws ParleyError. */
  api<T = any>(method: string, path: string, body?: unknown): Promise<T>;

  register(input: { username: string; password: string; display_name?: string; role: Role }): Promise<AuthResult>;
  login(username: string, password: string): Promise<AuthResult>;
  login(input: { username: string; password: string }): Promise<AuthResult>;
  /** {remote: false}: forget local state only (the session is already gone). */
  logout(options?: { remote?: boolean }): Promise<void>;
  me(): Promise<User>;
  getConfig(): Promise<ParleyConfig>;

  users(role?: Role): Promise<User[]>;
  getUser(id: string): Promise<User>;
  conversations(): Promise<Conversation[]>;
  getConversation(id: string): Promise<Conversation>;
  createConversation(
    input: ({ professional_id: string; professional_external_id?: never } | { professional_external_id: string; professional_id?: never }) & {
      subject?: string;
      body: string;
      client_id?: string;
    },
  ): Promise<Conversation>;
  messages(conversationId: string, query?: { before_seq?: number; after_seq?: number; limit?: number }): Promise<{ messages: Message[]; has_more: boolean }>;
  editMessage(messageId: string, body: string): Promise<Message>;
  deleteMessage(messageId: string): Promise<Message>;
  markRead(conversationId: string, upToSeq: number): Promise<null>;
  setTyping(conversationId: string, state: "start" | "stop"): Promise<null>;
  startCall(conversationId: string, media?: "audio" | "video"): Promise<Call>;
  acceptCall(callId: string): Promise<Call>;
  declineCall(callId: string): Promise<Call>;
  endCall(callId: string): Promise<Call>;
  signal(callId: string, payload: unknown): Promise<null>;

  /**
   * Uploads a file (raw body, its type, ?name=). XMLHttpRequest where it exists,
   * so onProgress follows the upload; fetch elsewhere (onProgress once, at the
   * end). Rejects with ParleyError: 413 too_large, 400 invalid_request (name),
   * 0 network_error or aborted.
   */
  uploadAttachment(
    conversationId: string,
    file: Blob,
    options?: { name?: string; contentType?: string; onProgress?: (p: UploadProgress) => void; signal?: AbortSignal },
  ): Promise<Attachment>;
  /** baseUrl + the attachment's url (usable in <img src> with the session cookie). */
  attachmentUrl(attachment: Attachment | string): string;
  /** The attachment's bytes, with the token or the cookie. */
  fetchAttachment(attachment: Attachment | string, options?: { signal?: AbortSignal }): Promise<Blob>;
  /** Messages of the caller's conversations holding every word (whole or prefix), newest first. */
  search(q: string, options?: { conversationId?: string; limit?: number }): Promise<{ messages: Message[]; has_more: boolean }>;
  /** PATCH /api/me; only the fields given change. */
  updateProfile(input: { display_name?: string; bio?: string }): Promise<User>;
  /** STUN/TURN servers from /api/config ([] until it is loaded). */
  readonly iceServers: IceServer[];

  /** The VAPID public key, or null when the server sends no Web Push. */
  pushPublicKey(): Promise<string | null>;
  /** Subscribes the browser (PushManager of the registration) and registers it for this session. */
  subscribePush(registration: { pushManager: any }, options?: { userVisibleOnly?: boolean }): Promise<PushSubscriptionRecord>;
  /** POST /api/push/subscription with a PushSubscription's toJSON(). */
  savePushSubscription(subscription: { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<PushSubscriptionRecord>;
  /** This session's subscription, or null. */
  pushSubscription(): Promise<PushSubscriptionRecord | null>;
  /** Drops this session's subscription and, given the registration, the browser's. */
  unsubscribePush(registration?: { pushManager: any }): Promise<void>;

  /** When the session ends for inactivity (ms since the epoch); null when not tracked or off. */
  readonly idleDeadline: number | null;
  /**
   * handler({deadline, remainingMs}) once the deadline is within beforeMs
   * (default 60000, at most half the idle timeout); handler(null) when activity
   * or stayActive() pushes it back. At the deadline the SDK logs out
   * (session.expired, reason "idle").
   */
  onIdleWarning(handler: (warning: IdleWarning | null) => void, options?: { beforeMs?: number }): Unsubscribe;
  /** "Stay signed in": activity now, told to the server at once. */
  stayActive(): Promise<void>;
}

export default Parley;
