// DOM helpers: elements built with DOM calls (text is always a text node, never
// markup), icons, avatars, links in text, toasts, times and sizes.

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
const ICONS = {
  reply: ["M9 14 4 9l5-5", "M4 9h10a6 6 0 0 1 6 6v3"],
  edit: ["M12 20h9", "M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z"],
  trash: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6"],
  search: ["M11 19a8 8 0 1 0 0-16 8 8 0 0 0 0 16Z", "m21 21-4.3-4.3"],
  bell: ["M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9", "M10.3 21a1.9 1.9 0 0 0 3.4 0"],
  bellOff: ["M13.7 21a2 2 0 0 1-3.4 0", "M18.6 13A17.9 17.9 0 0 1 18 8", "M6.3 6.3A5.9 5.9 0 0 0 6 8c0 7-3 9-3 9h14", "M18 8a6 6 0 0 0-9.3-5", "m2 2 20 20"],
  phone: ["M22 16.9v3a2 2 0 0 1-2.2 2 19.8 19.8 0 0 1-8.6-3.1 19.5 19.5 0 0 1-6-6A19.8 19.8 0 0 1 2.1 4.2 2 2 0 0 1 4.1 2h3a2 2 0 0 1 2 1.7c.1.9.4 1.8.7 2.7a2 2 0 0 1-.5 2.1L8 9.8a16 16 0 0 0 6 6l1.3-1.3a2 2 0 0 1 2.1-.4c.9.3 1.8.6 2.7.7a2 2 0 0 1 1.7 2z"],
  phoneMissed: ["m23 1-6 6", "m17 1 6 6", "M22 16.9v3a2 2 0 0 1-2.2 2 19.8 19.8 0 0 1-8.6-3.1 19.5 19.5 0 0 1-6-6A19.8 19.8 0 0 1 2.1 4.2 2 2 0 0 1 4.1 2h3a2 2 0 0 1 2 1.7c.1.9.4 1.8.7 2.7a2 2 0 0 1-.5 2.1L8 9.8a16 16 0 0 0 6 6l1.3-1.3a2 2 0 0 1 2.1-.4c.9.3 1.8.6 2.7.7a2 2 0 0 1 1.7 2z"],
  video: ["m23 7-7 5 7 5V7z", "M3 5h11a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2z"],
  clip: ["m21.4 11.1-9.2 9.2a6 6 0 0 1-8.5-8.5l9.2-9.2a4 4 0 0 1 5.7 5.7l-9.2 9.2a2 2 0 0 1-2.8-2.8l8.5-8.5"],
  clock: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18Z", "M12 7v5l3 2"],
  alert: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18Z", "M12 8v4", "M12 16h.01"],
  file: ["M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z", "M14 2v6h6", "M8 13h8", "M8 17h5"],
  x: ["M18 6 6 18", "m6 6 12 12"],
};

/** An SVG icon by name (decorative: hidden from assistive technology). */
export function icon(name, size = 16) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 24 24", width: String(size), height: String(size), fill: "none", stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false", "data-icon": name })) svg.setAttribute(k, v);
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

// Avatar colours: white initials on each are at least 5.8:1 (WCAG AA).
const AVATAR_COLORS = ["#1f5fa8", "#1e6b52", "#7a3fb0", "#b23a48", "#8a5a00", "#0f6e7a", "#a33d7a", "#5a5f1f"];

function hashOf(s) {
  let x = 0;
  for (const ch of String(s || "")) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x;
}

/** Up to two initials of a name ("Dr Ana Ruiz" → "AR", "bob" → "B"). */
export function initials(name) {
  const words = String(name || "?")
    .replace(/^(dr|mr|mrs|ms|prof)\.?\s+/i, "")
    .split(/[\s._-]+/)
    .filter(Boolean);
  const first = (w) => [...w][0] || "";
  const s = words.length > 1 ? first(words[0]) + first(words[words.length - 1]) : first(words[0] || "?");
  return s.toUpperCase();
}

/** Fills (or makes) an avatar element for a user: initials on a colour from the id. */
export function avatar(user, el = null, size = "") {
  const u = user || {};
  const node = el || h("span", { class: `avatar${size ? ` ${size}` : ""}`, "aria-hidden": "true" });
  node.textContent = initials(u.display_name || u.username || "?");
  node.style.background = AVATAR_COLORS[hashOf(u.id || u.username) % AVATAR_COLORS.length];
  return node;
}

// http(s) URLs in running text. Anything else (javascript:, data:…) stays text.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/**
 * Appends text to el with the http(s) links in it as anchors; everything is a
 * text node or an <a> made with DOM calls (never innerHTML). Marks, when given
 * (lower-cased words), wrap matches in <mark>.
 */
export function appendRich(el, text, marks = null) {
  const s = String(text || "");
  let last = 0;
  for (const m of s.matchAll(URL_RE)) {
    let url = m[0];
    // Trailing punctuation belongs to the sentence, not the link.
    const trail = url.match(/[.,;:!?)\]}]+$/);
    if (trail && !(trail[0].startsWith(")") && url.includes("("))) url = url.slice(0, url.length - trail[0].length);
    let href = null;
    try {
      const u = new URL(url);
      if (u.protocol === "http:" || u.protocol === "https:") href = u.href;
    } catch {
      href = null;
    }
    if (!href) continue;
    appendMarked(el, s.slice(last, m.index), marks);
    el.append(h("a", { href, target: "_blank", rel: "noopener noreferrer", "data-testid": "message-link" }, url));
    last = m.index + url.length;
  }
  appendMarked(el, s.slice(last), marks);
  return el;
}

/** Appends text with the given words (lower case) wrapped in <mark>. */
export function appendMarked(el, text, marks) {
  if (!text) return;
  if (!marks || !marks.length) {
    el.append(document.createTextNode(text));
    return;
  }
  const lower = text.toLowerCase();
  let i = 0;
  while (i < text.length) {
    let best = -1;
    let len = 0;
    for (const w of marks) {
      const j = lower.indexOf(w, i);
      if (j !== -1 && (best === -1 || j < best)) {
        best = j;
        len = w.length;
      }
    }
    if (best === -1) break;
    if (best > i) el.append(document.createTextNode(text.slice(i, best)));
    el.append(h("mark", {}, text.slice(best, best + len)));
    i = best + len;
  }
  if (i < text.length) el.append(document.createTextNode(text.slice(i)));
}

let toastTimer = null;
let toastAction = null;

/**
 * Shows a short notice. With an action ({label, run}) the notice has a button;
 * ms is how long it stays.
 */
export function toast(msg, ms = 4000, action = null) {
  const el = $("toast");
  setText("toast-text", msg);
  const btn = $("toast-action");
  toastAction = action;
  btn.hidden = !action;
  btn.textContent = action ? action.label : "";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(hideToast, ms);
}

export function hideToast() {
  clearTimeout(toastTimer);
  toastAction = null;
  $("toast").hidden = true;
}

export function runToastAction() {
  const a = toastAction;
  hideToast();
  if (a) a.run();
}

export function errText(err) {
  if (!err) return "Something went wrong.";
  if (err.code === "network_error") return "Cannot reach the server. Check your connection.";
  return err.message || String(err);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const longDayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const yearDayFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "long", day: "numeric" });

export function shortTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

export function clockTime(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? "" : timeFmt.format(d);
}

export function fullTime(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

/** The local calendar day of a time, as a key ("2025-03-04"). */
export function dayKey(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** "Today", "Yesterday", a weekday name this week, else a date. */
export function dayLabel(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const start = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((start(new Date()) - start(d)) / 86400000);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  if (days > 1 && days < 7) return longDayFmt.format(d).split(",")[0];
  return d.getFullYear() === new Date().getFullYear() ? longDayFmt.format(d) : yearDayFmt.format(d);
}

/** A duration in seconds as m:ss or h:mm:ss. */
export function duration(sec) {
  const s = Math.max(0, Math.floor(sec));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

export function fileSize(n) {
  const b = Number(n) || 0;
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(b < 10240 ? 1 : 0)} KB`;
  return `${(b / 1024 / 1024).toFixed(1)} MB`;
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

/** Whether the page shows one pane at a time (phone width). */
export const narrow = () => window.matchMedia("(max-width: 720px)").matches;
