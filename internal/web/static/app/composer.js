// The composer.

import { renderReply } from "./chat.js";
import { $, autosize } from "./dom.js";
import { renderMessages } from "./messages.js";
import { S, parley } from "./state.js";

export function sendCurrent() {
  const input = $("message-input");
  const body = input.value;
  const id = S.current;
  if (!id || !body.trim()) return;
  const reply = S.replyTo;
  input.value = "";
  autosize(input);
  S.replyTo = null;
  renderReply();
  parley.send(id, body, { replyToId: reply ? reply.id : undefined }).catch(() => {
    /* shown as a failed message with Retry */
  });
  renderMessages({ scrollBottom: true });
}
