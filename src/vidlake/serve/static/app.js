// The vidlake results page: search, a grid of hit thumbnails, a clip's preview and objects;
// time and track options (tracks, sequences, frames as a table) and screen time per video.
// Plain JavaScript, no build step. Every API call carries the bearer token when one is set;
// images are fetched the same way (an <img src> cannot send headers) and shown as blob URLs.
// Index data is only ever written with textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "vidlake.token";
const $ = (id) => document.getElementById(id);
let blobUrls = [];
const PAGE_LIMIT = 100; // clips asked for per search

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

// FastAPI's 422 detail is a list of {loc, msg}: said in one line, naming each parameter.
function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => ((d.loc || []).slice(-1)[0] || "request") + ": " + d.msg).join("; ");
  }
  return JSON.stringify(detail);
}

class ApiError extends Error {
  constructor(status, detail) {
    super(describe(detail));
    this.status = status;
  }
}

async function api(path) {
  const response = await fetch(path, { headers: headers() });
  if (response.status === 401) {
    $("token-form").hidden = false;
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail;
    } catch (_) {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

async function imageUrl(path) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  blobUrls.push(url);
  return url;
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function plural(n, noun) {
  return n + " " + noun + (n === 1 ? "" : "s");
}

function seconds(a, b) {
  return a.toFixed(2) + "–" + b.toFixed(2) + " s";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clipPath(clipId, suffix) {
  return "/clips/" + encodeURIComponent(clipId) + (suffix || "");
}

// The time and track options as /search takes them (empty fields are left out): `then`
// repeated once per phrase of "a; b", the rest as typed, so the API checks and names them.
function trackOptions(params) {
  for (const phrase of $("then").value.split(";").map((p) => p.trim()).filter(Boolean)) {
    params.append("then", phrase);
  }
  for (const [id, name] of [
    ["within", "within"],
    ["min-duration", "min_duration"],
    ["min-area", "min_area"],
    ["region", "region"],
  ]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  if ($("same-frame").checked) params.set("same_frame", "true");
  const minCount = parseInt($("min-count").value, 10);
  if (minCount > 1) params.set("min_count", String(minCount));
  if ($("order").value !== "score") params.set("order", $("order").value);
}

function clearResults() {
  blobUrls.forEach((u) => URL.revokeObjectURL(u));
  blobUrls = [];
  $("results").replaceChildren();
  $("rows").hidden = true;
  $("rows").tHead.replaceChildren();
  $("rows").tBodies[0].replaceChildren();
  $("detail").hidden = true;
}

const NOUNS = { clips: "clip", tracks: "track", sequences: "sequence", frames: "video" };
// Columns of the rows table per kind of hit: [header, cell of a hit].
const COLUMNS = {
  tracks: [
    ["video", (h) => h.video_name],
    ["seen", (h) => seconds(h.start_s, h.end_s)],
    ["duration s", (h) => h.duration_s.toFixed(2)],
    ["largest area", (h) => (h.max_area === null ? "–" : h.max_area.toFixed(3))],
    ["score", (h) => (h.max_score === null ? "–" : h.max_score.toFixed(3))],
    ["track", (h) => h.track_id.slice(0, 8)],
  ],
  sequences: [
    ["video", (h) => h.video_name],
    ["tracks", (h) => h.concepts.map((c, i) => c + " " + seconds(h.starts_s[i], h.ends_s[i])).join(" → ")],
    ["score", (h) => (h.max_score === null ? "–" : h.max_score.toFixed(3))],
  ],
  frames: [
    ["video", (h) => h.video_name],
    ["most at once", (h) => String(h.n_objects)],
    ["first–last", (h) => seconds(h.start_s, h.end_s)],
    ["times s", (h) => h.times_s.map((t) => t.toFixed(2)).join(", ")],
  ],
  stats: [
    ["video", (v) => v.video_name],
    ["screen time s", (v) => v.screen_time_s.toFixed(2)],
    ["first s", (v) => v.first_s.toFixed(2)],
    ["last s", (v) => v.last_s.toFixed(2)],
    ["tracks", (v) => String(v.n_tracks)],
    ["most at once", (v) => String(v.max_at_once)],
  ],
};

function showRows(kind, rows) {
  const table = $("rows");
  const head = el("tr");
  for (const [header] of COLUMNS[kind]) head.append(el("th", "", header));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows.map((row) => {
    const tr = el("tr", kind);
    for (const [, cell] of COLUMNS[kind]) tr.append(el("td", "", cell(row)));
    return tr;
  }));
  table.hidden = false;
}

async function stats() {
  const q = $("q").value.trim();
  if (!q) return;
  const params = new URLSearchParams({ q: q });
  const minScore = parseFloat($("min-score").value);
  if (minScore > 0) params.set("min_score", String(minScore));
  clearResults();
  setStatus("counting…");
  let body;
  try {
    body = await (await api("/stats?" + params)).json();
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const t = body.totals;
  setStatus("“" + body.phrase + "”: " + t.screen_time_s.toFixed(2) + " s on screen in " +
            plural(t.videos, "video") + ", " + plural(t.tracks, "track") + ", at most " +
            t.max_at_once + " at once");
  showRows("stats", body.videos);
}

async function search(event) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  if (!q) return;
  const params = new URLSearchParams({ q: q, limit: String(PAGE_LIMIT) });
  const minScore = parseFloat($("min-score").value);
  if (minScore > 0) params.set("min_score", String(minScore));
  trackOptions(params);
  history.replaceState(null, "", "?" + new URLSearchParams({ q: q }));
  clearResults();
  setStatus("searching…");
  let body;
  try {
    body = await (await api("/search?" + params)).json();
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const n = body.hits.length;
  if (body.kind && body.kind !== "clips") {
    setStatus((n === PAGE_LIMIT ? "the best " : "") + plural(n, NOUNS[body.kind]) +
              " with “" + body.phrase + "”");
    showRows(body.kind, body.hits);
    return;
  }
  let note = (n === PAGE_LIMIT ? "the best " : "") + plural(n, "clip") + " with “" + body.phrase + "”";
  if (!body.indexed) {
    const near = body.candidates.map((c) => c.concept).join(", ") || "none";
    note = "“" + body.phrase + "” is not indexed; clips of the nearest concepts (" + near + ")";
  } else if (body.verified_on !== null) {
    note += " (verified at query time on " + body.verified_on + " clips)";
  }
  setStatus(note);
  for (const hit of body.hits) {
    $("results").append(card(hit));
  }
}

function card(hit) {
  const item = el("li", "card");
  item.tabIndex = 0;
  item.dataset.clipId = hit.clip_id;
  const img = el("img");
  img.alt = hit.video_name + " " + seconds(hit.start_s, hit.end_s);
  imageUrl(clipPath(hit.clip_id, "/thumbnail.jpg"))
    .then((url) => (img.src = url))
    .catch(() => (img.alt = "no thumbnail"));
  const meta = el("div", "meta");
  meta.append(el("div", "name", hit.video_name));
  meta.append(el("div", "times", seconds(hit.start_s, hit.end_s)));
  const score = hit.max_score === null ? "–" : hit.max_score.toFixed(3);
  meta.append(el("div", "score", "score " + score + " · " + hit.n_objects + " objects"));
  if (hit.match === "candidate") meta.append(el("div", "candidate", "candidate: " + hit.concept));
  item.append(img, meta);
  const open = () => openClip(hit.clip_id);
  item.addEventListener("click", open);
  item.addEventListener("keydown", (e) => {
    if (e.key === "Enter") open();
  });
  return item;
}

async function openClip(clipId) {
  const detail = $("detail");
  detail.hidden = false;
  detail.dataset.clipId = clipId;
  $("detail-title").textContent = "loading…";
  $("detail-times").textContent = "";
  $("preview").removeAttribute("src");
  $("preview").classList.remove("loaded");
  const rows = $("objects").tBodies[0];
  rows.replaceChildren();
  let body;
  try {
    body = await (await api(clipPath(clipId))).json();
  } catch (err) {
    if (detail.dataset.clipId === clipId) $("detail-title").textContent = err.message;
    return;
  }
  if (detail.dataset.clipId !== clipId) return; // another clip was opened meanwhile
  const clip = body.clip;
  $("detail-title").textContent = clip.video_name;
  $("detail-times").textContent =
    "clip " + clip.clip_index + ": " + seconds(clip.start_s, clip.end_s) + " · " + clipId;
  for (const m of body.masklets) {
    const tr = el("tr", "object");
    tr.append(
      el("td", "concept", m.concept),
      el("td", "track", m.track_id.slice(0, 8)),
      el("td", "score", m.score === null ? "–" : m.score.toFixed(3)),
      el("td", "", seconds(m.first_s, m.last_s)),
      el("td", "", String(m.frames.length)),
    );
    rows.append(tr);
  }
  try {
    const url = await imageUrl(clipPath(clipId, "/preview.gif"));
    if (detail.dataset.clipId === clipId) {
      $("preview").src = url;
      $("preview").classList.add("loaded");
    }
  } catch (err) {
    $("preview").alt = "no preview: " + err.message;
  }
}

function closeClip() {
  const detail = $("detail");
  detail.hidden = true;
  const card = document.querySelector('#results .card[data-clip-id="' + detail.dataset.clipId + '"]');
  if (card) card.focus();
}

async function loadConcepts() {
  try {
    const body = await (await api("/concepts")).json();
    const list = $("concept-list");
    list.replaceChildren(...body.concepts.slice(0, 500).map((c) => {
      const option = el("option");
      option.value = c.concept;
      option.label = c.concept + " (" + plural(c.n_clips, "clip") + ")";
      return option;
    }));
    if (!$("status").textContent) {
      const n = body.concepts.length;
      setStatus(n ? plural(n, "concept") + " indexed: type one above (suggestions as you type)"
                  : "nothing indexed yet: run `vidlake index` on this index");
    }
  } catch (_) {
    // without a token yet: the token form is showing
  }
}

function useToken(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token-form").hidden = true;
  loadConcepts();
  if ($("q").value.trim()) search();
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", search);
  $("stats-button").addEventListener("click", stats);
  $("token-form").addEventListener("submit", useToken);
  $("close-detail").addEventListener("click", closeClip);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("detail").hidden) closeClip();
  });
  const q = new URLSearchParams(location.search).get("q");
  loadConcepts();
  if (q) {
    $("q").value = q;
    search();
  }
});
