// The image viewer: a modal <dialog> (focus kept inside, Escape closes) with
// the image at full size and a link to open it in a tab.

import { $, setText } from "./dom.js";

let opener = null;

export function openViewer(a) {
  const dlg = $("image-viewer");
  opener = document.activeElement;
  const img = $("image-viewer-img");
  img.src = a.url;
  img.alt = a.name || "Image";
  setText("image-viewer-name", a.name || "Image");
  $("image-viewer-open").href = a.url;
  if (!dlg.open) dlg.showModal();
  $("image-viewer-close").focus();
}

export function closeViewer() {
  const dlg = $("image-viewer");
  if (dlg.open) dlg.close();
}

export function wireViewer() {
  const dlg = $("image-viewer");
  $("image-viewer-close").addEventListener("click", closeViewer);
  // A click on the backdrop (the dialog itself, outside its content) closes it.
  dlg.addEventListener("click", (e) => {
    if (e.target === dlg) closeViewer();
  });
  dlg.addEventListener("close", () => {
    $("image-viewer-img").removeAttribute("src");
    if (opener && opener.isConnected) opener.focus();
    opener = null;
  });
}
