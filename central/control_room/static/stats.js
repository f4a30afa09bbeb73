// Statistics for the central RIAC: verdicts per site and period, HIT rate, ATR against the
// officers, TIP detection per analyst, decision times. Read-only; the range is in the URL.
import { api, login, plotArea, text } from "/static/common.js";

const form = document.getElementById("filters");
const error = document.getElementById("error");
const COLOURS = { green: "#2e7d32", yellow: "#b38f00", red: "#c62828", undecided: "#556" };

window.niiStats = { data: null };

function pct(v) {
  return v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)} %`;
}

function secs(s) {
  if (s === null || s === undefined) return "—";
  if (s < 120) return `${s.toFixed(0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function num(v, cls = "num") {
  return text("td", v, cls);
}

function tr(cells, cls) {
  const r = document.createElement("tr");
  if (cls) r.className = cls;
  r.append(...cells);
  return r;
}

function fill(id, rows) {
  document.querySelector(`#${id} tbody`).replaceChildren(...rows);
}

// the day before an exclusive end at midnight: the last day the range includes
function lastDay(iso) {
  const day = iso.slice(0, 10);
  if (iso.slice(11, 19) !== "00:00:00") return day;
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - 1);
  return d.toISOString().slice(0, 10);
}

function trend(canvas, verdicts) {
  const [g, w, h] = plotArea(canvas, 960, 180);
  const per = new Map();  // period → final decisions over the sites shown
  for (const c of verdicts) {
    const p = per.get(c.period) || { green: 0, yellow: 0, red: 0, undecided: 0 };
    for (const k of Object.keys(p)) p[k] += c.final[k];
    per.set(c.period, p);
  }
  const periods = [...per.keys()].sort();
  const top = Math.max(1, ...periods.map((p) => Object.values(per.get(p)).reduce((a, b) => a + b, 0)));
  const left = 30, bottom = 16;
  const slot = Math.min(48, (w - left - 6) / Math.max(1, periods.length));
  g.fillStyle = "#aab";
  g.font = "10px system-ui, sans-serif";
  g.textAlign = "right";
  g.fillText(String(top), left - 4, 12);
  g.fillText("0", left - 4, h - bottom);
  g.strokeStyle = "#556";
  g.beginPath();
  g.moveTo(left, 4);
  g.lineTo(left, h - bottom);
  g.lineTo(w - 6, h - bottom);
  g.stroke();
  periods.forEach((p, i) => {
    let y = h - bottom;
    for (const k of ["red", "yellow", "green", "undecided"]) {
      const hh = (per.get(p)[k] / top) * (h - bottom - 8);
      g.fillStyle = COLOURS[k];
      g.fillRect(left + i * slot + 1, y - hh, Math.max(1, slot - 2), hh);
      y -= hh;
    }
  });
  g.fillStyle = "#aab";
  g.textAlign = "left";
  if (periods.length) g.fillText(periods[0], left, h - 3);
  g.textAlign = "right";
  if (periods.length > 1) g.fillText(periods[periods.length - 1], w - 6, h - 3);
}

function render(d) {
  document.getElementById("range").textContent = `${d.site || "every site of yours"}, `
    + `${d.since.slice(0, 10)} to ${lastDay(d.until)} (days in ${d.tz}), per ${d.period}.`;
  const site = document.getElementById("site");
  if (site.options.length === 1) {
    for (const s of d.sites) site.append(new Option(s, s));
  }
  site.value = d.site || "";
  document.getElementById("since").value = d.since.slice(0, 10);
  document.getElementById("until").value = lastDay(d.until);
  document.getElementById("period").value = d.period;

  trend(document.getElementById("trend"), d.verdicts);

  const hits = d.hits.sites.map((s) => tr([text("td", s.site), num(s.scans), num(s.decided),
    num(s.mandates), num(pct(s.hit_rate)), num(pct(s.mandates_per_scan))]));
  const t = d.hits.total;
  hits.push(tr([text("td", "all"), num(t.scans), num(t.decided), num(t.mandates),
    num(pct(t.hit_rate)), num(pct(t.mandates_per_scan))], "total"));
  fill("hits", hits);
  document.getElementById("hitnote").textContent = d.hits.note;

  const ag = d.agreement;
  const head = tr([text("th", "ATR \\ final"), ...ag.final.map((f) => text("th", f, "num"))]);
  document.querySelector("#agreement thead").replaceChildren(head);
  fill("agreement", ag.matrix.map((row, i) => tr([text("th", ag.atr[i]),
    ...row.map((n, j) => num(n, ag.atr[i] === ag.final[j] ? "num diag" : "num"))])));
  document.getElementById("agreed").textContent = ag.compared
    ? `The officers' final decision agrees with the ATR on ${ag.agreed} of ${ag.compared} scans `
      + `that have both (${pct(ag.rate)}; Cohen's kappa ${ag.kappa === null ? "—" : ag.kappa.toFixed(2)}).`
    : "No scan in this range has both an ATR verdict and a decision.";

  fill("times", d.decision_times.map((s) => tr([text("td", s.site), num(s.decided),
    num(s.undecided), num(secs(s.median_s)), num(secs(s.p90_s)), num(secs(s.max_s))])));

  const tip = d.tip.analysts.map((a) => tr([text("td", a.name), text("td", a.role),
    num(a.projected), num(a.hits), num(a.missed), num(pct(a.rate))]));
  const tt = d.tip.total;
  tip.push(tr([text("td", "all"), text("td", ""), num(tt.projected), num(tt.hits),
    num(tt.projected - tt.hits), num(pct(tt.rate))], "total"));
  fill("tip", tip);

  fill("verdicts", d.verdicts.map((c) => tr([text("td", c.site), text("td", c.period),
    num(c.scans), num(c.atr.green), num(c.atr.yellow), num(c.atr.red), num(c.atr.none),
    num(c.final.green, "num v-green"), num(c.final.yellow, "num v-yellow"),
    num(c.final.red, "num v-red"), num(c.final.undecided)])));
}

// The figures: the range line and every section (hidden under an error, so that no
// empty or stale table is drawn beside it).
const figures = [document.getElementById("range"), ...document.querySelectorAll("main section")];

function refused(message, status) {
  error.textContent = message;
  error.hidden = false;
  form.hidden = status === 403;  // no range can help: only the error is shown
  for (const el of figures) el.hidden = true;
  window.niiStats.data = null;
}

async function load() {
  const params = new URLSearchParams(location.search);
  const resp = await api(`/api/stats?${params}`);
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;  // not JSON (a proxy's error page): the status says enough
  }
  if (!resp.ok || data === null) {
    refused((data && data.error) || `the statistics could not be read (${resp.status})`,
      resp.status);
    return;
  }
  error.hidden = true;
  form.hidden = false;
  for (const el of figures) el.hidden = false;
  render(data);
  window.niiStats.data = data;
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const params = new URLSearchParams();
  for (const k of ["since", "until", "site", "period"]) {
    const v = document.getElementById(k).value;
    if (v) params.set(k, v);
  }
  history.replaceState(null, "", `/stats?${params}`);
  load();
});

await login();
await load();
