// The model: users, conversations and loaded messages, merged from snapshots and events.

import { S } from "./state.js";

export function rememberUser(u) {
  if (!u || !u.id) return null;
  const prev = S.users.get(u.id);
  const merged = prev ? { ...prev, ...u } : { ...u };
  S.users.set(u.id, merged);
  return merged;
}

export function userName(id) {
  if (id == null) return "System";
  if (S.me && id === S.me.id) return "You";
  const u = S.users.get(id);
  return u ? u.display_name || u.username : "Someone";
}

export function peerId(conv) {
  if (!conv || !S.me) return null;
  return conv.client && conv.client.id === S.me.id ? conv.professional && conv.professional.id : conv.client && conv.client.id;
}

export function peer(conv) {
  return S.users.get(peerId(conv)) || {};
}

export function upsertConversation(conv) {
  if (!conv || !conv.id) return null;
  rememberUser(conv.client);
  rememberUser(conv.professional);
  const prev = S.conversations.get(conv.id);
  const next = { ...(prev || {}), ...conv };
  if (prev) {
    // Read markers only move forward; a late snapshot must not move them back.
    for (const k of ["last_read_seq", "peer_last_read_seq", "peer_delivered_seq"]) next[k] = Math.max(prev[k] || 0, conv[k] || 0);
    if (prev.last_message && conv.last_message && prev.last_message.seq > conv.last_message.seq) next.last_message = prev.last_message;
  }
  S.conversations.set(conv.id, next);
  return next;
}

export function activityTime(conv) {
  const t = conv.last_message ? conv.last_message.created_at : conv.created_at;
  return Date.parse(t) || 0;
}

export function sortedConversations() {
  return [...S.conversations.values()].sort((a, b) => activityTime(b) - activityTime(a));
}

export function messageStore(convId, create = false) {
  let st = S.messages.get(convId);
  if (!st && create) S.messages.set(convId, (st = { bySeq: new Map(), hasMore: false, loading: false }));
  return st;
}

/** The later of two versions of one message (edits and deletes only move forward). */
export function newer(a, b) {
  if (!a) return b;
  if (!b) return a;
  if (a.deleted !== b.deleted) return a.deleted ? a : b;
  return (Date.parse(b.edited_at) || 0) >= (Date.parse(a.edited_at) || 0) ? b : a;
}

/**
 * Keeps a message in its conversation's loaded block. While the block is a
 * window into older history (after a jump to a search result), a newer message
 * that does not touch it is left out, so the block never has a hole.
 */
export function storeMessage(m) {
  const st = messageStore(m.conversation_id);
  if (!st) return;
  if (st.newerMissing && !st.bySeq.has(m.seq) && st.bySeq.size && m.seq > maxSeq(st) + 1) return;
  st.bySeq.set(m.seq, newer(st.bySeq.get(m.seq), m));
}

export function maxSeq(st) {
  let n = 0;
  for (const k of st.bySeq.keys()) if (k > n) n = k;
  return n;
}

export function minSeq(st) {
  let n = Infinity;
  for (const k of st.bySeq.keys()) if (k < n) n = k;
  return n === Infinity ? 0 : n;
}

/** The display name of a user object (display name, else username). */
export function nameOf(u) {
  return (u && (u.display_name || u.username)) || "Unknown";
}

export function recountUnread(conv) {
  const st = messageStore(conv.id);
  if (!st || !S.me) return;
  let n = 0;
  for (const m of st.bySeq.values()) if (m.sender_id !== S.me.id && !m.deleted && m.seq > (conv.last_read_seq || 0)) n++;
  // Only trust the count when the loaded messages reach back past the marker.
  if (st.newerMissing) return;
  if (!st.hasMore || minSeq(st) <= (conv.last_read_seq || 0) + 1) conv.unread_count = n;
}
