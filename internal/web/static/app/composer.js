// The composer: text, replies, and files (picked, dropped or pasted), uploaded
// at once with progress (the SDK's uploadAttachment) and sent with the message.

import { jumpToLatest, renderReply } from "./chat.js";
import { $, autosize, fileSize, h, icon, toast } from "./dom.js";
import { renderMessages } from "./messages.js";
import { messageStore } from "./model.js";
import { askNotificationsOnce } from "./notify.js";
import { S, parley } from "./state.js";

const MAX_FILES = 10;
let seq = 0;

export function sendCurrent() {
  const input = $("message-input");
  const body = input.value;
  const id = S.current;
  if (!id) return;
  const files = S.uploads.filter((u) => u.conversationId === id);
  if (files.some((u) => u.state === "uploading")) {
    toast("Wait a moment: the files are still uploading.");
    return;
  }
  const ready = files.filter((u) => u.state === "done");
  if (!body.trim() && !ready.length) return;
  const reply = S.replyTo;
  input.value = "";
  autosize(input);
  S.replyTo = null;
  renderReply();
  const clientId = crypto.randomUUID();
  const attachments = ready.map((u) => u.attachment);
  if (attachments.length) S.sentAttachments.set(clientId, attachments);
  for (const u of files) dropUpload(u, { keepURL: false });
  renderTray();
  const st = messageStore(id);
  if (st && st.newerMissing) jumpToLatest();
  const opts = { replyToId: reply ? reply.id : undefined, clientId };
  if (attachments.length) opts.attachmentIds = attachments.map((a) => a.id);
  parley
    .send(id, body, opts)
    .catch(() => {
      /* shown as a failed message with Retry */
    })
    .finally(() => S.sentAttachments.delete(clientId));
  S.unreadFrom.set(id, null);
  renderMessages({ scrollBottom: true });
  askNotificationsOnce();
}

/** Adds files to the composer of the open conversation and starts uploading them. */
export function addFiles(fileList) {
  const id = S.current;
  if (!id) return;
  const files = [...(fileList || [])];
  if (!files.length) return;
  const room = MAX_FILES - S.uploads.filter((u) => u.conversationId === id).length;
  if (files.length > room) toast(`Up to ${MAX_FILES} files per message.`);
  for (const file of files.slice(0, Math.max(0, room))) {
    const u = {
      key: `u${++seq}`,
      conversationId: id,
      file,
      name: file.name || "pasted-file",
      size: file.size,
      type: file.type || "application/octet-stream",
      progress: 0,
      state: "uploading",
      attachment: null,
      abort: null,
      url: file.type && file.type.startsWith("image/") ? URL.createObjectURL(file) : null,
      error: "",
    };
    S.uploads.push(u);
    if (file.size > S.config.maxAttachment) {
      u.state = "failed";
      u.error = `Too large (at most ${fileSize(S.config.maxAttachment)})`;
    } else upload(u);
  }
  renderTray();
}

function upload(u) {
  u.state = "uploading";
  u.progress = 0;
  u.error = "";
  const ctrl = new AbortController();
  u.abort = ctrl;
  parley
    .uploadAttachment(u.conversationId, u.file, {
      name: u.name,
      contentType: u.type,
      signal: ctrl.signal,
      onProgress: (p) => {
        if (p.total) {
          u.progress = p.loaded / p.total;
          updateTrayItem(u);
        }
      },
    })
    .then((att) => {
      u.state = "done";
      u.progress = 1;
      u.attachment = att;
      renderTray();
    })
    .catch((err) => {
      if (err && err.code === "aborted") return;
      u.state = "failed";
      u.error = err && err.status === 413 ? `Too large (at most ${fileSize(S.config.maxAttachment)})` : err && err.code === "network_error" ? "Upload failed: no connection" : (err && err.message) || "Upload failed";
      renderTray();
    })
    .finally(() => {
      if (u.abort === ctrl) u.abort = null;
    });
}

function dropUpload(u, { keepURL = false } = {}) {
  if (u.abort) u.abort.abort();
  if (u.url && !keepURL) URL.revokeObjectURL(u.url);
  S.uploads = S.uploads.filter((x) => x !== u);
}

export function clearUploads() {
  for (const u of [...S.uploads]) dropUpload(u);
  renderTray();
}

function updateTrayItem(u) {
  const el = $("attachment-tray").querySelector(`[data-key="${u.key}"]`);
  const bar = el && el.querySelector("progress");
  if (bar) bar.value = Math.round(u.progress * 100);
}

export function renderTray() {
  const tray = $("attachment-tray");
  const items = S.uploads.filter((u) => u.conversationId === S.current);
  tray.hidden = !items.length;
  tray.replaceChildren(
    ...items.map((u) =>
      h(
        "li",
        { class: "tray-item", "data-testid": "tray-item", "data-key": u.key, "data-state": u.state },
        u.url ? h("img", { src: u.url, alt: "" }) : icon("file", 22),
        h("span", { class: "file-meta" }, h("span", { class: "file-name", text: u.name }), h("span", { class: "file-size", text: u.state === "failed" ? u.error : fileSize(u.size) })),
        u.state === "uploading" ? h("progress", { max: 100, value: Math.round(u.progress * 100), "aria-label": `Uploading ${u.name}` }) : null,
        u.state === "failed" && !u.error.startsWith("Too large") ? h("button", { type: "button", class: "small", text: "Retry", onclick: () => (upload(u), renderTray()) }) : null,
        h(
          "button",
          {
            type: "button",
            class: "icon small",
            "data-testid": "tray-remove",
            "aria-label": `Remove ${u.name}`,
            title: "Remove",
            onclick: () => {
              dropUpload(u);
              renderTray();
              $("message-input").focus();
            },
          },
          icon("x", 14),
        ),
      ),
    ),
  );
}

/** Files dragged over the chat or pasted into the composer are attached. */
export function wireComposerFiles() {
  const view = $("chat-view");
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  view.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    $("drop-hint").hidden = false;
  });
  view.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  view.addEventListener("dragleave", (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) $("drop-hint").hidden = true;
  });
  view.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    $("drop-hint").hidden = true;
    addFiles(e.dataTransfer.files);
  });
  $("message-input").addEventListener("paste", (e) => {
    const files = e.clipboardData && e.clipboardData.files;
    if (files && files.length) {
      e.preventDefault();
      addFiles(files);
    }
  });
  $("attach-button").addEventListener("click", () => $("attach-input").click());
  $("attach-input").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
    $("message-input").focus();
  });
}
