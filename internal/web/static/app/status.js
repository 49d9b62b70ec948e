// The connection as people say it: a word in the header ("Online",
// "Reconnecting…", "Offline"), and a banner under it while messages cannot go
// out ("Offline — messages will be sent when you're back").

import { $, setText, show } from "./dom.js";
import { S, parley } from "./state.js";

const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Online",
  reconnecting: "Reconnecting…",
  polling: "Online",
  disconnected: "Offline",
};

let everConnected = false;

export function renderStatus() {
  const el = $("connection-status");
  const state = S.offline && parley.state !== "connected" ? "disconnected" : parley.state;
  const quality = S.offline ? "offline" : parley.quality;
  el.dataset.state = parley.state;
  el.dataset.quality = parley.quality;
  if (state === "connected" || state === "polling") everConnected = true;
  let text = STATE_TEXT[state] || state;
  if ((state === "connected" || state === "polling") && quality === "poor") text = "Slow connection";
  if (quality === "offline" && state !== "connected") text = "Offline";
  setText("connection-status-text", text);
  el.title = text;
  show("reconnect-button", state !== "connected" && state !== "connecting");

  const waiting = parley.outbox.filter((i) => i.status !== "failed").length;
  const banner = $("offline-banner");
  let kind = "";
  let msg = "";
  if (state === "disconnected" || quality === "offline" || S.offline) {
    kind = "offline";
    msg = waiting ? `Offline — ${waiting === 1 ? "1 message" : `${waiting} messages`} will be sent when you're back` : "Offline — messages will be sent when you're back";
  } else if (state === "reconnecting" || (state === "connecting" && everConnected)) {
    kind = "reconnecting";
    msg = waiting ? `Reconnecting… ${waiting === 1 ? "1 message" : `${waiting} messages`} waiting to be sent` : "Reconnecting…";
  }
  banner.dataset.kind = kind;
  if (banner.textContent !== msg) banner.textContent = msg;
  banner.hidden = !kind;
}

export function resetStatus() {
  everConnected = false;
}
