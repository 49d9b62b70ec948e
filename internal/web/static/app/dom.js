// DOM helpers: elements built with DOM calls (text is always a text node), icons, toasts, times.

// DOM helpers

export const $ = (id) => document.getElementById(id);

/** Creates an element; string/number children become text nodes (never markup). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k in el && !k.startsWith("data-") && !k.startsWith("aria-") && k !== "role") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function show(el, on) {
  if (typeof el === "string") el = $(el);
  if (el) el.hidden = !on;
}

export function setText(id, text) {
  const el = $(id);
  if (el) el.textContent = text == null ? "" : String(text);
}

// Stroke icons (Feather-style paths), built with DOM calls like everything else.
export const ICONS = {
  reply: ["M9 14 4 9l5-5", "M4 9h10a6 6 0 0 1 6 6v3"],
  edit: ["M12 20h9", "M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z"],
  trash: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6"],
};

export function icon(name) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 24 24", width: "16", height: "16", fill: "none", stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false" })) svg.setAttribute(k, v);
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

export let toastTimer = null;
export function toast(msg, ms = 4000) {
  const el = $("toast");
  el.textContent = msg;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), ms);
}

export function errText(err) {
  if (!err) return "Something went wrong.";
  if (err.code === "network_error") return "Cannot reach the server. Check your connection.";
  return err.message || String(err);
}

export const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
export const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

export function shortTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

export function fullTime(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}
export function preview(s, n) {
  const chars = [...String(s || "")];
  return chars.length > n ? chars.slice(0, n).join("") + "…" : chars.join("");
}
export function autosize(ta) {
  ta.style.height = "auto";
  ta.style.height = `${Math.min(ta.scrollHeight + 2, 160)}px`;
  ta.style.overflowY = ta.scrollHeight > 160 ? "auto" : "hidden";
}
