// The live queue: the newest scans of the sites this user may see, as they arrive.
import { api, follow, login, text } from "/static/common.js";

const body = document.querySelector("#queue tbody");
let timer = null;

function verdictCell(v) {
  if (!v) return text("td", "waiting", "v-none");
  if (v.error) return text("td", "none: " + v.error, "v-none");
  return text("td", `${v.verdict} (${v.findings})`, "v-" + v.verdict);
}

async function load() {
  const resp = await api("/api/queue?limit=100");
  const { scans } = await resp.json();
  body.replaceChildren();
  for (const s of scans) {
    const tr = document.createElement("tr");
    tr.className = "scan";
    tr.dataset.ref = s.ref;
    const d = s.decision;
    tr.append(
      text("td", s.ref), text("td", s.site || "-"), text("td", s.scanner), text("td", s.scan_id),
      text("td", s.container || "?"), text("td", s.gd_number || "-"), text("td", s.status),
      text("td", `${s.lines_received}/${s.lines_planned}`), verdictCell(s.atr),
      d ? text("td", `${d.verdict} by ${d.by}`, "v-" + d.verdict) : text("td", "-"),
      text("td", `${Math.round(s.waiting_s)} s`), text("td", (s.viewers || []).join(", ")),
    );
    tr.addEventListener("click", () => { location.href = `/scan/${s.ref}`; });
    body.append(tr);
  }
}

function soon() {
  if (timer) return;
  timer = setTimeout(() => { timer = null; load(); }, 300);
}

await login();
await load();
follow({
  open: soon,
  "scan.started": soon, "scan.finished": soon, "atr.verdict": soon, "decision": soon,
});
setInterval(load, 10000);  // waiting times and who has a scan open
