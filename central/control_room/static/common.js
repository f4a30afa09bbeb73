// What every page shares: who is logged in, the CSRF token, the live feed, errors.

export let me = null;

export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (options.method && options.method !== "GET") {
    headers["X-CSRF-Token"] = me ? me.csrf : "";
    if (options.body && typeof options.body !== "string") {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(options.body);
    }
  }
  const resp = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  if (resp.status === 401) {
    location.href = "/login";
    throw new Error("logged out");
  }
  return resp;
}

// The pages every account may open; the statistics only for the RIAC's roles.
const PAGES = [
  ["/", "Queue", null],
  ["/board", "Board", null],
  ["/stats", "Statistics", ["supervisor", "analyst", "auditor", "admin"]],
];

// Links to the other pages, in the header's <nav id="nav"> (made if the page has none).
export function nav(role) {
  let el = document.getElementById("nav");
  if (!el) {
    const header = document.querySelector("header");
    if (!header) return;
    el = document.createElement("nav");
    el.id = "nav";
    header.firstElementChild.after(el);
  }
  el.replaceChildren();
  for (const [href, label, roles] of PAGES) {
    if (roles && !roles.includes(role)) continue;
    if (el.childNodes.length) el.append(" · ");
    const a = text("a", label);
    a.href = href;
    if (location.pathname === href) a.setAttribute("aria-current", "page");
    el.append(a);
  }
}

export async function login() {
  const resp = await api("/api/me");
  me = await resp.json();
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  nav(me.role);
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/logout", { method: "POST" });
    location.href = "/login";
  });
  return me;
}

// Follow the live feed: handlers by event name; the status line says when it is lost.
export function follow(handlers, viewing) {
  const status = document.getElementById("feed");
  const url = viewing === undefined ? "/api/events" : `/api/events?viewing=${viewing}`;
  const source = new EventSource(url);
  source.onopen = () => { status.textContent = "feed: live"; if (handlers.open) handlers.open(); };
  source.onerror = () => { status.textContent = "feed: control room unreachable, reconnecting"; };
  // every 2 s without events the server says how long the aggregators have been silent
  source.addEventListener("feed", (e) => {
    const s = JSON.parse(e.data).silent_s;
    status.textContent = s === null ? "feed: no aggregator heard yet"
      : s > 5 ? `feed: central silent for ${Math.round(s)} s` : "feed: live";
    status.className = "feed" + (s === null || s > 5 ? " error" : "");
  });
  // the session ended (logged out elsewhere, disabled, expired): log in again
  source.addEventListener("session", () => {
    source.close();
    location.href = "/login";
  });
  source.addEventListener("central.status", () => {
    status.textContent = "feed: live";
    status.className = "feed";
  });
  for (const [name, fn] of Object.entries(handlers)) {
    if (name !== "open") source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
  }
  return source;
}

export function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

export function ago(ns) {
  if (!ns) return "";
  return new Date(ns / 1e6).toLocaleTimeString();
}

// A canvas ready for a plot at the screen's pixel density, cleared to the page's dark:
// [its 2d context in CSS pixels, width, height] (the sizes given when it has none yet).
export function plotArea(canvas, width, height) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || width;
  const h = canvas.clientHeight || height;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.fillStyle = "#0c1014";
  g.fillRect(0, 0, w, h);
  return [g, w, h];
}
