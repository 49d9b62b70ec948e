// Stream diagnostics for GET /api/diag/stream (SPEC §7): shows each tick, the
// gap since the previous one, and the total time. Hooks for tests:
// #diag-status[data-state="idle|connecting|streaming|done|error|stopped"],
// #diag-ticks, #diag-max-gap, #diag-late, #diag-total, #diag-verdict,
// #diag-log rows tr[data-n][data-gap-ms].

const $ = (id) => document.getElementById(id);
let es = null;
let run = null;

function setStatus(state, text) {
  const el = $("diag-status");
  el.dataset.state = state;
  el.textContent = text || state;
}

function fmt(ms) {
  return `${(ms / 1000).toFixed(2)} s`;
}

function update() {
  $("diag-ticks").textContent = String(run.ticks);
  $("diag-max-gap").textContent = run.maxGap ? fmt(run.maxGap) : "–";
  $("diag-late").textContent = String(run.late);
  $("diag-total").textContent = run.end ? fmt(run.end - run.start) : fmt(performance.now() - run.start);
}

function verdict() {
  if (run.ticks < 30) return `Stream ended after ${run.ticks} of 30 ticks: something cut it early.`;
  if (run.maxGap > 3000) return "All ticks arrived, but some in bursts: something buffers the stream.";
  if (run.late) return "All ticks arrived, a few late: the network is slow or busy.";
  return "All 30 ticks arrived on time: long-lived streams pass through.";
}

function start() {
  stop("stopped");
  $("diag-log").replaceChildren();
  run = { start: performance.now(), last: null, ticks: 0, maxGap: 0, late: 0, end: null, seen: new Set() };
  setStatus("connecting", "connecting…");
  update();
  es = new EventSource("/api/diag/stream");
  const mine = es;
  es.onopen = () => setStatus("streaming", "streaming");
  es.addEventListener("tick", (ev) => {
    let d = {};
    try {
      d = JSON.parse(ev.data);
    } catch {
      /* show what we can */
    }
    const now = performance.now();
    const gap = run.last == null ? now - run.start : now - run.last;
    run.last = now;
    if (d.n != null && run.seen.has(d.n)) return; // a reconnect replaying ticks
    if (d.n != null) run.seen.add(d.n);
    run.ticks++;
    if (run.ticks > 1) {
      run.maxGap = Math.max(run.maxGap, gap);
      if (gap > 1500) run.late++;
    }
    const tr = document.createElement("tr");
    tr.dataset.n = String(d.n ?? "");
    tr.dataset.gapMs = String(Math.round(gap));
    if (run.ticks > 1 && gap > 1500) tr.className = "late";
    for (const v of [d.n ?? "?", d.time ?? "", fmt(now - run.start), run.ticks > 1 ? fmt(gap) : "–"]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.append(td);
    }
    $("diag-log").append(tr);
    update();
  });
  es.addEventListener("done", () => {
    run.end = performance.now();
    mine.close();
    setStatus("done", "done");
    update();
    $("diag-verdict").textContent = verdict();
  });
  es.onerror = () => {
    if (es !== mine || run.end) return;
    // Do not let EventSource reconnect: a diagnostic wants to see the failure.
    run.end = performance.now();
    mine.close();
    setStatus("error", "stream closed or failed");
    update();
    $("diag-verdict").textContent = verdict();
  };
  run.timer = setInterval(() => run && !run.end && update(), 250);
}

function stop(state) {
  if (es) es.close();
  es = null;
  if (run) {
    clearInterval(run.timer);
    if (!run.end) {
      run.end = performance.now();
      setStatus(state, state);
      update();
    }
  }
}

$("diag-start").addEventListener("click", start);
$("diag-stop").addEventListener("click", () => stop("stopped"));
start();
