// Shared state: the SDK instance and the app's model of the session.

import { Parley } from "../sdk/parley.js";

export const parley = new Parley();

export const S = {
  me: null,
  users: new Map(), // id → user
  conversations: new Map(), // id → conversation
  // conversation id → { bySeq: Map<seq, message>, hasMore (older exist),
  // newerMissing (the loaded block ends before the newest message), loading }
  messages: new Map(),
  current: null, // open conversation id
  pane: "list",
  typing: new Map(), // conversation id → { userId, until }
  replyTo: null, // message being replied to
  editing: null, // id of the message being edited
  directory: [],
  newConvTo: null, // professional chosen in the directory
  call: null,
  calls: new Map(), // call id → call, for the records in the timeline
  loaded: false,
  offline: false, // started from the cached session while the server was unreachable
  queue: [], // events that arrived before the first load
  sessionUnsubs: [],
  unreadFrom: new Map(), // conversation id → read marker when it was opened (the "new" divider)
  pendingDeletes: new Map(), // message id → { timer, message } during the undo window
  sentAttachments: new Map(), // client_id → attachments of a message still in the outbox
  uploads: [], // files attached to the composer: { key, file, name, size, type, progress, state, attachment, abort, url }
  config: { callTimeoutMs: 30000, maxBodyChars: 4000, registration: "open", maxAttachment: 10 * 1024 * 1024 },
};

window.parleyApp = { parley, state: S };
