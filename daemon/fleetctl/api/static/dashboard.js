// The dashboard: an operations screen over the /v1 API. A bearer token, when the API asks for
// one, comes from the page's #token=... fragment (kept in sessionStorage), and is taken out of
// the address bar at once so it stays out of history, screenshots and bookmarks. Everything
// else the page shows is in its query (?range=7d or ?start=&end=, ?vehicle=), so a link or a
// reload shows the same screen.
"use strict";

const hashToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (hashToken) {
  sessionStorage.setItem("fleetToken", hashToken);
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem("fleetToken");

const REFRESH_MS = 60000; // auto-refresh, paused while the tab is hidden
const STALE_S = 300; // data older than this is flagged
const RANGES = { "24h": 24, "7d": 168, "30d": 720 }; // hours
const ID_RE = /^[A-Za-z0-9_.:-]{0,64}$/; // the API's id rule: anything else cannot match
const SUGGESTIONS = 10;

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers });
  if (!r.ok) {
    let text = await r.text();
    try { text = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
    throw new Error(path.split("?")[0] + ": " + r.status + " " + text);
  }
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

function kwh(x) {
  if (x === null || x === undefined) return "–";
  return x >= 10000 ? (x / 1000).toFixed(1) + " MWh" : x.toFixed(1) + " kWh";
}

function pad(n) { return String(n).padStart(2, "0"); }

// "2026-12-04 19:02" in UTC: one clock for every site of a fleet.
function utc(stamp, seconds) {
  const d = new Date(stamp);
  const s = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
    " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  return seconds ? s + ":" + pad(d.getUTCSeconds()) : s;
}

function age(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.floor(s / 3600) + " h " + pad(Math.round((s % 3600) / 60)) + " min";
  return Math.round(s / 86400) + " d";
}

function span(hours) {
  if (hours % 24 === 0 && hours >= 48) return hours / 24 + " d";
  return (Math.round(hours * 10) / 10) + " h";
}

// ---- the page's state, read from and written to its URL -----------------------------------

function readState() {
  const q = new URLSearchParams(location.search);
  const start = q.get("start") || q.get("startDate");
  const end = q.get("end") || q.get("endDate");
  let range = q.get("range");
  if (start || end) range = "custom";
  if (!(range in RANGES) && range !== "custom") range = "24h";
  return { range, start, end, vehicle: q.get("vehicle") };
}

let state = readState();

function writeState() {
  const q = new URLSearchParams();
  if (state.range === "custom") {
    if (state.start) q.set("start", state.start);
    if (state.end) q.set("end", state.end);
  } else if (state.range !== "24h") {
    q.set("range", state.range);
  }
  if (state.vehicle) q.set("vehicle", state.vehicle);
  const search = q.toString();
  history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
}

// The window's query for the reports, and its label for the headings.
function windowQuery() {
  if (state.range !== "custom") return "hours=" + RANGES[state.range];
  const q = new URLSearchParams();
  if (state.start) q.set("start", state.start);
  if (state.end) q.set("end", state.end);
  return q.toString();
}

function windowLabel(win) {
  if (state.range !== "custom") return "last " + span(RANGES[state.range]);
  const hours = (Date.parse(win.end) - Date.parse(win.start)) / 3600000;
  return utc(win.start) + " → " + utc(win.end) + " UTC (" + span(hours) + ")";
}

function showRange() {
  for (const b of document.querySelectorAll("#range button")) {
    b.setAttribute("aria-pressed", String(b.dataset.range === state.range));
  }
  const form = document.getElementById("custom");
  form.hidden = state.range !== "custom";
  document.body.dataset.range = state.range;
}

function localInput(stamp) { // an RFC 3339 instant as a datetime-local value in UTC
  return stamp ? new Date(stamp).toISOString().slice(0, 16) : "";
}

function setupRange() {
  for (const b of document.querySelectorAll("#range button")) {
    b.addEventListener("click", () => {
      if (b.dataset.range === "custom") {
        const now = Date.now();
        document.getElementById("custom-start").value =
          localInput(state.start || new Date(now - 48 * 3600000).toISOString());
        document.getElementById("custom-end").value =
          localInput(state.end || new Date(now).toISOString());
        state.range = "custom";
        showRange();
        document.getElementById("custom-start").focus();
        return;
      }
      state.range = b.dataset.range;
      state.start = state.end = null;
      writeState();
      showRange();
      refresh();
    });
  }
  document.getElementById("custom").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const s = document.getElementById("custom-start").value;
    const e = document.getElementById("custom-end").value;
    if (!s || !e) return;
    state.start = s + ":00Z";
    state.end = e + ":00Z";
    writeState();
    refresh();
  });
  if (state.range === "custom") {
    document.getElementById("custom-start").value = localInput(state.start);
    document.getElementById("custom-end").value = localInput(state.end);
  }
  showRange();
}

// ---- the views ------------------------------------------------------------------------------

const STATUS_ORDER = ["critical", "meter_error", "degraded", "optimal", "insufficient_data"];

function showFleet(fleet) {
  const label = windowLabel(fleet.window);
  document.getElementById("window").textContent =
    utc(fleet.window.start) + " → " + utc(fleet.window.end) + " UTC · " +
    fleet.totals.vehicles + " vehicles · " + fleet.totals.meters + " meters";
  document.getElementById("status-h").textContent = "Vehicles by status · " + label;
  document.getElementById("daily-h").textContent = "Fleet efficiency per day · " + label;
  const t = fleet.totals;
  const totals = document.getElementById("totals");
  totals.replaceChildren();
  for (const [name, value] of [
    ["vehicles", t.vehicles], ["efficiency", t.efficiencyPercent === null ? "–" : t.efficiencyPercent.toFixed(1) + " %"],
    ["AC billed", kwh(t.totalAcKwh)], ["DC stored", kwh(t.totalDcKwh)], ["loss", kwh(t.lossKwh)],
  ]) {
    const div = el("div");
    div.append(el("dt", name), el("dd", value));
    totals.append(div);
  }
  const ul = document.getElementById("status-counts");
  const bar = document.getElementById("status-bar");
  ul.replaceChildren();
  bar.replaceChildren();
  for (const status of STATUS_ORDER) {
    const n = fleet.statusCounts[status] || 0;
    const li = el("li", null, status);
    li.append(el("span", n, "count"), el("span", status.replace("_", " "), "name"));
    li.dataset.status = status;
    li.dataset.count = n;
    ul.append(li);
    if (n > 0) {
      const part = el("span", null, status);
      part.style.flexGrow = String(n); // CSSOM, allowed by the page's CSP
      part.title = status.replace("_", " ") + ": " + n;
      bar.append(part);
    }
  }
}

function showWorst(rows) {
  const ol = document.getElementById("worst");
  ol.replaceChildren();
  for (const v of rows.slice(0, 5)) {
    const li = el("li");
    li.dataset.vehicle = v.vehicleId;
    const pick = el("button", v.vehicleId, "link");
    pick.type = "button";
    pick.addEventListener("click", () => choose(v.vehicleId));
    li.append(pick, el("span", v.status.replace("_", " "), "badge " + v.status),
              el("span", v.efficiencyPercent === null ? "–" : v.efficiencyPercent.toFixed(1) + " %", "eff"),
              el("span", "loss " + kwh(v.lossKwh), "loss"));
    ol.append(li);
  }
  if (!rows.length) ol.append(el("li", "no vehicles in this window", "none"));
}

let asOf = null; // {newest: ms, age: s, at: performance.now() when fetched}

function showAsOf() {
  const out = document.getElementById("as-of");
  if (!asOf || asOf.newest === null) {
    out.textContent = "no data yet";
    out.className = "stale";
    return;
  }
  const seconds = asOf.age + (performance.now() - asOf.at) / 1000;
  out.textContent = "data as of " + utc(asOf.newest, true) + " UTC (" + age(seconds) + " ago)";
  out.className = seconds > STALE_S ? "stale" : "fresh";
  out.dataset.ageSeconds = String(Math.round(seconds));
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

const charts = {};

function chartWidth(box) { return Math.max(260, box.clientWidth); }

// Every clock on the page is UTC, the charts' too, in 24-hour time.
const UTC_OPTS = {
  tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
  fmtDate: (tpl) => uPlot.fmtDate(tpl.replace("{h}:{mm}{aa}", "{HH}:{mm}").replace("{h}{aa}", "{HH}:00")),
  legend: { live: false },
};

function draw(name, box, opts, data) {
  if (charts[name]) charts[name].destroy();
  box.replaceChildren();
  charts[name] = new uPlot({ width: chartWidth(box), height: 240, ...UTC_OPTS, ...opts }, data, box);
}

// One tick per day, thinned to what the width holds.
function daySplits(u) {
  const xs = u.data[0];
  const step = Math.max(1, Math.ceil(xs.length / Math.max(1, Math.floor(u.bbox.width / devicePixelRatio / 48))));
  return xs.filter((_, i) => (xs.length - 1 - i) % step === 0);
}

function showDaily(daily) {
  const box = document.getElementById("daily");
  const days = daily.days;
  const data = [
    days.map((d) => Date.parse(d.day + "T12:00:00Z") / 1000), // the day's middle
    days.map((d) => d.acKwh / 1000),
    days.map((d) => d.dcKwh / 1000),
    days.map((d) => d.efficiencyPercent),
  ];
  const bars = uPlot.paths.bars({ size: [0.6, 36], align: 0 });
  draw("daily", box, {
    series: [
      { label: "day (UTC)", value: (u, v) => v === null ? "–" : utc(v * 1000).slice(0, 10) },
      { label: "AC MWh", stroke: "#c0392b", fill: "rgba(192,57,43,.25)", paths: bars, points: { show: false } },
      { label: "DC MWh", stroke: "#2e6f9e", fill: "rgba(46,111,158,.25)", paths: bars, points: { show: false } },
      { label: "efficiency %", stroke: "#1b7f5a", width: 2, scale: "%", points: { size: 7 } },
    ],
    axes: [
      { splits: daySplits, values: (u, ticks) => ticks.map((v) => utc(v * 1000).slice(5, 10)) },
      { label: "MWh", size: 50 },
      { side: 1, scale: "%", label: "efficiency %", grid: { show: false }, size: 45 },
    ],
    scales: {
      x: { time: false, range: (u, lo, hi) => [lo - 43200, hi + 43200] },
      // From 100 % down to a round 10 below the worst day: a drop shows, noise does not shout.
      "%": { range: (u, lo, hi) => [Math.min(70, Math.floor(((lo ?? 70) - 5) / 10) * 10), 100] },
    },
  }, data);
  box.dataset.days = String(days.length);
  box.dataset.withEfficiency = String(days.filter((d) => d.efficiency !== null).length);
}

async function showVehicle(id) {
  const perf = await api("/v1/analytics/performance/" + encodeURIComponent(id) + "?" + windowQuery());
  const hours = perf.hourly;
  const data = [
    hours.map((h) => Date.parse(h.hour) / 1000),
    hours.map((h) => h.acKwh),
    hours.map((h) => h.dcKwh),
    hours.map((h) => (h.efficiency === null ? null : h.efficiency * 100)),
  ];
  const box = document.getElementById("chart");
  draw("vehicle", box, {
    series: [{}, { label: "AC kWh", stroke: "#c0392b" }, { label: "DC kWh", stroke: "#2e6f9e" },
             { label: "efficiency %", stroke: "#1b7f5a", scale: "%" }],
    axes: [{}, { label: "kWh", size: 50 }, { side: 1, scale: "%", label: "%", grid: { show: false }, size: 45 }],
  }, data);
  box.dataset.vehicle = id;
  box.dataset.points = String(hours.length);
  document.getElementById("vehicle-h").textContent = id + " · hourly · " + windowLabel(perf.window);
  const fig = document.getElementById("vehicle-figures");
  fig.replaceChildren(
    el("span", perf.status.replace("_", " "), "badge " + perf.status),
    el("span", "efficiency " + (perf.efficiencyPercent === null ? "–" : perf.efficiencyPercent.toFixed(1) + " %")),
    el("span", "AC " + kwh(perf.totalAcKwh) + " · DC " + kwh(perf.totalDcKwh)),
    el("span", perf.message, "message"),
  );
}

function showAlerts(list) {
  const box = document.getElementById("alerts");
  box.replaceChildren();
  const open = list.alerts.filter((a) => a.state === "open");
  const groups = new Map();
  for (const a of open) {
    if (!groups.has(a.kind)) groups.set(a.kind, []);
    groups.get(a.kind).push(a);
  }
  for (const g of groups.values()) g.sort((x, y) => Date.parse(y.openedAt) - Date.parse(x.openedAt));
  const ordered = [...groups.entries()].sort(
    (x, y) => Date.parse(y[1][0].openedAt) - Date.parse(x[1][0].openedAt));
  document.getElementById("alerts-h").textContent = "Open alerts · " + list.open;
  if (!ordered.length) box.append(el("p", "none open", "none"));
  const now = Date.now();
  for (const [i, [kind, alerts]] of ordered.entries()) {
    const count = (list.openByKind && list.openByKind[kind]) || alerts.length;
    const details = el("details", null, "alert-group");
    details.dataset.kind = kind;
    details.dataset.count = String(count);
    details.open = i === 0 || ordered.length <= 3; // the newest kind shows its subjects
    const summary = el("summary");
    summary.append(el("span", count, "count"), el("span", kind.replaceAll("_", " "), "kind"),
                   el("span", "newest " + age((now - Date.parse(alerts[0].openedAt)) / 1000) + " ago", "when"));
    details.append(summary);
    const ul = el("ul");
    for (const a of alerts.slice(0, 10)) {
      const li = el("li");
      li.dataset.kind = a.kind;
      li.dataset.openedAt = a.openedAt;
      li.append(el("span", a.subject, "subject"), el("span", "since " + utc(a.openedAt) + " UTC", "when"));
      ul.append(li);
    }
    if (count > 10) ul.append(el("li", "… and " + (count - 10) + " more", "more"));
    details.append(ul);
    box.append(details);
  }
}

// ---- vehicle search: the API answers a prefix a page at a time (10,000 vehicles stay there) --

let worst = [];
let searchSeq = 0;
let searchTimer = null;
let active = -1;

function options() { return [...document.querySelectorAll("#vehicle-options [role=option]")]; }

function closeOptions() {
  const ul = document.getElementById("vehicle-options");
  ul.hidden = true;
  document.getElementById("vehicle-search").setAttribute("aria-expanded", "false");
  active = -1;
}

function renderOptions(items, note) {
  const ul = document.getElementById("vehicle-options");
  ul.replaceChildren();
  items.forEach((item, i) => {
    const li = el("li", null, "option");
    li.id = "vehicle-option-" + i;
    li.setAttribute("role", "option");
    li.dataset.vehicle = item.id;
    li.append(el("span", item.id, "id"), el("span", item.detail || "", "detail"));
    li.addEventListener("mousedown", (ev) => { ev.preventDefault(); choose(item.id); });
    ul.append(li);
  });
  if (note) ul.append(el("li", note, "note"));
  ul.hidden = false;
  ul.dataset.count = String(items.length);
  document.getElementById("vehicle-search").setAttribute("aria-expanded", "true");
  active = -1;
}

async function search(text) {
  const seq = ++searchSeq;
  if (!text) {
    renderOptions(worst.map((v) => ({
      id: v.vehicleId,
      detail: (v.efficiencyPercent === null ? "–" : v.efficiencyPercent.toFixed(1) + " %") + " · " + v.status.replace("_", " "),
    })), worst.length ? "worst efficiency first · type to search" : "type to search");
    return;
  }
  if (!ID_RE.test(text)) { renderOptions([], "no vehicle id has these characters"); return; }
  const page = await api("/v1/vehicles?prefix=" + encodeURIComponent(text) + "&limit=" + SUGGESTIONS);
  if (seq !== searchSeq) return; // an older answer arriving late
  const items = page.vehicles.map((v) => ({
    id: v.vehicleId,
    detail: v.lastSeenAt ? "seen " + age((Date.now() - Date.parse(v.lastSeenAt)) / 1000) + " ago" : "never reported",
  }));
  renderOptions(items, items.length === 0 ? "no vehicle starts with " + text
    : page.nextCursor ? "more: keep typing" : null);
}

function choose(id) {
  state.vehicle = id;
  writeState();
  const input = document.getElementById("vehicle-search");
  input.value = "";
  closeOptions();
  input.blur();
  showVehicle(id).catch(showError);
}

function setupSearch() {
  const input = document.getElementById("vehicle-search");
  const run = () => search(input.value.trim()).catch(showError);
  input.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(run, 150);
  });
  input.addEventListener("focus", run);
  input.addEventListener("blur", () => setTimeout(closeOptions, 100));
  input.addEventListener("keydown", (ev) => {
    const opts = options();
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (!opts.length) return;
      active = (active + (ev.key === "ArrowDown" ? 1 : opts.length - 1)) % opts.length;
      opts.forEach((o, i) => o.setAttribute("aria-selected", String(i === active)));
      input.setAttribute("aria-activedescendant", opts[active].id);
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      const pick = opts[active >= 0 ? active : 0];
      if (pick) choose(pick.dataset.vehicle);
    } else if (ev.key === "Escape") {
      closeOptions();
    }
  });
}

// ---- refresh: every minute while visible; at once when the tab comes back after that ----------

let timer = null;
let lastRefresh = 0;
let refreshes = 0;
let busy = false;
let again = false; // asked for while one was running (a new range): run once more after it

function showError(e) {
  document.getElementById("error").textContent = e ? String(e.message || e) : "";
}

function showRefresh() {
  const out = document.getElementById("refresh");
  const paused = document.visibilityState === "hidden";
  document.body.dataset.paused = String(paused);
  out.textContent = paused ? "auto-refresh paused (tab hidden)"
    : lastRefresh ? "updated " + utc(Date.now(), true).slice(11) + " UTC · every " + REFRESH_MS / 1000 + " s"
    : "loading…";
}

function schedule(delay) {
  clearTimeout(timer);
  timer = document.visibilityState === "hidden" ? null : setTimeout(refresh, delay);
}

async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  again = false;
  clearTimeout(timer);
  const w = windowQuery();
  try {
    const [fleet, daily, chargers, alerts] = await Promise.all([
      // The summary: counts and the worst vehicles, not every row (6 MB for 10,000 vehicles).
      api("/v1/analytics/fleet/summary?worst=" + SUGGESTIONS + "&" + w),
      api("/v1/analytics/fleet/daily?" + w),
      api("/v1/analytics/chargers?" + w),
      api("/v1/alerts?limit=1000"),
    ]);
    asOf = { newest: fleet.newestReadingAt, age: fleet.dataAgeSeconds, at: performance.now() };
    worst = fleet.worst;
    showFleet(fleet);
    showWorst(worst);
    showDaily(daily);
    showChargers(chargers);
    showAlerts(alerts);
    showAsOf();
    const vehicle = state.vehicle || (worst[0] && worst[0].vehicleId);
    if (vehicle) await showVehicle(vehicle);
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    document.body.dataset.loaded = "true";
    showError(null);
  } catch (e) {
    showError(e);
  } finally {
    busy = false;
    lastRefresh = Date.now();
    showRefresh();
    schedule(again ? 0 : REFRESH_MS);
  }
}

document.addEventListener("visibilitychange", () => {
  showRefresh();
  if (document.visibilityState === "hidden") { clearTimeout(timer); timer = null; return; }
  const due = lastRefresh + REFRESH_MS - Date.now();
  if (due <= 0) refresh(); else schedule(due);
});

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const [name, chart] of Object.entries(charts)) {
      const box = document.getElementById(name === "daily" ? "daily" : "chart");
      chart.setSize({ width: chartWidth(box), height: 240 });
    }
  }, 100);
});

setupRange();
setupSearch();
document.body.dataset.refreshS = String(REFRESH_MS / 1000);
setInterval(() => { if (document.visibilityState !== "hidden") showAsOf(); }, 1000);
refresh();
