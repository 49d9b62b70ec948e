// Calls: signalling over the API, media over WebRTC where the browser has it;
// mute, camera, duration; and the records of past calls in the timeline, read
// from the call events of the user's event log.

import { $, duration, errText, setText, show, toast } from "./dom.js";
import { userName } from "./model.js";
import { S, parley } from "./state.js";

export const rtcAvailable = () => typeof RTCPeerConnection === "function" && !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);

/**
 * STUN/TURN servers: the server's (ice_servers in /api/config), unless this
 * browser has its own in localStorage["parley:iceServers"] (a JSON
 * RTCIceServer array, for testing a TURN server without a restart).
 */
export function iceServers() {
  try {
    const own = localStorage.getItem("parley:iceServers");
    if (own) {
      const v = JSON.parse(own);
      if (Array.isArray(v)) return v;
    }
  } catch {
    /* a bad override falls back to the server's */
  }
  return parley.iceServers || [];
}

// --- records in the timeline ------------------------------------------------

const FINAL = new Set(["declined", "ended", "missed"]);
const LOG_PAGES = 20;

function logKey() {
  return S.me ? `parley:app:${S.me.id}:calls` : null;
}

function readLog() {
  try {
    const v = JSON.parse(localStorage.getItem(logKey()) || "null");
    return v && typeof v === "object" ? v : { cursor: 0, calls: {} };
  } catch {
    return { cursor: 0, calls: {} };
  }
}

function writeLog(log) {
  const k = logKey();
  if (!k) return;
  const ids = Object.keys(log.calls);
  if (ids.length > 300) {
    ids.sort((a, b) => Date.parse(log.calls[a].created_at) - Date.parse(log.calls[b].created_at));
    for (const id of ids.slice(0, ids.length - 300)) delete log.calls[id];
  }
  try {
    localStorage.setItem(k, JSON.stringify(log));
  } catch {
    /* full: records stay in memory */
  }
}

const rank = (c) => ({ ringing: 0, active: 1, declined: 2, ended: 2, missed: 2 })[c.state] ?? 0;

/** Keeps the latest state of a call for the timeline. */
export function recordCall(call, { persist = true, render = true } = {}) {
  if (!call || !call.id) return;
  const prev = S.calls.get(call.id);
  if (prev && rank(prev) > rank(call)) return;
  S.calls.set(call.id, call);
  if (persist && FINAL.has(call.state)) {
    const log = readLog();
    log.calls[call.id] = call;
    writeLog(log);
  }
  if (render && S.current === call.conversation_id && FINAL.has(call.state)) import("./messages.js").then((m) => m.renderMessages());
}

/**
 * Reads the call events this browser has not seen yet from the user's event
 * log (GET /api/events/poll?wait=0, from a cursor kept per user), so the
 * timeline shows calls that ended while the page was closed, or on another
 * device, too.
 */
export async function loadCallLog() {
  if (!S.me) return;
  const me = S.me.id;
  const log = readLog();
  for (const c of Object.values(log.calls)) recordCall(c, { persist: false, render: false });
  let cursor = Number(log.cursor) || 0;
  for (let page = 0; page < LOG_PAGES; page++) {
    const r = await parley.api("GET", `/api/events/poll?after=${cursor}&wait=0`);
    if (!S.me || S.me.id !== me) return;
    const events = (r && r.events) || [];
    for (const e of events) if (e.type && e.type.startsWith("call.") && e.type !== "call.signal") recordCall(e.data, { persist: false, render: false });
    const next = r && r.last_id != null ? Number(r.last_id) : events.length ? Number(events[events.length - 1].id) : cursor;
    if (!Number.isFinite(next) || next <= cursor || !events.length) {
      if (Number.isFinite(next) && next > cursor) cursor = next;
      break;
    }
    cursor = events.length ? Number(events[events.length - 1].id) : next;
    if (events.length < 500) break;
  }
  const fresh = readLog();
  fresh.cursor = cursor;
  for (const c of S.calls.values()) if (FINAL.has(c.state)) fresh.calls[c.id] = c;
  writeLog(fresh);
  if (S.current) import("./messages.js").then((m) => m.renderMessages());
}

/** What a finished call says in the timeline, from this user's side. */
export function callRecordText(call) {
  const kind = call.media === "video" ? "video call" : "audio call";
  const Kind = call.media === "video" ? "Video call" : "Audio call";
  const mine = S.me && call.caller_id === S.me.id;
  if (call.state === "missed" || (call.state === "ended" && !call.answered_at && !mine)) {
    return mine ? { outcome: "missed", text: `${Kind}, no answer` } : { outcome: "missed", text: `Missed ${kind}` };
  }
  if (call.state === "declined") return mine ? { outcome: "declined", text: `${Kind} declined` } : { outcome: "declined", text: `You declined ${call.media === "video" ? "a" : "an"} ${kind}` };
  if (call.state === "ended" && !call.answered_at) return { outcome: "cancelled", text: `Cancelled ${kind}` };
  const secs = (Date.parse(call.ended_at) - Date.parse(call.answered_at)) / 1000;
  return { outcome: "completed", text: Number.isFinite(secs) ? `${Kind} · ${duration(secs)}` : Kind };
}

export function callPeerName(call) {
  return userName(call.caller_id === S.me.id ? call.callee_id : call.caller_id);
}

export function renderCall() {
  const c = S.call;
  const panel = $("call-panel");
  if (!c) {
    panel.hidden = true;
    panel.dataset.callState = "none";
    panel.dataset.callId = "";
    panel.dataset.media = "";
    return;
  }
  panel.hidden = false;
  panel.dataset.callState = c.view;
  panel.dataset.callId = c.call ? c.call.id : "";
  panel.dataset.media = c.call ? c.call.media : c.media || "";
  const who = c.call ? callPeerName(c.call) : "";
  const kind = (c.call ? c.call.media : c.media) === "video" ? "Video call" : "Audio call";
  const titles = {
    incoming: `${kind} from ${who}`,
    outgoing: `Calling ${who}…`,
    active: `${kind} with ${who}`,
    elsewhere: `${kind} with ${who}`,
    ended: kind,
  };
  setText("call-title", titles[c.view] || kind);
  setText("call-status", c.status || "");
  show("call-accept", c.view === "incoming");
  show("call-decline", c.view === "incoming");
  show("call-end", c.view === "outgoing" || c.view === "active" || c.view === "elsewhere");
  // Audio-only calls play through the (hidden) video element.
  show("call-videos", c.view === "active" && !!c.pc && c.call && c.call.media === "video");
  $("call-videos").dataset.media = c.call ? c.call.media : "";
  const live = c.view === "active" && !!c.local;
  const mic = c.local && c.local.getAudioTracks()[0];
  const cam = c.local && c.local.getVideoTracks()[0];
  show("call-mute", live && !!mic);
  show("call-camera", live && !!cam);
  const muted = !!mic && !mic.enabled;
  const camOff = !!cam && !cam.enabled;
  $("call-mute").setAttribute("aria-pressed", String(muted));
  $("call-mute").textContent = muted ? "Unmute" : "Mute";
  $("call-camera").setAttribute("aria-pressed", String(camOff));
  $("call-camera").textContent = camOff ? "Camera on" : "Camera off";
  renderDuration();
}

let durationTimer = null;

/** The running time of an answered call, once a second. */
function renderDuration() {
  const c = S.call;
  const answered = c && c.view === "active" && c.call && c.call.answered_at ? Date.parse(c.call.answered_at) : NaN;
  const el = $("call-duration");
  if (!Number.isFinite(answered)) {
    el.hidden = true;
    clearInterval(durationTimer);
    durationTimer = null;
    return;
  }
  // The server's clock and ours differ a little; never show a negative time.
  el.textContent = duration(Math.max(0, (Date.now() - answered) / 1000));
  el.hidden = false;
  if (!durationTimer) durationTimer = setInterval(renderDuration, 1000);
}

export function toggleMute() {
  const c = S.call;
  const t = c && c.local && c.local.getAudioTracks()[0];
  if (!t) return;
  t.enabled = !t.enabled;
  renderCall();
}

export function toggleCamera() {
  const c = S.call;
  const t = c && c.local && c.local.getVideoTracks()[0];
  if (!t) return;
  t.enabled = !t.enabled;
  renderCall();
}

export function callStale(call) {
  const t = Date.parse(call.created_at);
  return Number.isFinite(t) && Date.now() - t > S.config.callTimeoutMs + 10000;
}

export function onCallEvent(type, call) {
  if (!call || !S.me) return;
  const mine = S.call && S.call.call && S.call.call.id === call.id;
  switch (type) {
    case "call.ringing": {
      if (callStale(call)) return; // replayed from history
      if (S.call && S.call.call && !mine && S.call.view !== "ended") return; // busy with another call
      if (call.callee_id === S.me.id) {
        S.call = { call, view: "incoming", owner: false, status: "Ringing…", queue: [] };
        startRingtone();
      } else {
        const owner = (S.call && S.call.starting) || (mine && S.call.owner);
        S.call = { ...(S.call || {}), call, view: "outgoing", owner: !!owner, starting: false, status: "Ringing…", queue: (S.call && S.call.queue) || [] };
      }
      renderCall();
      break;
    }
    case "call.accepted":
      if (!mine) return;
      stopRingtone();
      S.call.call = call;
      if (S.call.owner) {
        S.call.view = "active";
        S.call.status = "Connecting media…";
        renderCall();
        startMedia(call.caller_id === S.me.id);
      } else {
        S.call.view = "elsewhere";
        S.call.status = "Answered on another device or tab.";
        renderCall();
      }
      break;
    case "call.declined":
    case "call.ended":
    case "call.missed": {
      if (!mine) return;
      const text = { "call.declined": "Call declined", "call.ended": "Call ended", "call.missed": "Missed call" }[type];
      finishCall(text);
      break;
    }
    default:
      break;
  }
}

export function finishCall(text) {
  const had = S.call;
  teardownMedia();
  stopRingtone();
  if (!had) return;
  S.call = { call: had.call, view: "ended", status: text, owner: false, queue: [] };
  renderCall();
  const id = had.call && had.call.id;
  setTimeout(() => {
    if (S.call && S.call.view === "ended" && (!S.call.call || S.call.call.id === id)) {
      S.call = null;
      renderCall();
    }
  }, 2500);
}

export function teardownCall() {
  teardownMedia();
  stopRingtone();
  S.call = null;
  renderCall();
}

export async function startCall(media) {
  if (!S.current) return;
  if (S.call && S.call.view !== "ended") {
    toast("A call is already in progress.");
    return;
  }
  S.call = { starting: true, owner: true, view: "outgoing", media, status: "Calling…", queue: [] };
  renderCall();
  try {
    const call = await parley.startCall(S.current, media);
    if (!S.call || !S.call.owner) return;
    if (S.call.call && S.call.call.id === call.id && S.call.view !== "outgoing") return; // events got ahead
    S.call = { ...S.call, call, starting: false, view: S.call.view === "outgoing" ? "outgoing" : S.call.view };
    renderCall();
  } catch (err) {
    S.call = null;
    renderCall();
    toast(err.status === 409 ? "There is already a call in this conversation." : errText(err));
  }
}

export async function acceptCall() {
  const c = S.call;
  if (!c || !c.call) return;
  c.owner = true;
  stopRingtone();
  c.status = "Connecting…";
  renderCall();
  try {
    const call = await parley.acceptCall(c.call.id);
    if (S.call !== c) return;
    c.call = call;
    if (c.view !== "active") {
      c.view = "active";
      c.status = "Connecting media…";
      renderCall();
      startMedia(false);
    }
  } catch (err) {
    toast(errText(err));
    teardownCall();
  }
}

export async function declineCall() {
  const c = S.call;
  if (!c || !c.call) return;
  stopRingtone();
  try {
    await parley.declineCall(c.call.id);
  } catch (err) {
    toast(errText(err));
  }
  finishCall("Call declined");
}

export async function endCall() {
  const c = S.call;
  if (!c) return;
  if (!c.call) {
    teardownCall();
    return;
  }
  try {
    await parley.endCall(c.call.id);
  } catch (err) {
    if (err.status !== 409 && err.status !== 404) toast(errText(err));
  }
  finishCall("Call ended");
}

export function sendSignal(payload) {
  const c = S.call;
  if (!c || !c.call) return;
  parley.signal(c.call.id, payload).catch(() => {});
}

export async function startMedia(isCaller) {
  const c = S.call;
  if (!c || c.pc || c.mediaStarting) return;
  if (!rtcAvailable()) {
    c.status = "Connected. Audio and video are not available in this browser.";
    renderCall();
    return;
  }
  c.mediaStarting = true;
  const pc = new RTCPeerConnection({ iceServers: iceServers() });
  c.pc = pc;
  c.candidates = [];
  pc.onicecandidate = (e) => {
    if (e.candidate) sendSignal({ type: "candidate", candidate: e.candidate.toJSON() });
  };
  pc.ontrack = (e) => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    $("remote-video").srcObject = stream;
  };
  pc.onconnectionstatechange = () => {
    if (S.call !== c) return;
    const s = pc.connectionState;
    c.status = s === "connected" ? "Connected" : s === "failed" ? "Media connection failed." : s === "disconnected" ? "Reconnecting media…" : "Connecting media…";
    renderCall();
  };
  const video = c.call.media === "video";
  try {
    const local = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    if (S.call !== c) {
      local.getTracks().forEach((t) => t.stop());
      return;
    }
    c.local = local;
    for (const t of local.getTracks()) pc.addTrack(t, local);
    $("local-video").srcObject = local;
  } catch {
    // No device or permission: still receive the other side.
    pc.addTransceiver("audio", { direction: "recvonly" });
    if (video) pc.addTransceiver("video", { direction: "recvonly" });
    c.status = "Microphone/camera unavailable: you can listen only.";
  }
  c.mediaStarting = false;
  renderCall();
  c.chain = Promise.resolve();
  if (isCaller) {
    c.chain = c.chain.then(async () => {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      sendSignal({ type: "offer", sdp: offer.sdp });
    });
  }
  for (const p of c.queue.splice(0)) queueSignal(c, p);
  c.chain.catch(() => {});
}

export function queueSignal(c, payload) {
  c.chain = (c.chain || Promise.resolve()).then(() => handleSignal(c, payload)).catch((err) => console.warn("call signal", err));
}

export async function handleSignal(c, p) {
  const pc = c.pc;
  if (!pc || !p || S.call !== c) return;
  if (p.type === "offer") {
    await pc.setRemoteDescription({ type: "offer", sdp: p.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    sendSignal({ type: "answer", sdp: answer.sdp });
    await flushCandidates(c);
  } else if (p.type === "answer") {
    await pc.setRemoteDescription({ type: "answer", sdp: p.sdp });
    await flushCandidates(c);
  } else if (p.type === "candidate" && p.candidate) {
    if (pc.remoteDescription) await pc.addIceCandidate(p.candidate);
    else c.candidates.push(p.candidate);
  }
}

export async function flushCandidates(c) {
  for (const cand of c.candidates.splice(0)) {
    try {
      await c.pc.addIceCandidate(cand);
    } catch {
      /* a stale candidate */
    }
  }
}

export function onSignal(d) {
  const c = S.call;
  if (!d || !S.me || d.from_user_id === S.me.id) return;
  if (!c || !c.call || c.call.id !== d.call_id || !c.owner) return;
  if (!c.pc) c.queue.push(d.payload);
  else queueSignal(c, d.payload);
}

export function teardownMedia() {
  const c = S.call;
  if (!c) return;
  if (c.pc) {
    try {
      c.pc.close();
    } catch {
      /* ignore */
    }
    c.pc = null;
  }
  if (c.local) {
    c.local.getTracks().forEach((t) => t.stop());
    c.local = null;
  }
  $("remote-video").srcObject = null;
  $("local-video").srcObject = null;
}

export let ring = null;
export function startRingtone() {
  stopRingtone();
  let ctx;
  try {
    ctx = new (window.AudioContext || window.webkitAudioContext)();
  } catch {
    return;
  }
  const beep = () => {
    try {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = 660;
      g.gain.value = 0.06;
      o.connect(g).connect(ctx.destination);
      o.start();
      o.stop(ctx.currentTime + 0.4);
    } catch {
      /* autoplay policy: silent ring */
    }
  };
  beep();
  ring = { ctx, timer: setInterval(beep, 2000) };
}

export function stopRingtone() {
  if (!ring) return;
  clearInterval(ring.timer);
  ring.ctx.close().catch(() => {});
  ring = null;
}
