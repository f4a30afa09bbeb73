// The scan viewer: the material-coloured image at its true aspect ratio, filling in as
// lines are committed, with the ATR's findings, a metre scale, zoom and pan, views and
// a window, and the decision with the regions the officer marks.
import { ago, api, follow, login, text } from "/static/common.js";

const ref = Number(location.pathname.split("/").pop());
const image = document.getElementById("image");
const overlay = document.getElementById("overlay");
const frame = document.getElementById("frame");
const stage = document.getElementById("stage");
const ictx = image.getContext("2d");

// what the page knows, exposed for the tests and the benchmark (window.niiViewer)
const state = {
  ref, info: null, columns: 0, verdict: null, decisions: [], marks: [], draws: [],
  zoom: 1, tx: 0, ty: 0, view: "material", w0: 0, w1: 9, busy: false, again: false,
};
window.niiViewer = state;

function layout() {
  const p = state.info;
  if (!p) return;
  const width = Math.max(p.planned, p.lines, 1);
  if (image.width !== width || image.height !== p.channels) {
    const old = image.width > 1 ? ictx.getImageData(0, 0, image.width, image.height) : null;
    image.width = width;
    image.height = p.channels;
    if (old) ictx.putImageData(old, 0, 0);
  }
  transform();
}

// pixels of the display per image column and per row: true aspect ratio (mm per pixel)
function scaleXY() {
  const p = state.info;
  return [state.zoom * p.line_mm, state.zoom * p.channel_mm];
}

function fit() {
  const p = state.info;
  if (!p) return;
  const width = Math.max(p.planned, p.lines, 1);
  state.zoom = Math.min(frame.clientWidth / (width * p.line_mm),
                        frame.clientHeight / (p.channels * p.channel_mm));
  state.tx = 0;
  state.ty = 0;
  transform();
}

function transform() {
  const [sx, sy] = scaleXY();
  image.style.width = `${image.width * sx}px`;
  image.style.height = `${image.height * sy}px`;
  stage.style.transform = `translate(${state.tx}px, ${state.ty}px)`;
  overlay.width = frame.clientWidth;
  overlay.height = frame.clientHeight;
  overlay.style.transform = `translate(${-state.tx}px, ${-state.ty}px)`;
  drawOverlay();
  drawScale();
}

function toScreen(c, r) {
  const [sx, sy] = scaleXY();
  return [c * sx + state.tx, r * sy + state.ty];
}

function toImage(x, y) {
  const [sx, sy] = scaleXY();
  return [Math.round((x - state.tx) / sx), Math.round((y - state.ty) / sy)];
}

function box(ctx, b, colour, label) {
  const [x0, y0] = toScreen(b[0], b[1]);
  const [x1, y1] = toScreen(b[2], b[3]);
  ctx.strokeStyle = colour;
  ctx.lineWidth = 2;
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  if (label) {
    ctx.fillStyle = colour;
    ctx.font = "12px system-ui";
    ctx.fillText(label, x0 + 2, Math.max(12, y0 - 3));
  }
}

function drawOverlay(drag) {
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!state.info) return;
  if (document.getElementById("showfindings").checked && state.verdict) {
    for (const f of state.verdict.findings || []) {
      if (f.bbox_px && f.bbox_px.length === 4) {
        box(ctx, f.bbox_px, f.level === "red" ? "#e53935" : "#fbc02d", f.category);
      }
    }
  }
  for (const d of state.decisions) {
    for (const m of d.marks || []) box(ctx, m.box_px, "#8e24aa", `${m.category} (${d.by})`);
  }
  for (const m of state.marks) box(ctx, m.box_px, "#00acc1", m.category);
  if (state.planted && document.getElementById("showplanted").checked) {
    ctx.setLineDash([2, 3]);
    for (const o of state.planted.objects || []) box(ctx, o.box_px, "#43a047", `planted: ${o.label}`);
    ctx.setLineDash([]);
  }
  if (state.tip && state.tip.box_px) {
    ctx.setLineDash([6, 4]);
    box(ctx, state.tip.box_px, "#ff6f00",
        `TIP ${state.tip.signature}: ${state.tip.hit ? "found" : "missed"}`);
    ctx.setLineDash([]);
  }
  if (drag) box(ctx, drag, "#00acc1", "");
}

function drawScale() {
  const el = document.getElementById("scale");
  el.replaceChildren();
  if (!state.info) return;
  const [sx] = scaleXY();
  const pxPerMetre = sx * 1000 / state.info.line_mm;
  let metres = 1;
  for (const m of [0.1, 0.2, 0.5, 1, 2, 5, 10]) if (m * pxPerMetre <= 200) metres = m;
  const bar = text("div", "", "bar");
  bar.style.width = `${metres * pxPerMetre}px`;
  bar.style.left = "0px";
  const label = text("div", `${metres} m (pixel ${state.info.line_mm.toFixed(1)} x ` +
                     `${state.info.channel_mm.toFixed(1)} mm, ${state.info.pixel_mm_from})`, "label");
  el.append(bar, label);
}

// Fetch and draw the columns committed since the last draw (one request at a time).
async function fetchNew() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  try {
    for (;;) {
      const q = `start=${state.columns}&view=${state.view}&w0=${state.w0}&w1=${state.w1}`;
      const resp = await api(`/api/scans/${ref}/strip?${q}`);
      if (resp.status === 204) break;
      if (!resp.ok) { showError((await resp.json()).error); break; }
      const [start, end] = resp.headers.get("X-Columns").split("-").map(Number);
      const lines = Number(resp.headers.get("X-Lines"));
      const bitmap = await createImageBitmap(await resp.blob());
      if (state.info) state.info.lines = Math.max(state.info.lines, lines);
      layout();
      ictx.drawImage(bitmap, start, 0);
      state.columns = end;
      const commits = (resp.headers.get("X-Commits") || "").split(",").filter((x) => x)
        .map((x) => x.split(":").map(Number));
      state.draws.push({ t: performance.timeOrigin + performance.now(), start, end, commits });
      image.dataset.columns = String(end);
      progress();
      if (end >= lines) break;
    }
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; fetchNew(); }
  }
}

function redraw() {
  state.columns = 0;
  ictx.clearRect(0, 0, image.width, image.height);
  fetchNew();
}

function progress() {
  const p = state.info;
  if (!p) return;
  document.getElementById("progress").textContent =
    `${state.columns}/${p.planned || "?"} lines, ${p.status}` + (p.calibrated ? "" : ", not calibrated yet");
}

function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message;
  el.hidden = !message;
}

function renderFacts(doc) {
  const s = doc.scan;
  document.getElementById("title").textContent =
    `scan ${s.scan_id} of ${s.scanner} (ref ${s.ref})`;
  const facts = document.getElementById("facts");
  facts.replaceChildren(
    text("div", `site ${s.site || "-"}, container ${s.container || "?"}, GD ${s.gd_number || "-"}`),
    text("div", `started ${ago(s.started_ns)}${s.finished_ns ? ", finished " + ago(s.finished_ns) : ""}`),
    text("div", `${s.status}: ${s.lines_received}/${s.lines_planned} lines, ${s.gaps} gap(s)`,
         s.status === "complete" || s.status === "scanning" ? "" : "error"),
    text("div", doc.viewers && doc.viewers.length ? `open by ${doc.viewers.join(", ")}` : ""),
    ...(doc.alarms || []).map((a) => text("div", `alarm ${ago(a.ts_ns)} ${a.kind}: ${a.message}`,
                                          "error")),
  );
  const atr = document.getElementById("atrbody");
  atr.replaceChildren();
  const v = doc.verdict;
  if (v && v.error) atr.append(text("div", `no verdict: ${v.error}`, "v-none"));
  else if (v) {
    atr.append(text("div", `${String(v.verdict).toUpperCase()}, ${v.findings.length} finding(s)`,
                    "v-" + v.verdict));
    for (const f of v.findings) {
      const mm = f.bbox_mm || [];
      const where = mm.length === 4 ? `at ${(mm[0] / 1000).toFixed(2)}-${(mm[2] / 1000).toFixed(2)} m` : "";
      const size = (f.size_mm || []).map((x) => `${Math.round(x)}`).join(" x ");
      atr.append(text("div", `${f.level} ${f.category} ${where}, ${size} mm, ` +
        `${f.mean_density_gcm2} g/cm², ${f.material || "?"} (Zeff ${f.zeff}): ${f.reason}`,
        "finding " + f.level));
    }
    for (const n of v.notes || []) atr.append(text("div", n, "v-none"));
    // the image library: the most similar scans of the same HS heading officers confirmed
    const similar = v.similar || [];
    if (similar.length) atr.append(text("div", "similar confirmed scans:", "v-none"));
    for (const s of similar) {
      const a = document.createElement("a");
      a.href = `/scan/${s.ref}`;
      a.textContent = `ref ${s.ref}`;
      const row = text("div", "");
      row.append(a, ` confirmed ${s.verdict}, similarity ${s.similarity}`);
      atr.append(row);
    }
  }
  const gd = document.getElementById("gdbody");
  gd.replaceChildren();
  const sel = doc.selection;
  if (sel) {
    gd.append(text("div", `risk selection: ${sel.channel} channel (${sel.tier})` +
      `${sel.att ? ", ATT transit" : ""}, GD ${sel.gd_number} version ${sel.version}`,
      "v-" + sel.channel));
    if (sel.container_listed === false) {
      gd.append(text("div", `the GD the scan carries does not list container ` +
        `${doc.scan.container}: check the declaration`, "error"));
    }
  }
  if (doc.gd) {
    for (const [k, val] of Object.entries(doc.gd)) {
      gd.append(text("div", `${k}: ${typeof val === "object" ? JSON.stringify(val) : val}`));
    }
  }
  const hold = document.getElementById("hold");
  hold.replaceChildren();
  hold.hidden = !doc.att;
  if (doc.att) {
    const a = doc.att;
    const link = document.createElement("a");
    link.href = `/att/${a.ref_b}`;
    link.textContent = "open the ATT view";
    if (a.side === "B") {
      const head = a.held ? "Contravening Unit: HOLD" :
        a.hold ? "HOLD released by the central RIAC" : `ATT: ${a.status}`;
      hold.append(text("strong", head), text("div", a.reason || ""));
      if (a.held) {
        hold.append(text("div", "Only a central RIAC analyst releases a HOLD, with a reason."));
      }
    } else {
      hold.append(text("div", `Scan A of exit scan ${a.ref_b}: ${a.status}`));
    }
    hold.className = a.held ? "hold held" : "hold";
    if (a.ref_a !== null) hold.append(link);
  }
  const planted = document.getElementById("planted");
  planted.hidden = !doc.planted;
  if (doc.planted) {
    const p = doc.planted;
    const body = document.getElementById("plantedbody");
    body.replaceChildren(
      text("div", `load: ${p.commodity || "-"}; concealment: ${p.concealment || "none"}; ` +
        `GD ${p.gd_truthful ? "truthful" : "false: " + (p.discrepancies || []).join(", ")}`),
      ...(p.objects || []).map((o) => text("div", `${o.label} (${o.kind}, ${o.material})`)),
    );
  }
  const hist = document.getElementById("history");
  hist.replaceChildren();
  for (const d of doc.decisions) {
    hist.append(text("div", `${d.verdict.toUpperCase()}${d.mandate ? " (mandate)" : ""} ` +
      `${d.kind} by ${d.by} (${d.role}) ${ago(d.created_ns)}: ${d.reason}`, "v-" + d.verdict));
  }
}

async function load() {
  const resp = await api(`/api/scans/${ref}`);
  if (!resp.ok) {
    showError((await resp.json()).error);
    document.getElementById("decide").hidden = true;
    return false;
  }
  const doc = await resp.json();
  state.verdict = doc.verdict;
  state.decisions = doc.decisions;
  state.att = doc.att;
  state.tip = doc.tip;
  state.planted = doc.planted;
  if (doc.error) showError(doc.error);
  const first = !state.info;
  if (doc.picture) {
    state.info = Object.assign(state.info || {}, doc.picture);
    layout();
    if (first) fit();
  }
  // the decision the user's next one would correct: set when the page shows it, so
  // one taken meanwhile by someone else is pointed out before it is replaced
  const latest = state.decisions.length ? state.decisions[state.decisions.length - 1] : null;
  if (first) state.base = latest ? latest.id : null;
  renderFacts(doc);
  progress();
  drawOverlay();
  // a decision of a higher role stands: the form is not offered where it would be refused
  const rank = { officer: 0, supervisor: 1, analyst: 2 };
  const last = state.decisions[state.decisions.length - 1];
  const form = document.getElementById("decideform");
  form.hidden = !state.canDecide || (last && rank[last.role] > rank[state.role]);
  // a HOLD stands until a central analyst releases it: others may only order an examination
  const held = doc.att && doc.att.held;
  // release and assessment wait for the whole image; a mandate may be ordered at once
  const scanning = doc.scan.status === "scanning";
  document.getElementById("green").hidden = scanning || (held && state.role !== "analyst");
  document.getElementById("yellow").hidden = scanning || (held && state.role !== "analyst");
  document.getElementById("green").textContent = held ? "Green: release the HOLD" : "Green: release";
  return true;
}

function marksList() {
  const ul = document.getElementById("marks");
  ul.replaceChildren();
  state.marks.forEach((m, i) => {
    const li = text("li", `${m.category} [${m.box_px.join(", ")}] ${m.note}`);
    const rm = text("button", "remove");
    rm.addEventListener("click", () => { state.marks.splice(i, 1); marksList(); drawOverlay(); });
    li.append(" ", rm);
    ul.append(li);
  });
}

async function decide(verdict) {
  const err = document.getElementById("decideerror");
  err.hidden = true;
  const latest = state.decisions.length ? state.decisions[state.decisions.length - 1] : null;
  const last = latest ? latest.id : null;
  if (last !== state.base) {
    // someone decided while this page was open: show it before anything replaces it
    state.base = last;
    err.textContent = `${latest.by} (${latest.role}) decided meanwhile: ` +
      `${latest.verdict.toUpperCase()}, "${latest.reason}". Look at it; press again to decide.`;
    err.hidden = false;
    return;
  }
  const resp = await api(`/api/scans/${ref}/decisions`, {
    method: "POST",
    body: { verdict, reason: document.getElementById("reason").value, marks: state.marks,
            corrects: last },
  });
  if (resp.status !== 201 && resp.status !== 200) {
    err.textContent = (await resp.json()).error;
    err.hidden = false;
    return;
  }
  const done = await resp.json();
  const tipNote = document.getElementById("tipmessage");
  tipNote.hidden = !done.tip;
  if (done.tip) {
    tipNote.textContent = done.tip.message;
    tipNote.className = done.tip.hit ? "tip hit" : "tip missed";
    state.tipMessage = done.tip.message;
  }
  state.marks = [];
  marksList();
  await load();
  if (done.id !== undefined) state.base = done.id;
  if (done.tip) redraw();  // the projection is gone from this user's image
}

// mouse: drag with Shift (or on a form-less page) pans, plain drag marks a region
let dragFrom = null;
frame.addEventListener("mousedown", (e) => {
  const r = frame.getBoundingClientRect();
  dragFrom = { x: e.clientX - r.left, y: e.clientY - r.top, pan: e.shiftKey || !state.canDecide,
               tx: state.tx, ty: state.ty };
});
frame.addEventListener("mousemove", (e) => {
  if (!dragFrom) return;
  const r = frame.getBoundingClientRect();
  const x = e.clientX - r.left, y = e.clientY - r.top;
  if (dragFrom.pan) {
    state.tx = dragFrom.tx + x - dragFrom.x;
    state.ty = dragFrom.ty + y - dragFrom.y;
    transform();
  } else {
    const [c0, r0] = toImage(Math.min(x, dragFrom.x), Math.min(y, dragFrom.y));
    const [c1, r1] = toImage(Math.max(x, dragFrom.x), Math.max(y, dragFrom.y));
    drawOverlay([c0, r0, c1, r1]);
  }
});
window.addEventListener("mouseup", (e) => {
  if (!dragFrom) return;
  const r = frame.getBoundingClientRect();
  const x = e.clientX - r.left, y = e.clientY - r.top;
  if (!dragFrom.pan && state.info) {
    const w = Math.max(state.columns, 1), h = state.info.channels;
    const clampC = (c) => Math.max(0, Math.min(w, c)), clampR = (v) => Math.max(0, Math.min(h, v));
    const [a, b] = toImage(Math.min(x, dragFrom.x), Math.min(y, dragFrom.y));
    const [c, d] = toImage(Math.max(x, dragFrom.x), Math.max(y, dragFrom.y));
    const bx = [clampC(a), clampR(b), clampC(c), clampR(d)];
    if (bx[2] - bx[0] >= 2 && bx[3] - bx[1] >= 2) {
      state.marks.push({ box_px: bx, category: document.getElementById("category").value,
                         note: document.getElementById("marknote").value });
      marksList();
    }
  }
  dragFrom = null;
  drawOverlay();
});
frame.addEventListener("wheel", (e) => {
  e.preventDefault();
  const r = frame.getBoundingClientRect();
  const x = e.clientX - r.left, y = e.clientY - r.top;
  const f = e.deltaY < 0 ? 1.25 : 0.8;
  state.tx = x - (x - state.tx) * f;
  state.ty = y - (y - state.ty) * f;
  state.zoom *= f;
  transform();
}, { passive: false });

function zoomBy(f) {
  const x = frame.clientWidth / 2, y = frame.clientHeight / 2;
  state.tx = x - (x - state.tx) * f;
  state.ty = y - (y - state.ty) * f;
  state.zoom *= f;
  transform();
}

document.getElementById("zoomin").addEventListener("click", () => zoomBy(1.5));
document.getElementById("zoomout").addEventListener("click", () => zoomBy(1 / 1.5));
document.getElementById("fit").addEventListener("click", fit);
document.getElementById("showfindings").addEventListener("change", () => drawOverlay());
document.getElementById("showplanted").addEventListener("change", () => drawOverlay());
for (const id of ["view", "w0", "w1"]) {
  document.getElementById(id).addEventListener("change", () => {
    state.view = document.getElementById("view").value;
    state.w0 = Number(document.getElementById("w0").value);
    state.w1 = Number(document.getElementById("w1").value);
    if (!(state.w0 >= 0 && state.w1 > state.w0 && state.w1 <= 30)) {
      showError("the window must be 0 <= from < to <= 30");
      return;
    }
    showError("");
    redraw();
  });
}
for (const v of ["green", "yellow", "red"]) {
  document.getElementById(v).addEventListener("click", () => decide(v));
}
window.addEventListener("resize", transform);

const me = await login();
state.canDecide = me.can_decide;
state.role = me.role;
document.getElementById("decideform").hidden = !me.can_decide;
const cat = document.getElementById("category");
for (const c of me.categories) cat.append(text("option", c));
if (await load()) {
  fetchNew();
  follow({
    open: () => { load(); fetchNew(); },
    "scan.block": (d) => { if (d.ref === ref) fetchNew(); },
    "scan.finished": (d) => { if (d.ref === ref) { load(); fetchNew(); } },
    "atr.verdict": (d) => { if (d.ref === ref) load(); },
    "decision": (d) => { if (d.ref === ref) load(); },
  }, ref);
}
