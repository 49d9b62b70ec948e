// The connection status in the header.

import { $, setText } from "./dom.js";
import { parley } from "./state.js";

export const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  polling: "Connected (polling)",
  disconnected: "Offline",
};

export function renderStatus() {
  const el = $("connection-status");
  const state = parley.state;
  const quality = parley.quality;
  el.dataset.state = state;
  el.dataset.quality = quality;
  let text = STATE_TEXT[state] || state;
  if (state === "connected" && quality === "poor") text = "Connected (slow)";
  setText("connection-status-text", text);
  el.title = `Connection: ${state}, quality: ${quality}`;
}
