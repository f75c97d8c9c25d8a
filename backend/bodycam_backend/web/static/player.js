// One player across all segments of a recording (Media Source Extensions). Each fMP4 segment is placed at
// its own start on one timeline (the durations its signed manifests give, docs/format.md section 3), so
// any segment can be fetched first (a seek) and consecutive ones join with no gap. Only a window around
// the playing position is kept in the browser (default 60 s ahead, 30 s behind; ?ahead=S&behind=S), so
// a 4-hour recording plays like a 4-second one. Then: timeline with markers and keyframe strip, speed,
// frame step, keys; the server's integrity verdict beside this browser's own (check.js), and an alarm if
// they disagree.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("recording-data").textContent);
  const segs = data.segment_list;
  const params = new URLSearchParams(location.search);
  const AHEAD = Number(params.get("ahead") || 60);
  const BEHIND = Number(params.get("behind") || 30);
  const $ = (id) => document.getElementById(id);
  const state = { boundaries: [], starts: [], ends: [], appended: 0, evicted: 0, stalls: 0, waiting: 0,
                  markers: [], browser: null, server: null, errors: [], complete: false };
  window.bodycamPlayer = state;
  const video = $("video");
  const rowOf = (seq) => document.querySelector(`#segments tr[data-sequence="${seq}"]`);
  const setCell = (seq, cls, ok, text) => {
    const td = rowOf(seq)?.querySelector(`td.${cls}`);
    if (td) { td.textContent = text; td.className = `${cls} ${ok ? "good" : "bad"}`; }
  };
  const badge = (id, ok, text) => { const b = $(id); b.textContent = text; b.className = `badge ${ok ? "good" : "bad"}`; };
  const reasons = (id, list) => { const ul = $(id); ul.replaceChildren(...list.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; })); };
  const fmtUtc = (ns) => new Date(Number(ns / 1000000n)).toISOString();

  // --- one timeline from the manifests' durations ---
  let t = 0;
  segs.forEach((s, i) => {
    s._start = t;
    t += s.duration_s || 0;
    s._end = t;
    s._t0 = s.first_utc_ns != null ? BigInt(s.first_utc_ns) : null;
    if (i > 0) state.boundaries.push(s._start);
    state.starts.push(s._start);
    state.ends.push(s._end);
    for (const m of s.markers || []) {
      if (s._t0 === null) continue;
      state.markers.push({ t: s._start + Number(BigInt(m.utc_ns) - s._t0) / 1e9, utc: m.utc, note: m.note || "" });
    }
  });
  const total = t;

  // --- this browser's check: every manifest in order (signature, key, chain), every segment's bytes ---
  const checks = new Map(); // sequence -> {manifest: Promise, media: problems[] | undefined}
  let checkedAll = null;
  async function checkManifests() {
    let prev = null;
    try { prev = await BodycamCheck.previousManifestHash(data.previous_manifest_url); } catch (e) { prev = null; }
    for (const s of segs) {
      const p = BodycamCheck.manifest(s, prev).catch((e) => ({ problems: [String(e)], manifestSha256: null, doc: null }));
      checks.set(s.sequence, { manifest: p });
      prev = (await p).manifestSha256;
    }
    if (segs.length && segs[0].ca_url && $("ca-fingerprint")) {
      try {
        const ca = await BodycamCheck.ca(segs[0].ca_url);
        $("ca-fingerprint").textContent = ca.fingerprint;
      } catch (e) { $("ca-fingerprint").textContent = `cannot be read (${e})`; }
    }
  }
  async function checkMedia(s, bytes) {
    const c = checks.get(s.sequence);
    if (!c || c.media) return;
    const m = await c.manifest;
    c.media = m.doc ? await BodycamCheck.media(m.doc, bytes) : ["manifest could not be read"];
    const problems = [...m.problems, ...c.media];
    setCell(s.sequence, "browser", problems.length === 0, problems.length ? "FAILED" : "valid");
  }
  async function checkRest() {
    // segments playback has not fetched (yet): fetch them only to check, one at a time, and drop them
    for (const s of segs) {
      if (checks.get(s.sequence)?.media) continue;
      try { await checkMedia(s, await BodycamCheck.fetchBytes(s.media_url)); }
      catch (e) { const c = checks.get(s.sequence); c.media = [String(e)]; setCell(s.sequence, "browser", false, "cannot check"); }
    }
    const problems = [];
    for (const s of segs) {
      const c = checks.get(s.sequence);
      [...(await c.manifest).problems, ...(c.media || [])].forEach((p) => problems.push(`segment ${s.sequence}: ${p}`));
    }
    state.browser = { ok: problems.length === 0, problems };
    badge("browser-badge", state.browser.ok, state.browser.ok ? "valid" : "FAILED");
    reasons("browser-reasons", problems.map((p) => `browser: ${p}`));
    compare();
  }

  function compare() {
    if (!state.server || !state.browser) return;
    const disagree = state.server.ok !== state.browser.ok ||
      segs.some((s) => {
        const srv = state.server.segments.find((x) => x.sequence === s.sequence);
        const mine = rowOf(s.sequence)?.querySelector("td.browser")?.classList.contains("good");
        return srv && mine !== undefined && srv.ok !== mine;
      });
    state.disagree = disagree;
    $("alarm").hidden = !disagree;
  }

  async function serverCheck() {
    try {
      const r = await fetch(data.integrity_url, { credentials: "same-origin" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const doc = await r.json();
      state.server = doc;
      badge("server-badge", doc.ok, doc.ok ? "valid" : "FAILED");
      reasons("server-reasons", doc.errors.map((e) => `server: ${e}`));
      for (const s of doc.segments) {
        setCell(s.sequence, "server", s.ok, s.ok ? "valid" : "FAILED");
        setCell(s.sequence, "receipt", s.receipt, s.receipt ? "signed" : "INVALID");
      }
      const facts = [
        ["certificate", doc.certificates.map((c) => `${c.key_id.slice(0, 16)}… ${c.status}, until ${c.not_after_utc}`).join("; ") || "none"],
        ["missing sequences", doc.missing_sequences.join(", ") || "none"],
        ["recovered after a power cut", doc.recovered ? "yes" : "no"],
        ["clock offset at last dock", doc.clock_offset ? `${doc.clock_offset.offset_ms} ms (${doc.clock_offset.utc})` : "not reported"],
      ];
      $("device-facts").replaceChildren(...facts.flatMap(([k, v]) => { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v; return [dt, dd]; }));
    } catch (e) {
      state.server = { ok: false, segments: [], errors: [String(e)] };
      badge("server-badge", false, "unavailable");
    }
    compare();
  }

  // --- playback: a window of segments around the playing position ---
  let ms = null;
  let sb = null;
  let pumping = false;
  const inBuffer = new Set();
  const codecOf = (bytes) => {
    for (let i = 4; i < Math.min(bytes.length - 8, 1 << 16); i++) {
      if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) {
        const h = (n) => n.toString(16).padStart(2, "0");
        return `avc1.${h(bytes[i + 5])}${h(bytes[i + 6])}${h(bytes[i + 7])}`;
      }
    }
    return "avc1.42E01E";
  };
  const settle = (fn) => new Promise((resolve, reject) => {
    sb.addEventListener("updateend", resolve, { once: true });
    sb.addEventListener("error", () => reject(new Error("the browser refused this segment")), { once: true });
    fn();
  });

  async function append(s) {
    const r = await fetch(s.media_url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const bytes = new Uint8Array(await r.arrayBuffer());
    checkMedia(s, bytes); // exactly these bytes, beside playback
    if (!sb) {
      sb = ms.addSourceBuffer(`video/mp4; codecs="${codecOf(bytes)}"`);
      sb.mode = "segments";
    }
    await settle(() => { sb.timestampOffset = s._start; sb.appendBuffer(bytes); });
    inBuffer.add(s.sequence);
    state.appended += 1;
  }

  async function evict(now) {
    const before = segs.filter((s) => inBuffer.has(s.sequence) && s._end < now - BEHIND);
    if (!before.length) return;
    const upTo = before[before.length - 1]._end;
    await settle(() => sb.remove(0, upTo));
    before.forEach((s) => inBuffer.delete(s.sequence));
    state.evicted += before.length;
  }

  async function pump() {
    // fetch what the window needs, in playing order; evict what is far behind; repeat until settled
    if (pumping || !ms || ms.readyState === "closed") return;
    pumping = true;
    try {
      for (;;) {
        const now = video.currentTime;
        const need = segs.find((s) => !inBuffer.has(s.sequence) && s._end > now && s._start <= now + AHEAD);
        if (!need) break;
        try { await append(need); } catch (e) { state.errors.push(`segment ${need.sequence}: ${e}`); inBuffer.add(need.sequence); }
      }
      if (sb) await evict(video.currentTime);
      const last = segs[segs.length - 1];
      if (last && inBuffer.has(last.sequence) && ms.readyState === "open" && !sb.updating) ms.endOfStream();
      if (!state.complete) { state.complete = true; layoutTimeline(); tick(); }
    } finally {
      pumping = false;
    }
  }

  function layoutTimeline() {
    if (!total) return;
    const tl = $("timeline");
    tl.querySelectorAll(".marker, .boundary").forEach((n) => n.remove());
    state.boundaries.forEach((b) => { const d = document.createElement("div"); d.className = "boundary"; d.style.left = `${(100 * b) / total}%`; tl.appendChild(d); });
    document.querySelectorAll("#strip img").forEach((img) => {
      const s = segs.find((x) => String(x.sequence) === img.dataset.sequence);
      if (s) { img.style.width = `${(100 * (s._end - s._start)) / total}%`; img.onclick = () => { video.currentTime = s._start; }; }
    });
    const list = $("markers");
    list.replaceChildren();
    state.markers.forEach((m, i) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "marker"; b.title = `marker ${i + 1}: ${m.utc}`;
      b.style.left = `${(100 * m.t) / total}%`;
      b.addEventListener("click", (ev) => { ev.stopPropagation(); video.currentTime = m.t; });
      tl.appendChild(b);
      const li = document.createElement("li");
      const a = document.createElement("button");
      a.type = "button"; a.className = "jump"; a.textContent = `Marker ${i + 1} at ${m.utc}${m.note ? ` (${m.note})` : ""}`;
      a.addEventListener("click", () => { video.currentTime = m.t; });
      li.appendChild(a); list.appendChild(li);
    });
  }

  const current = () => segs.find((s) => video.currentTime >= s._start && video.currentTime < s._end) || segs[segs.length - 1];
  function tick() {
    const s = current();
    $("time").textContent = `${video.currentTime.toFixed(2)} s`;
    if (total) $("played").style.width = `${Math.min(100, (100 * video.currentTime) / total)}%`;
    if (s && s._t0 !== null) {
      const ns = s._t0 + BigInt(Math.round((video.currentTime - s._start) * 1e9));
      $("manifest-utc").textContent = fmtUtc(ns);
      $("current-segment").textContent = String(s.sequence);
    }
  }
  const fps = () => (current()?.fps || 30);
  function step(n) { video.pause(); video.currentTime = Math.max(0, video.currentTime + n / fps()); }
  function speed(dir) {
    const sel = $("speed");
    sel.selectedIndex = Math.max(0, Math.min(sel.options.length - 1, sel.selectedIndex + dir));
    video.playbackRate = Number(sel.value);
  }
  function nextMarker() {
    const m = state.markers.find((x) => x.t > video.currentTime + 0.05) || state.markers[0];
    if (m) video.currentTime = m.t;
  }

  // the keyframe strip (one request per segment) waits for the first frame, so it does not queue the
  // first segment behind it on the browser's few connections (scripts/bench review: first frame)
  const loadStrip = () => document.querySelectorAll("#strip img[data-src]").forEach((img) => {
    img.src = img.dataset.src; img.removeAttribute("data-src");
  });
  if (video) {
    video.addEventListener("loadeddata", loadStrip, { once: true });
    setTimeout(loadStrip, 3000);
  } else {
    loadStrip();
  }

  if (video) {
    checkedAll = checkManifests();
    ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      ms.duration = total;
      pump().then(() => checkedAll).then(checkRest);
    }, { once: true });
    video.addEventListener("timeupdate", () => { tick(); pump(); });
    video.addEventListener("seeking", () => pump());
    video.addEventListener("seeked", tick);
    video.addEventListener("waiting", () => { state.waiting += 1; if (state.complete && !video.seeking) state.stalls += 1; });
    video.addEventListener("play", () => { $("play").textContent = "Pause"; });
    video.addEventListener("pause", () => { $("play").textContent = "Play"; });
    video.addEventListener("ended", () => { state.ended = true; });
    $("play").addEventListener("click", () => (video.paused ? video.play() : video.pause()));
    $("step-back").addEventListener("click", () => step(-1));
    $("step-fwd").addEventListener("click", () => step(1));
    $("speed").addEventListener("change", (e) => { video.playbackRate = Number(e.target.value); });
    $("timeline").addEventListener("click", (e) => {
      const rect = e.currentTarget.getBoundingClientRect();
      if (total) video.currentTime = ((e.clientX - rect.left) / rect.width) * total;
    });
    document.addEventListener("keydown", (e) => {
      if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.target instanceof HTMLTextAreaElement) return;
      const k = e.key;
      if (k === " ") { e.preventDefault(); video.paused ? video.play() : video.pause(); }
      else if (k === "ArrowLeft") video.currentTime = Math.max(0, video.currentTime - 5);
      else if (k === "ArrowRight") video.currentTime += 5;
      else if (k === ",") step(-1);
      else if (k === ".") step(1);
      else if (k === "[") speed(-1);
      else if (k === "]") speed(1);
      else if (k === "m") nextMarker();
    });
  }
  serverCheck();
})();
