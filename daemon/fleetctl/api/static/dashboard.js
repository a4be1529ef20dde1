// The dashboard: four views over the /v1 API, refreshed every minute. A bearer token, when the
// API asks for one, comes from the page's #token=... fragment (kept in sessionStorage), and is
// taken out of the address bar at once so it stays out of history, screenshots and bookmarks.
"use strict";

const hashToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (hashToken) {
  sessionStorage.setItem("fleetToken", hashToken);
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem("fleetToken");

// ?start=...&end=... (RFC 3339) on the page's URL picks the window; default the last 24 h.
const windowQuery = location.search.slice(1);
// The vehicles the chart offers: the worst by billed efficiency.
const WORST = 50;

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  if (windowQuery && path.startsWith("/v1/analytics/")) {
    path += (path.includes("?") ? "&" : "?") + windowQuery;
  }
  const r = await fetch(path, { headers });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function num(x, digits) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function showStatus(fleet) {
  const ul = document.getElementById("status-counts");
  ul.replaceChildren();
  for (const [status, n] of Object.entries(fleet.statusCounts)) {
    const li = el("li", status.replace("_", " ") + ": " + n, status);
    li.dataset.status = status;
    li.dataset.count = n;
    ul.append(li);
  }
  document.getElementById("window").textContent =
    fleet.window.start + " → " + fleet.window.end + " · " + fleet.totals.vehicles + " vehicles";
}

// A 95 % interval "low–high", rounded outwards so the shown one never shrinks.
function interval(ci, key, digits) {
  if (!ci) return "–";
  const scale = 10 ** digits;
  const [lo, hi] = ci[key];
  return (Math.floor(lo * scale) / scale).toFixed(digits) + "–" +
    (Math.ceil(hi * scale) / scale).toFixed(digits);
}

function showChargers(report) {
  const body = document.querySelector("#chargers tbody");
  body.replaceChildren();
  for (const c of report.chargers.slice(0, 10)) {
    const tr = el("tr", null, c.status);
    tr.dataset.meter = c.meterId;
    // A status without a sure interval says why (too few charging hours, collinear, ...).
    const status = c.reason ? c.status + " (" + c.reason.replaceAll("_", " ") + ")" : c.status;
    for (const v of [c.meterId, status, num(c.conversionEfficiency, 3),
                     interval(c.ci95, "conversionEfficiency", 3), num(c.standbyW, 1),
                     interval(c.ci95, "standbyW", 1), c.fit.chargingHours,
                     num(c.billed.efficiency, 3)]) tr.append(el("td", v));
    if (c.ci95) tr.dataset.ci = c.ci95.conversionEfficiency.join(",");
    body.append(tr);
  }
}

let chart = null;
async function showVehicle(id) {
  const perf = await api("/v1/analytics/performance/" + encodeURIComponent(id));
  const hours = perf.hourly;
  const data = [
    hours.map((h) => Date.parse(h.hour) / 1000),
    hours.map((h) => h.acKwh),
    hours.map((h) => h.dcKwh),
    hours.map((h) => (h.efficiency === null ? null : h.efficiency * 100)),
  ];
  const box = document.getElementById("chart");
  if (chart) chart.destroy();
  box.replaceChildren();
  chart = new uPlot({
    width: Math.max(320, box.clientWidth - 10), height: 260,
    series: [{}, { label: "AC kWh", stroke: "#e63946" }, { label: "DC kWh", stroke: "#457b9d" },
             { label: "efficiency %", stroke: "#2a9d8f", scale: "%" }],
    axes: [{}, { label: "kWh" }, { side: 1, scale: "%", label: "%", grid: { show: false } }],
  }, data, box);
  box.dataset.vehicle = id;
  box.dataset.points = String(hours.length);
}

function showAlerts(list) {
  const ul = document.getElementById("alerts");
  ul.replaceChildren();
  const open = list.alerts.filter((a) => a.state === "open");
  if (!open.length) ul.append(el("li", "none", "none"));
  for (const a of open) {
    const li = el("li", a.kind + " · " + a.subject + " since " + a.openedAt);
    li.dataset.kind = a.kind;
    ul.append(li);
  }
}

async function refresh() {
  try {
    const [fleet, chargers, alerts] = await Promise.all([
      // The summary: counts and the worst vehicles, not every row (6 MB for 10,000 vehicles).
      api("/v1/analytics/fleet/summary?worst=" + WORST), api("/v1/analytics/chargers"),
      api("/v1/alerts"),
    ]);
    showStatus(fleet);
    showChargers(chargers);
    showAlerts(alerts);
    const select = document.getElementById("vehicle");
    if (!select.options.length) {
      for (const v of fleet.worst) select.append(new Option(v.vehicleId, v.vehicleId));
      select.onchange = () => showVehicle(select.value);
    }
    if (select.value) await showVehicle(select.value);
    document.body.dataset.loaded = "true";
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
  }
}

refresh();
setInterval(refresh, 60000);
