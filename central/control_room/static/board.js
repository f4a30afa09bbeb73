// The scanner board: each scanner's state, safety, link, spool, open alarms and uptime
// against the SLA, with a plot of its daily uptime. Reloaded when the live feed says
// something changed (at most every 2 s) and every 10 s (silences grow).
import { api, follow, login, plotArea, text } from "/static/common.js";

const cards = document.getElementById("cards");
const summary = document.getElementById("summary");
const error = document.getElementById("error");
const MIN_GAP_MS = 2000;
const STATUS_GAP_MS = 5000;  // central's status comes every 2 s: a reload every 5 s is enough
const EVERY_MS = 10000;
let last = 0;
let timer = null;

// what tests and the curious read: the last answer and how many were drawn
window.niiBoard = { data: null, loads: 0 };

function pct(v, digits = 2) {
  return v === null || v === undefined ? "—" : `${(v * 100).toFixed(digits)} %`;
}

function seconds(s) {
  if (s === null || s === undefined) return "never";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.floor(s / 86400)} days`;
}

function row(dl, label, ...content) {
  const dd = document.createElement("dd");
  dd.append(...content);
  dl.append(text("dt", label), dd);
}

function safety(s) {
  if (s.safe === true) return text("span", "safe: interlocks closed", "good");
  if (s.safe === false) {
    const why = s.causes.length ? s.causes.join("; ") : s.message;
    return text("span", `UNSAFE: ${why}`, "bad");
  }
  return text("span", "no safety report from the edge", "muted");
}

function link(l) {
  if (l.state === "never") return text("span", "never heard of", "bad");
  const how = `${seconds(l.silent_s)} ago (${l.source})`;
  if (l.state === "silent") return text("span", `SILENT: last heard ${how}`, "bad");
  return text("span", `live: heard ${how}`, "good");
}

function spool(s) {
  if (!s) return text("span", "not reported by central", "muted");
  const parts = [];
  if (s.depth !== null) parts.push(`${s.depth} block(s) waiting`);
  if (s.bytes !== null) parts.push(`${(s.bytes / 1e6).toFixed(1)} MB`);
  if (s.control_up === false) parts.push("control link DOWN");
  if (s.link_fault) parts.push(`data link: ${s.link_fault}`);
  const bad = s.control_up === false || !!s.link_fault;
  return text("span", parts.join(", ") || "—", bad ? "bad" : "");
}

function alarms(a) {
  if (!a.open) return text("span", "none", "good");
  const span = text("span", `${a.open}: `, "bad");
  span.append(a.latest.map((x) => `${x.kind} (${new Date(x.ts_ns / 1e6).toLocaleTimeString()})`).join(", "));
  span.title = a.latest.map((x) => x.message).join("\n");
  return span;
}

function figure(f, target) {
  if (!f) return text("span", "—", "muted");
  const cls = f.met === true ? "good" : f.met === false ? "bad" : "muted";
  return text("span", `${f.period}: ${pct(f.availability)} (${f.status}; SLA ${pct(target, 0)})`, cls);
}

// Daily uptime as bars, the SLA's target as a dashed line; a day without data stays empty.
export function plot(canvas, daily, target) {
  const [g, w, h] = plotArea(canvas, 320, 110);
  const left = 34, right = 6, top = 8, bottom = 16;
  const values = daily.map((d) => d.availability).filter((v) => v !== null);
  const lowest = values.length ? Math.min(...values, target) : target;
  const lo = Math.max(0, Math.min(0.9, Math.floor(lowest * 10) / 10));
  const y = (v) => top + (1 - (v - lo) / (1 - lo)) * (h - top - bottom);
  const slot = (w - left - right) / Math.max(1, daily.length);
  // axes and labels
  g.strokeStyle = "#556";
  g.lineWidth = 1;
  g.beginPath();
  g.moveTo(left, top);
  g.lineTo(left, h - bottom);
  g.lineTo(w - right, h - bottom);
  g.stroke();
  g.fillStyle = "#aab";
  g.font = "10px system-ui, sans-serif";
  g.textAlign = "right";
  g.fillText("100 %", left - 3, y(1) + 4);
  g.fillText(`${Math.round(lo * 100)} %`, left - 3, h - bottom);
  g.textAlign = "left";
  if (daily.length) {
    g.fillText(daily[0].day.slice(5), left, h - 3);
    g.textAlign = "right";
    g.fillText(daily[daily.length - 1].day.slice(5), w - right, h - 3);
  }
  // one bar per day
  daily.forEach((d, i) => {
    const x = left + i * slot + 1;
    if (d.availability === null) {
      g.strokeStyle = "#3a434c";
      g.strokeRect(x, y(1), Math.max(1, slot - 2), h - bottom - y(1));
      return;
    }
    const v = Math.max(lo, d.availability);
    g.fillStyle = d.availability >= target ? "#2e7d32" : "#c62828";
    g.fillRect(x, y(v), Math.max(1, slot - 2), h - bottom - y(v));
  });
  // the SLA's target
  g.strokeStyle = "#ffb300";
  g.setLineDash([4, 3]);
  g.beginPath();
  g.moveTo(left, y(target));
  g.lineTo(w - right, y(target));
  g.stroke();
  g.setLineDash([]);
  g.fillStyle = "#ffb300";
  g.textAlign = "left";
  g.fillText(`${Math.round(target * 100)} % SLA`, left + 3, y(target) - 3);
}

function card(s, target) {
  const el = document.createElement("article");
  el.className = `card st-${s.state}`;
  el.dataset.scanner = s.scanner;
  const h = text("h3", s.scanner);
  h.append(text("span", s.site ? `${s.site} (${s.region})` : "no site", "site"));
  const state = text("p", s.state, "state");
  if (s.cause) state.append(" ", text("span", s.cause, "cause"));
  const dl = document.createElement("dl");
  row(dl, "Safety", safety(s.safety));
  row(dl, "Link", link(s.link));
  row(dl, "Spool", spool(s.spool));
  if (s.scan) {
    const sc = s.scan;
    row(dl, "Last scan", `${sc.scan_id} ${sc.status}, ${sc.lines_received}/${sc.lines_planned} lines`);
  }
  row(dl, "Open alarms", alarms(s.alarms));
  const up = s.uptime;
  if (up && up.error) {
    row(dl, "Uptime", text("span", up.error, "muted"));
  } else {
    row(dl, "This month", figure(up && up.month, target));
    row(dl, "Fiscal year", figure(up && up.fiscal, target));
  }
  el.append(h, state, dl);
  if (up && up.daily) {
    const canvas = document.createElement("canvas");
    canvas.className = "uptime";
    canvas.setAttribute("aria-label", `daily uptime of ${s.scanner}, last ${up.daily.length} days`);
    el.append(canvas);
    requestAnimationFrame(() => plot(canvas, up.daily, target));
  }
  return el;
}

async function load() {
  last = Date.now();
  const resp = await api("/api/board");
  const data = await resp.json();
  if (!resp.ok) {
    error.textContent = data.error || `the board could not be read (${resp.status})`;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  const counts = {};
  for (const s of data.scanners) counts[s.state] = (counts[s.state] || 0) + 1;
  const central = Object.entries(data.central).map(([n, s]) => `${n} ${seconds(s)} ago`).join(", ");
  summary.textContent = `${data.scanners.length} scanner(s): `
    + Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ")
    + `. Uptime against the ${Math.round(data.sla.target * 100)} % SLA, days in ${data.sla.tz}.`
    + (central ? ` Central status: ${central}.` : "");
  cards.replaceChildren(...data.scanners.map((s) => card(s, data.sla.target)));
  window.niiBoard.data = data;
  window.niiBoard.loads += 1;
}

// after an event: at once if the last load is 2 s old, else when it is
function soon() {
  if (timer) return;
  const wait = Math.max(0, last + MIN_GAP_MS - Date.now());
  timer = setTimeout(() => { timer = null; load(); }, wait);
}

await login();
await load();
follow({
  open: soon, alarm: soon, "scan.started": soon, "scan.finished": soon,
  "central.status": () => { if (Date.now() - last >= STATUS_GAP_MS) soon(); },
});
setInterval(() => { if (Date.now() - last >= EVERY_MS - 50) load(); }, EVERY_MS);
