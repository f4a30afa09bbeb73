// The ATT view: Scan A and Scan B side by side at their true aspect ratio, the difference
// map on Scan A's pixels with the changed regions boxed, the four factors, and for a
// central RIAC analyst the release of a HOLD with its reason.
import { api, follow, login, text } from "/static/common.js";

const ref = Number(location.pathname.split("/").pop());
const state = { ref, doc: null, drawn: {}, released: null };
window.niiAtt = state;

// draw a whole scan (or the map) into a canvas at the true aspect ratio, 16 cm per metre
async function draw(id, url, info) {
  const canvas = document.getElementById(id);
  const resp = await api(url);
  if (resp.status !== 200) {
    const err = document.getElementById("error");
    err.textContent = resp.status === 204 ? `${id}: no image lines yet`
      : (await resp.json()).error;
    err.hidden = false;
    return;
  }
  const bitmap = await createImageBitmap(await resp.blob());
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const widthMm = bitmap.width * info.line_mm, heightMm = bitmap.height * info.channel_mm;
  const scale = Math.min(1, (canvas.parentElement.clientWidth - 4) / (widthMm * 0.16));
  canvas.style.width = `${widthMm * 0.16 * scale}px`;
  canvas.style.height = `${heightMm * 0.16 * scale}px`;
  state.drawn[id] = { width: bitmap.width, height: bitmap.height };
}

function boxes(id, diffs) {
  const canvas = document.getElementById(id);
  const ctx = canvas.getContext("2d");
  ctx.lineWidth = Math.max(2, canvas.width / 400);
  for (const d of diffs) {
    const [c0, r0, c1, r1] = d.bbox_px;
    ctx.strokeStyle = d.kind === "addition" ? "#d32f2f" : "#1e56e6";
    ctx.strokeRect(c0, r0, c1 - c0, r1 - r0);
  }
}

async function load() {
  const resp = await api(`/api/scans/${ref}/att`);
  const err = document.getElementById("error");
  if (!resp.ok) {
    err.textContent = (await resp.json()).error;
    err.hidden = false;
    return;
  }
  const doc = await resp.json();
  state.doc = doc;
  const a = doc.att, s = doc.summary;
  document.getElementById("back").href = `/scan/${ref}`;
  document.getElementById("title").textContent = `ATT of container ${a.container || "?"}`;
  const status = document.getElementById("status");
  status.textContent = s.held ? "Contravening Unit: HOLD" :
    s.hold ? "HOLD released by the central RIAC" : a.status;
  status.className = s.held ? "v-red" : s.hold ? "v-yellow" : "v-green";
  document.getElementById("reason").textContent = a.reason || "";
  const seal = a.seal || {};
  document.getElementById("seal").textContent = seal.checked
    ? `seal at entry ${seal.a}, at exit ${seal.b || "none"}: ${seal.ok ? "intact" : "CHANGED"}`
    : "no seal recorded at the entry: the seal was not checked";
  const body = document.querySelector("#factors tbody");
  body.replaceChildren();
  for (const [k, f] of Object.entries(a.factors || {})) {
    const tr = document.createElement("tr");
    tr.className = f.ok ? "" : "bad";
    tr.append(text("td", k), text("td", String(f.figure)), text("td", String(f.limit)),
              text("td", f.what));
    body.append(tr);
  }
  const ul = document.getElementById("differences");
  ul.replaceChildren();
  for (const d of a.differences || []) {
    const mm = d.bbox_mm;
    ul.append(text("li", `${d.kind}: ${(mm[0] / 1000).toFixed(2)}-${(mm[2] / 1000).toFixed(2)} m ` +
      `from the front wall, ${d.area_m2} m², attenuation change ${d.attenuation_change}`));
  }
  const reg = a.registration || {};
  document.getElementById("registration").textContent = Object.entries(reg)
    .map(([k, v]) => `${k} ${v}`).join(", ");
  document.getElementById("notes").replaceChildren(...(a.notes || []).map((n) => text("div", n)));
  const sa = doc.scans.a, sb = doc.scans.b;
  if (sa) document.getElementById("capa").textContent =
    `Scan A (entry): ${sa.scanner} ${sa.scan_id}, ref ${sa.ref}`;
  document.getElementById("capb").textContent =
    `Scan B (exit): ${sb.scanner} ${sb.scan_id}, ref ${sb.ref}`;
  document.getElementById("release").hidden = !(s.held && state.role === "analyst");
  const jobs = [draw("b", `/api/scans/${ref}/strip?start=0`, sb.picture)];
  if (sa && sa.picture) {
    jobs.push(draw("a", `/api/scans/${sa.ref}/strip?start=0&att=${ref}`, sa.picture)
      .then(() => boxes("a", a.differences || [])));
    jobs.push(draw("diff", `/api/scans/${ref}/att/difference`, sa.picture)
      .then(() => boxes("diff", a.differences || [])));
  }
  await Promise.all(jobs);
  state.ready = true;
}

document.getElementById("releasebutton").addEventListener("click", async () => {
  const err = document.getElementById("releaseerror");
  err.hidden = true;
  const info = await (await api(`/api/scans/${ref}`)).json();
  const last = info.decisions.length ? info.decisions[info.decisions.length - 1].id : null;
  const resp = await api(`/api/scans/${ref}/decisions`, {
    method: "POST",
    body: { verdict: "green", reason: document.getElementById("releasereason").value,
            marks: [], corrects: last },
  });
  if (resp.status !== 201) {
    err.textContent = (await resp.json()).error;
    err.hidden = false;
    return;
  }
  state.released = await resp.json();
  await load();
});

const me = await login();
state.role = me.role;
await load();
follow({ decision: (d) => { if (d.ref === ref) load(); } }, ref);
