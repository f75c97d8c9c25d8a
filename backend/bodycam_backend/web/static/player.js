// One player across all segments of a recording (Media Source Extensions, "sequence" mode, so each
// fMP4 segment follows the last with no gap), a timeline with markers, speed, frame step, keys; then
// the server's integrity verdict beside this browser's own (check.js), and an alarm if they disagree.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("recording-data").textContent);
  const segs = data.segment_list;
  const $ = (id) => document.getElementById(id);
  const state = { boundaries: [], starts: [], ends: [], loaded: 0, stalls: 0, waiting: 0, markers: [],
                  browser: null, server: null, errors: [] };
  window.bodycamPlayer = state;
  const video = $("video");
  const rowOf = (seq) => document.querySelector(`#segments tr[data-sequence="${seq}"]`);
  const setCell = (seq, cls, ok, text) => {
    const td = rowOf(seq)?.querySelector(`td.${cls}`);
    if (td) { td.textContent = text; td.className = `${cls} ${ok ? "good" : "bad"}`; }
  };
  const badge = (id, ok, text) => { const b = $(id); b.textContent = text; b.className = `badge ${ok ? "good" : "bad"}`; };
  const reasons = (id, list) => { const ul = $(id); ul.replaceChildren(...list.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; })); };

  function codecOf(bytes) {
    // avc1.PPCCLL from the avcC box of the init segment
    for (let i = 4; i < Math.min(bytes.length - 8, 1 << 16); i++) {
      if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) {
        const h = (n) => n.toString(16).padStart(2, "0");
        return `avc1.${h(bytes[i + 5])}${h(bytes[i + 6])}${h(bytes[i + 7])}`;
      }
    }
    return "avc1.42E01E";
  }
  const appendTo = (sb, bytes) => new Promise((resolve, reject) => {
    sb.addEventListener("updateend", resolve, { once: true });
    sb.addEventListener("error", () => reject(new Error("the browser could not append this segment")), { once: true });
    sb.appendBuffer(bytes);
  });
  const fmtUtc = (ns) => new Date(Number(ns / 1000000n)).toISOString();

  // --- the browser's own check, segment by segment, as the bytes arrive ---
  async function browserCheck(results) {
    const problems = [];
    for (let i = 0; i < segs.length; i++) {
      const r = await results[i];
      if (r.error) { problems.push(`segment ${segs[i].sequence}: ${r.error}`); setCell(segs[i].sequence, "browser", false, "cannot check"); continue; }
      r.problems.forEach((p) => problems.push(`segment ${segs[i].sequence}: ${p}`));
      setCell(segs[i].sequence, "browser", r.ok, r.ok ? "valid" : "FAILED");
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
      const dl = $("device-facts");
      const facts = [
        ["certificate", doc.certificates.map((c) => `${c.key_id.slice(0, 16)}… ${c.status}, until ${c.not_after_utc}`).join("; ") || "none"],
        ["missing sequences", doc.missing_sequences.join(", ") || "none"],
        ["recovered after a power cut", doc.recovered ? "yes" : "no"],
        ["clock offset at last dock", doc.clock_offset ? `${doc.clock_offset.offset_ms} ms (${doc.clock_offset.utc})` : "not reported"],
      ];
      dl.replaceChildren(...facts.flatMap(([k, v]) => { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v; return [dt, dd]; }));
    } catch (e) {
      state.server = { ok: false, segments: [], errors: [String(e)] };
      badge("server-badge", false, "unavailable");
    }
    compare();
  }

  // --- playback ---
  function layoutTimeline() {
    const total = state.ends.length ? state.ends[state.ends.length - 1] : 0;
    if (!total) return;
    const tl = $("timeline");
    tl.querySelectorAll(".marker, .boundary").forEach((n) => n.remove());
    state.boundaries.forEach((t) => { const d = document.createElement("div"); d.className = "boundary"; d.style.left = `${(100 * t) / total}%`; tl.appendChild(d); });
    const list = $("markers");
    list.replaceChildren();
    state.markers.forEach((m, i) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "marker"; b.title = `marker ${i + 1}: ${m.utc}`;
      b.style.left = `${(100 * m.t) / total}%`;
      b.dataset.time = m.t;
      b.addEventListener("click", (ev) => { ev.stopPropagation(); video.currentTime = m.t; });
      tl.appendChild(b);
      const li = document.createElement("li");
      const a = document.createElement("button");
      a.type = "button"; a.className = "jump"; a.textContent = `Marker ${i + 1} at ${m.utc}${m.note ? ` (${m.note})` : ""}`;
      a.addEventListener("click", () => { video.currentTime = m.t; });
      li.appendChild(a); list.appendChild(li);
    });
  }

  async function load() {
    const ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    await new Promise((r) => ms.addEventListener("sourceopen", r, { once: true }));
    let sb = null;
    const checks = [];
    let resolveCheck = [];
    segs.forEach(() => checks.push(new Promise((r) => resolveCheck.push(r))));
    const checking = browserCheck(checks);
    let prevHash = null;
    try { prevHash = await BodycamCheck.previousManifestHash(data.previous_manifest_url); } catch (e) { prevHash = null; }
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      let bytes;
      try {
        const r = await fetch(s.media_url, { credentials: "same-origin" });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        bytes = new Uint8Array(await r.arrayBuffer());
      } catch (e) {
        state.errors.push(`segment ${s.sequence}: ${e}`);
        resolveCheck[i]({ error: String(e) });
        prevHash = null;
        continue;
      }
      // check exactly these bytes, in parallel with playback
      resolveCheck[i](BodycamCheck.segment(s, bytes, prevHash).catch((e) => ({ error: String(e) })));
      try { prevHash = (await checks[i]).manifestSha256 ?? null; } catch (e) { prevHash = null; }
      if (!sb) {
        sb = ms.addSourceBuffer(`video/mp4; codecs="${codecOf(bytes)}"`);
        sb.mode = "sequence";
      }
      const start = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : 0;
      try { await appendTo(sb, bytes); } catch (e) { state.errors.push(`segment ${s.sequence}: ${e}`); continue; }
      const end = sb.buffered.end(sb.buffered.length - 1);
      if (i > 0) state.boundaries.push(start);
      state.starts.push(start); state.ends.push(end);
      const t0 = s.first_utc_ns != null ? BigInt(s.first_utc_ns) : null;
      s._start = start; s._end = end; s._t0 = t0;
      for (const m of s.markers || []) {
        if (t0 === null) continue;
        state.markers.push({ t: start + Number(BigInt(m.utc_ns) - t0) / 1e9, utc: m.utc, note: m.note || "" });
      }
      state.loaded = i + 1;
      layoutTimeline();
      tick();
    }
    if (ms.readyState === "open") ms.endOfStream();
    state.complete = true;
    await checking;
  }

  function current() {
    const t = video.currentTime;
    return segs.find((s) => s._start !== undefined && t >= s._start && t < s._end) || segs.filter((s) => s._end !== undefined).slice(-1)[0];
  }
  function tick() {
    const s = current();
    const total = state.ends.length ? state.ends[state.ends.length - 1] : 0;
    $("time").textContent = `${video.currentTime.toFixed(2)} s`;
    if (total) $("played").style.width = `${Math.min(100, (100 * video.currentTime) / total)}%`;
    if (s && s._t0 !== null && s._t0 !== undefined) {
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

  if (video) {
    video.addEventListener("timeupdate", tick);
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
      const total = state.ends.length ? state.ends[state.ends.length - 1] : 0;
      const rect = e.currentTarget.getBoundingClientRect();
      if (total) video.currentTime = ((e.clientX - rect.left) / rect.width) * total;
    });
    document.addEventListener("keydown", (e) => {
      if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
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
    load().catch((e) => { state.errors.push(String(e)); });
  }
  serverCheck();
})();
