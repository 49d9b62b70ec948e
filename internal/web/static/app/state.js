// Shared state: the SDK instance and the app's model of the session.

import { Parley } from "../sdk/parley.js";

export const parley = new Parley();

export const S = {
  me: null,
  users: new Map(), // id → user
  conversations: new Map(), // id → conversation
  messages: new Map(), // conversation id → { bySeq: Map<seq, message>, hasMore, loading }
  current: null, // open conversation id
  pane: "list",
  typing: new Map(), // conversation id → { userId, until }
  replyTo: null, // message being replied to
  editing: null, // id of the message being edited
  directory: [],
  newConvTo: null, // professional chosen in the directory
  call: null,
  loaded: false,
  queue: [], // events that arrived before the first load
  sessionUnsubs: [],
  config: { callTimeoutMs: 30000, maxBodyChars: 4000 },
};

window.parleyApp = { parley, state: S };
