// The vidlake results page: the vocabulary with clip counts, search with every /search option,
// pages of hit thumbnails with their masks drawn, and a clip view that plays the source video
// from the hit with each object's mask and box drawn per sampled frame over it, under a
// timeline of the video's hits. Time and track hits (tracks, sequences, frames) and screen
// time show as tables whose rows open the same player. Plain JavaScript, no build step.
// Every API call carries the bearer token when one is set; images are fetched the same way
// (an <img src> cannot send headers) and shown as blob URLs; the <video> plays a signed URL
// from /videos/{id}. Index data is only ever written with textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "vidlake.token";
const $ = (id) => document.getElementById(id);
let blobUrls = [];
const MAX_LIMIT = 1000; // the API's largest page: the timeline of one video's hits
// The fields of the form as /search takes them: [input id, parameter, kind]. "list": split on
// ";" and repeated once per item; the rest sent as typed unless empty or at their default.
const FIELDS = [
  ["min-score", "min_score", "value"],
  ["min-presence", "min_presence", "value"],
  ["with", "with", "list"],
  ["video-glob", "video", "list"],
  ["start-s", "start_s", "value"],
  ["end-s", "end_s", "value"],
  ["same-frame", "same_frame", "check"],
  ["min-count", "min_count", "value"],
  ["order", "order", "value"],
  ["then", "then", "list"],
  ["within", "within", "value"],
  ["min-duration", "min_duration", "value"],
  ["min-area", "min_area", "value"],
  ["region", "region", "value"],
];
const STATS_PARAMS = ["min_score", "video", "start_s", "end_s"]; // what /stats takes
const TRACK_PARAMS = ["then", "within", "min_duration", "min_area", "region"];
const defaults = {};
let page = { offset: 0, next: null }; // the page of clips shown
const clipCache = new Map(); // clip id -> /clips/{id}?masks=1 body
const player = {
  videoId: null, // the video loaded in the <video>
  info: null, // its /videos/{id} body
  clip: null, // the /clips body whose masks are drawn
  palette: new Map(),
  hits: [], // the video's clip hits (timeline)
  frame: -2, // the sampled frame drawn (-1: none)
  loading: null, // clip id being loaded
};

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

async function api(path, init) {
  const response = await fetch(path, { ...(init || {}), headers: { ...headers(), ...((init || {}).headers || {}) } });
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

function overlayOptions() {
  return { showMasks: $("show-masks").checked, showBoxes: $("show-boxes").checked };
}

// ---- the query: form <-> /search parameters <-> the page's own URL ---------------------------

function fieldValue(id, kind) {
  const input = $(id);
  if (kind === "check") return input.checked ? ["true"] : [];
  if (kind === "list") return input.value.split(";").map((p) => p.trim()).filter(Boolean);
  const value = input.value.trim();
  return value === "" || value === defaults[id] ? [] : [value];
}

// The query's parameters (without paging); ONLY: the names to keep.
function queryParams(only) {
  const params = new URLSearchParams({ q: $("q").value.trim() });
  for (const [id, name, kind] of FIELDS) {
    if (only && !only.includes(name)) continue;
    for (const value of fieldValue(id, kind)) params.append(name, value);
  }
  return params;
}

// The form as the page's URL said it (a shared link, a reload).
function fillForm(params) {
  $("q").value = params.get("q") || "";
  for (const [id, name, kind] of FIELDS) {
    const values = params.getAll(name);
    if (kind === "check") $(id).checked = values.includes("true");
    else if (kind === "list") $(id).value = values.join("; ");
    else if (values.length) $(id).value = values[0];
  }
  if (FIELDS.some(([, name]) => params.has(name) && !TRACK_PARAMS.includes(name))) $("filters").open = true;
  if (TRACK_PARAMS.some((name) => params.has(name))) $("options").open = true;
  page.offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
  const limit = parseInt(params.get("limit") || "", 10);
  if (limit > 0 && limit <= MAX_LIMIT) {
    if (![...$("page-size").options].some((o) => o.value === String(limit))) {
      $("page-size").append(el("option", "", String(limit)));
    }
    $("page-size").value = String(limit);
  }
}

function clearResults() {
  blobUrls.forEach((u) => URL.revokeObjectURL(u));
  blobUrls = [];
  clipCache.clear();
  $("results").replaceChildren();
  $("rows").hidden = true;
  $("rows").tHead.replaceChildren();
  $("rows").tBodies[0].replaceChildren();
  $("pager").hidden = true;
  closeClip(false);
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

// A table of hits or videos; a row opens the player at its first time.
function showRows(kind, rows) {
  const table = $("rows");
  const head = el("tr");
  for (const [header] of COLUMNS[kind]) head.append(el("th", "", header));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows.map((row) => {
    const tr = el("tr", kind);
    for (const [, cell] of COLUMNS[kind]) tr.append(el("td", "", cell(row)));
    tr.tabIndex = 0;
    const start = row.start_s !== undefined ? row.start_s : row.first_s;
    const open = () => openVideo(row.video_id, start, null);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter") open();
    });
    return tr;
  }));
  table.hidden = false;
}

async function stats() {
  const q = $("q").value.trim();
  if (!q) return;
  const params = queryParams(STATS_PARAMS);
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

function pageSize() {
  return parseInt($("page-size").value, 10);
}

async function search(event, offset) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  if (!q) return;
  page.offset = offset === undefined ? 0 : offset;
  const params = queryParams();
  const shown = new URLSearchParams(params);
  if ($("page-size").value !== defaults["page-size"]) shown.set("limit", $("page-size").value);
  if (page.offset) shown.set("offset", String(page.offset));
  history.replaceState(null, "", "?" + shown);
  params.set("limit", String(pageSize()));
  if (page.offset) params.set("offset", String(page.offset));
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
  page.next = body.next_offset;
  const range = page.offset || page.next !== null
    ? (page.offset + 1) + "–" + (page.offset + n) + (page.next !== null ? " (more follow)" : "") + ": "
    : "";
  showPager(n);
  if (body.kind && body.kind !== "clips") {
    setStatus(range + plural(n, NOUNS[body.kind]) + " with “" + body.phrase + "”");
    showRows(body.kind, body.hits);
    return;
  }
  let note = range + plural(n, "clip") + " with “" + body.phrase + "”";
  if (!body.indexed) {
    const near = body.candidates.map((c) => c.concept).join(", ") || "none";
    note = range + "“" + body.phrase + "” is not indexed; clips of the nearest concepts (" + near + ")";
  } else if (body.verified_on !== null) {
    note += " (verified at query time on " + body.verified_on + " clips)";
  }
  setStatus(note);
  const concepts = [body.phrase, ...queryParams(["with"]).getAll("with")];
  for (const hit of body.hits) {
    $("results").append(card(hit, concepts));
  }
}

function showPager(n) {
  $("pager").hidden = page.offset === 0 && page.next === null;
  $("prev-page").disabled = page.offset === 0;
  $("next-page").disabled = page.next === null;
  const size = pageSize();
  $("page-info").textContent = "page " + (Math.floor(page.offset / size) + 1) +
    " · " + (page.offset + 1) + "–" + (page.offset + n);
}

// ---- a hit's card: its clip's thumbnail with the masks of the phrase's objects drawn over it ----

// The indexed frame's size ({width, height}: the masks' and boxes' pixels) of a /clips body:
// the clip's, or its first mask's where an older index left the clip's out.
function frameSize(body) {
  if (body.clip.width && body.clip.height) return body.clip;
  for (const m of body.masklets) {
    for (const f of m.frames) if (f.mask) return { width: f.mask.size[1], height: f.mask.size[0] };
  }
  return null;
}

async function clipBody(clipId) {
  if (!clipCache.has(clipId)) {
    clipCache.set(clipId, api(clipPath(clipId) + "?masks=1").then((r) => r.json()));
  }
  try {
    return await clipCache.get(clipId);
  } catch (err) {
    clipCache.delete(clipId);
    throw err;
  }
}

function card(hit, concepts) {
  const item = el("li", "card");
  item.tabIndex = 0;
  item.dataset.clipId = hit.clip_id;
  const thumb = el("div", "thumb");
  const img = el("img");
  img.alt = hit.video_name + " " + seconds(hit.start_s, hit.end_s);
  const canvas = el("canvas", "masks");
  thumb.append(img, canvas);
  imageUrl(clipPath(hit.clip_id, "/thumbnail.jpg"))
    .then((url) => (img.src = url))
    .catch(() => (img.alt = "no thumbnail"));
  // The thumbnail is the clip's middle sampled frame (frames[n // 2], as the index job takes
  // it): its objects, of the phrase (a candidate's own concept) and the `with` phrases.
  clipBody(hit.clip_id)
    .then((body) => {
      const wanted = hit.match === "candidate" ? [hit.concept] : concepts;
      item.drawMasks = () => {
        const objects = Masks.objectsAt(body.masklets, Math.floor(body.clip.n_frames / 2), wanted);
        const palette = Masks.colors(body.masklets.map((m) => m.concept));
        const frame = frameSize(body);
        if (!frame) return;
        Masks.fit(canvas, frame);
        Masks.drawObjects(canvas, frame, objects, palette, { ...overlayOptions(), labels: false });
        canvas.dataset.objects = String(objects.length);
      };
      item.drawMasks();
      canvas.classList.add("drawn");
    })
    .catch((err) => (canvas.title = "no masks: " + err.message));
  const meta = el("div", "meta");
  meta.append(el("div", "name", hit.video_name));
  meta.append(el("div", "times", seconds(hit.start_s, hit.end_s)));
  const score = hit.max_score === null ? "–" : hit.max_score.toFixed(3);
  meta.append(el("div", "score", "score " + score + " · " + hit.n_objects + " objects"));
  if (hit.match === "candidate") meta.append(el("div", "candidate", "candidate: " + hit.concept));
  item.append(thumb, meta);
  const open = () => openVideo(hit.video_id, hit.start_s, hit.clip_id);
  item.addEventListener("click", open);
  item.addEventListener("keydown", (e) => {
    if (e.key === "Enter") open();
  });
  return item;
}

function redrawOverlays() {
  document.querySelectorAll("#results .card").forEach((c) => c.drawMasks && c.drawMasks());
  player.frame = -2;
  drawPlayer();
}

// ---- the clip view: the source video, its objects per frame, the video's hits ---------------

// A glob matching NAME only (fnmatch: [*], [?] and [[] stand for themselves).
function literalGlob(name) {
  return name.replace(/[[*?]/g, (c) => "[" + c + "]");
}

// Opens the player on VIDEO_ID at START_S; CLIP_ID: the clip whose masks to draw first
// (null: whichever of the video's hits covers the time).
async function openVideo(videoId, startS, clipId) {
  const detail = $("detail");
  detail.hidden = false;
  detail.dataset.videoId = videoId;
  detail.dataset.clipId = clipId || "";
  $("detail-title").textContent = "loading…";
  $("detail-times").textContent = "";
  $("player-status").textContent = "";
  $("player-status").className = "";
  $("objects").tBodies[0].replaceChildren();
  const video = $("video");
  let info;
  try {
    info = await (await api("/videos/" + encodeURIComponent(videoId))).json();
  } catch (err) {
    if (detail.dataset.videoId === videoId) $("detail-title").textContent = err.message;
    return;
  }
  if (detail.dataset.videoId !== videoId) return; // another one was opened meanwhile
  $("detail-title").textContent = info.video_name;
  $("detail-title").title = info.video_uri;
  player.info = info;
  player.clip = null;
  player.frame = -2;
  clearOverlay();
  if (player.videoId !== videoId) {
    player.videoId = videoId;
    player.hits = [];
    $("timeline").querySelectorAll(".hit").forEach((n) => n.remove());
    video.src = info.source_url;
    loadTimeline(info);
  }
  if (clipId) await loadClip(clipId);
  seekAndPlay(startS);
}

function seekAndPlay(t) {
  const video = $("video");
  video.muted = true; // a muted video may start without a gesture
  const start = () => {
    video.currentTime = t;
    video.play().catch((err) => {
      if (err.name !== "AbortError") $("player-status").textContent = "cannot play: " + err.message;
    });
  };
  if (video.readyState >= 1) start();
  else video.addEventListener("loadedmetadata", start, { once: true });
}

async function loadClip(clipId) {
  if (player.clip && player.clip.clip.clip_id === clipId) return;
  player.loading = clipId;
  let body;
  try {
    body = await clipBody(clipId);
  } catch (err) {
    $("player-status").textContent = "no masks: " + err.message;
    return;
  } finally {
    if (player.loading === clipId) player.loading = null;
  }
  if (body.clip.video_id !== player.videoId) return;
  player.clip = body;
  player.palette = Masks.colors(body.masklets.map((m) => m.concept));
  player.frame = -2;
  $("detail").dataset.clipId = clipId;
  $("detail-times").textContent =
    "clip " + body.clip.clip_index + ": " + seconds(body.clip.start_s, body.clip.end_s) + " · " + clipId;
  const rows = $("objects").tBodies[0];
  rows.replaceChildren(...body.masklets.map((m) => {
    const tr = el("tr", "object");
    const swatch = el("td", "concept", m.concept);
    swatch.style.borderLeft = "6px solid " + Masks.css(player.palette.get(m.concept));
    tr.append(
      swatch,
      el("td", "track", m.track_id.slice(0, 8)),
      el("td", "score", m.score === null ? "–" : m.score.toFixed(3)),
      el("td", "", seconds(m.first_s, m.last_s)),
      el("td", "", String(m.frames.length)),
    );
    return tr;
  }));
  $("timeline").querySelectorAll(".hit").forEach((n) => n.classList.toggle("current", n.dataset.clipId === clipId));
  drawPlayer();
}

// The video's hits of the phrase (the query's clip filters, not its time range or globs), in
// time order: one segment each on the timeline.
async function loadTimeline(info) {
  const params = queryParams(["min_score", "min_presence", "with", "same_frame", "min_count"]);
  params.set("video", literalGlob(info.video_name));
  params.set("order", "time");
  params.set("limit", String(MAX_LIMIT));
  let body;
  try {
    body = await (await api("/search?" + params)).json();
  } catch (err) {
    $("timeline-legend").textContent = "no timeline: " + err.message;
    return;
  }
  if (player.videoId !== info.video_id) return;
  player.hits = body.hits.filter((h) => h.video_id === info.video_id && h.clip_id);
  const duration = info.duration_s || Math.max(1, ...player.hits.map((h) => h.end_s));
  const timeline = $("timeline");
  timeline.dataset.duration = String(duration);
  for (const hit of player.hits) {
    const seg = el("button", "hit");
    seg.type = "button";
    seg.dataset.clipId = hit.clip_id;
    seg.title = hit.concept + " " + seconds(hit.start_s, hit.end_s);
    seg.style.left = (100 * hit.start_s / duration) + "%";
    seg.style.width = Math.max(0.5, 100 * (hit.end_s - hit.start_s) / duration) + "%";
    if ($("detail").dataset.clipId === hit.clip_id) seg.classList.add("current");
    seg.addEventListener("click", (e) => {
      e.stopPropagation();
      openVideo(info.video_id, hit.start_s, hit.clip_id);
    });
    timeline.append(seg);
  }
  $("timeline-legend").textContent = plural(player.hits.length, "hit") + " of “" + body.phrase +
    "” in this video (" + duration.toFixed(1) + " s)";
  drawPlayer();
}

function clearOverlay() {
  const canvas = $("overlay");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.frame = "-1";
}

// The sampled frame of CLIP shown at time T: the last one at or before T, while T is before
// the next sample (-1 outside the clip's samples). Times are the source frames' timestamps.
function sampleAt(clip, t) {
  const times = clip.frame_times_s;
  const eps = 1e-3;
  let k = -1;
  for (let i = 0; i < times.length && times[i] <= t + eps; i += 1) k = i;
  if (k < 0) return -1;
  const step = 1 / (clip.sampled_fps || 1);
  return t - times[k] < step + eps ? k : -1;
}

// Draws the objects of the sampled frame on screen; moves to the clip of the video's hit that
// covers the time when the video plays out of the drawn clip.
function drawPlayer() {
  const video = $("video");
  const t = video.currentTime;
  const playhead = $("playhead");
  const duration = parseFloat($("timeline").dataset.duration || "0");
  if (duration) playhead.style.left = Math.min(100, (100 * t) / duration) + "%";
  let clip = player.clip && player.clip.clip;
  if ((!clip || t < clip.start_s || t > clip.end_s) && !player.loading) {
    const next = player.hits.find((h) => h.clip_start_s <= t && t < h.clip_end_s);
    if (next && (!clip || next.clip_id !== clip.clip_id)) {
      loadClip(next.clip_id);
    }
  }
  if (!clip || t < clip.start_s - 0.5 || t > clip.end_s + 0.5) {
    if (player.frame !== -1) clearOverlay();
    player.frame = -1;
    return;
  }
  const k = sampleAt(clip, t);
  if (k === player.frame) return;
  player.frame = k;
  const canvas = $("overlay");
  const objects = k < 0 ? [] : Masks.objectsAt(player.clip.masklets, k);
  const frame = frameSize(player.clip);
  if (!frame) return;
  Masks.fit(canvas, frame);
  Masks.drawObjects(canvas, frame, objects, player.palette, overlayOptions());
  canvas.dataset.frame = String(k);
  canvas.dataset.objects = String(objects.length);
}

function onFrame() {
  drawPlayer();
  const video = $("video");
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
}

// The signed URL may expire while the page stays open, or the file may be gone: say which.
async function onVideoError() {
  const video = $("video");
  const info = player.info;
  if (!info || !video.error) return;
  if (info.source_expires && Date.now() / 1000 > info.source_expires - 60) {
    const t = video.currentTime;
    try {
      player.info = await (await api("/videos/" + encodeURIComponent(info.video_id))).json();
      video.src = player.info.source_url;
      seekAndPlay(t);
      return;
    } catch (_) {
      // said below
    }
  }
  let why = "the browser cannot play this video (" + (video.error.message || "code " + video.error.code) + ")";
  try {
    await api(info.source_url, { headers: { Range: "bytes=0-0" } });
  } catch (err) {
    why = err.message;
  }
  $("player-status").textContent = why;
  $("player-status").className = "error";
}

function closeClip(focus) {
  const detail = $("detail");
  const video = $("video");
  if (!video.paused) video.pause();
  const wasOpen = !detail.hidden;
  detail.hidden = true;
  if (focus === false || !wasOpen) return;
  const card = document.querySelector('#results .card[data-clip-id="' + detail.dataset.clipId + '"]');
  if (card) card.focus();
}

// ---- the vocabulary -------------------------------------------------------------------------

async function loadConcepts() {
  try {
    const body = await (await api("/concepts")).json();
    const list = $("concept-list");
    const shown = body.concepts.slice(0, 500);
    list.replaceChildren(...shown.map((c) => {
      const option = el("option");
      option.value = c.concept;
      option.label = c.concept + " (" + plural(c.n_clips, "clip") + ")";
      return option;
    }));
    $("vocabulary").replaceChildren(...shown.map((c) => {
      const button = el("button", "concept" + (c.source === "vocabulary" ? "" : " " + c.source));
      button.type = "button";
      button.dataset.concept = c.concept;
      button.title = c.source === "vocabulary" ? "indexed" : c.source;
      button.append(el("span", "name", c.concept), el("span", "count", String(c.n_clips)));
      button.addEventListener("click", () => {
        $("q").value = c.concept;
        search();
      });
      return button;
    }));
    if (!$("status").textContent) {
      const n = body.concepts.length;
      setStatus(n ? plural(n, "concept") + " indexed: pick one or type a phrase"
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
  if ($("q").value.trim()) search(null, page.offset);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const [id] of FIELDS) defaults[id] = $(id).value;
  defaults["page-size"] = $("page-size").value;
  $("search-form").addEventListener("submit", search);
  $("stats-button").addEventListener("click", stats);
  $("token-form").addEventListener("submit", useToken);
  $("close-detail").addEventListener("click", () => closeClip(true));
  $("prev-page").addEventListener("click", () => search(null, Math.max(0, page.offset - pageSize())));
  $("next-page").addEventListener("click", () => page.next !== null && search(null, page.next));
  $("page-size").addEventListener("change", () => $("q").value.trim() && search());
  $("show-masks").addEventListener("change", redrawOverlays);
  $("show-boxes").addEventListener("change", redrawOverlays);
  const video = $("video");
  for (const name of ["timeupdate", "seeked", "loadeddata"]) video.addEventListener(name, drawPlayer);
  video.addEventListener("error", onVideoError);
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
  $("timeline").addEventListener("click", (e) => {
    const box = $("timeline").getBoundingClientRect();
    const duration = parseFloat($("timeline").dataset.duration || "0");
    if (duration) video.currentTime = (duration * (e.clientX - box.left)) / box.width;
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("detail").hidden) closeClip(true);
  });
  const params = new URLSearchParams(location.search);
  fillForm(params);
  loadConcepts();
  if ($("q").value.trim()) search(null, page.offset);
});
