// Watching together on the pai page: a player kept in sync with the group's session, its subtitles or
// lyrics, the dialog that starts a session, and "Watch together" on shared media.
//
// The server owns the session (bot/skills/watch); this player only follows it. The sync model is the same as
// bot/skills/watch/sync.py, line for line: a playback is "at server time `at` the media was at `position`,
// moving at `rate` when playing"; the page estimates its clock's offset to the server's from pings (the
// shortest round trip wins), computes where it should be, and corrects its drift by playing slightly faster
// or slower, or by seeking when it is far off.
// Rule (as in app.js): user content only ever reaches the page as text nodes or attribute values.
"use strict";

window.PaiWatch = (() => {
  // Sentences are marked with _() and ngettext() and come from the bot's catalogs, like app.js's (i18n.js).
  const { _, ngettext } = window.PaiI18n;

  // ------------------------------------------------------------------ the sync model (as sync.py)

  const SEEK_ABOVE = 0.4;
  const NUDGE_ABOVE = 0.04;
  const NUDGE_GAIN = 0.5;
  const MAX_NUDGE = 0.1;
  const OFFSET_SAMPLES = 8;

  function clamp(pb, pos) {
    pos = Math.max(0, pos);
    return pb.duration !== null && pb.duration !== undefined ? Math.min(pos, pb.duration) : pos;
  }

  function positionAt(pb, now) {
    let pos = pb.position;
    if (pb.playing) pos += Math.max(0, now - pb.at) * pb.rate;
    return clamp(pb, pos);
  }

  function correct(local, expected, baseRate, playing) {
    const drift = local - expected;
    if (!playing) return Math.abs(drift) > NUDGE_ABOVE ? { kind: "seek", rate: baseRate, position: expected } : { kind: "none", rate: baseRate };
    if (Math.abs(drift) > SEEK_ABOVE) return { kind: "seek", rate: baseRate, position: expected };
    if (Math.abs(drift) > NUDGE_ABOVE) {
      const change = Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, -drift * NUDGE_GAIN));
      return { kind: "nudge", rate: Math.round(baseRate * (1 + change) * 10000) / 10000 };
    }
    return { kind: "none", rate: baseRate };
  }

  class ClockOffset {
    constructor(keep = OFFSET_SAMPLES) { this.keep = keep; this.samples = []; }
    add(sent, server, received) {
      const rtt = received - sent;
      if (!(rtt >= 0) || ![sent, server, received].every(Number.isFinite)) return;
      this.samples.push([rtt, server - (sent + received) / 2]);
      if (this.samples.length > this.keep) this.samples.shift();
    }
    best() {
      let best = null;
      for (const s of this.samples) if (!best || s[0] < best[0] || (s[0] === best[0] && s[1] < best[1])) best = s;
      return best;
    }
    get known() { return this.samples.length > 0; }
    get offset() { const b = this.best(); return b ? b[1] : 0; }
    get errorBound() { const b = this.best(); return b ? b[0] / 2 : Infinity; }
  }

  // ------------------------------------------------------------------ state

  const TICK_MS = 250;
  const st = {
    group: null,
    view: null,       // the session as the server last showed it
    media: null,      // the <video>/<audio> element
    cues: [],         // [[start, end, text], ...]
    cueCount: -1,
    clock: new ClockOffset(),
    tick: null,
    pinger: null,
    activeCue: -1,
    lastDrift: null,
    muteNote: false,
  };
  const $ = (id) => document.getElementById(id);
  const app = () => window.PaiApp;
  const localNow = () => Date.now() / 1000;
  const serverNow = () => localNow() + st.clock.offset;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(seconds) {
    const total = Math.max(0, Math.floor(seconds || 0));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
  }

  function mayControl(view) {
    return view.control === "all" || view.starter_id === app().userId();
  }

  // ------------------------------------------------------------------ talking to the server

  function ping() {
    app().sendSocket({ type: "clock", t: localNow() });
  }

  function command(action, value) {
    const view = st.view;
    if (!view || !app()) return;
    // The duration is reported by the player itself, not by a member: never open the nickname dialog for it
    // (it would clear what the member is typing there).
    if (!app().nickname()) { if (action !== "duration") app().askNickname(); return; }
    if (action !== "duration" && action !== "control" && !mayControl(view)) {
      app().toast(_("Only {name}, who started it, controls playback.", { name: view.starter_name }));
      return;
    }
    // Queued while the socket reconnects (it does once right after joining): a Play pressed then still plays.
    const sent = app().sendSocket({
      type: "watch", action, value: value === undefined ? null : value, session: view.session,
      author_id: app().userId(), author: app().nickname(),
    }, true);
    if (!sent && action !== "duration") app().toast(_("Not connected; try again in a moment."));
  }

  async function refresh() {
    const group = st.group;
    if (!group) return;
    try {
      const data = await app().api("GET", `/api/groups/${group.address}/watch`);
      $("watch-button").hidden = data.available === false; // watching together is turned off
      if (st.group === group) show(data.watch);
    } catch (e) { /* the socket's next update brings it */ }
  }

  async function loadCues(view) {
    st.cueCount = view.cues;
    if (!view.cues) { st.cues = []; renderLyrics(); return; }
    try {
      const data = await app().api("GET", `/api/groups/${st.group.address}/watch/${encodeURIComponent(view.session)}/cues`);
      if (st.view && st.view.session === view.session) {
        st.cues = Array.isArray(data.cues) ? data.cues.filter((c) => Array.isArray(c) && c.length === 3) : [];
        st.activeCue = -1;
        renderLyrics();
      }
    } catch (e) { /* shown without lines */ }
  }

  // ------------------------------------------------------------------ showing a session

  function show(view) {
    if (!view || view.ended) {
      const was = st.view;
      close();
      if (was && view && view.ended && view.session === was.session) app().toast(_("The session has ended."));
      return;
    }
    if (st.view && st.view.session === view.session && view.seq < st.view.seq) return; // stale
    const fresh = !st.view || st.view.session !== view.session;
    st.view = view;
    if (fresh) build(view);
    if (fresh || view.cues !== st.cueCount) loadCues(view);
    renderHead();
    sync();
  }

  function build(view) {
    const box = $("watch");
    box.replaceChildren();
    const head = el("div", "watch-head");
    const titles = el("div", "watch-titles");
    titles.append(el("strong", "watch-title", view.title), el("span", "watch-sub"));
    const actions = el("div", "watch-actions");
    const mode = el("button", "ghost small watch-mode");
    mode.type = "button";
    mode.addEventListener("click", () => command("control", st.view.control === "all" ? "starter" : "all"));
    const end = el("button", "ghost small watch-end", _("End"));
    end.type = "button";
    end.addEventListener("click", () => { if (confirm(_("End the session for everyone?"))) command("end"); });
    actions.append(mode, end);
    head.append(titles, actions);

    const stage = el("div", "watch-stage " + (view.kind === "audio" ? "audio" : "video"));
    const media = document.createElement(view.kind === "audio" ? "audio" : "video");
    media.className = "watch-media";
    media.preload = "auto";
    media.playsInline = true;
    media.src = view.media_url || view.link;
    media.addEventListener("loadedmetadata", () => {
      if (st.view && st.view.playback.duration == null && Number.isFinite(media.duration) && media.duration > 0) {
        command("duration", media.duration);
      }
      sync();
    });
    media.addEventListener("error", () => app().toast(_("This media can't be played here.")));
    stage.append(media);
    if (view.kind === "audio") stage.append(el("ol", "watch-lyrics"));
    else stage.append(el("div", "watch-caption"));
    const unmute = el("button", "watch-unmute primary small", "🔇 " + _("Tap to unmute"));
    unmute.type = "button";
    unmute.hidden = true;
    unmute.addEventListener("click", () => { media.muted = false; unmute.hidden = true; });
    stage.append(unmute);

    const bar = el("div", "watch-bar");
    const play = el("button", "primary watch-play");
    play.type = "button";
    play.addEventListener("click", () => {
      const playing = st.view.playback.playing;
      command(playing ? "pause" : "play", media.currentTime);
    });
    const time = el("span", "watch-time", "0:00");
    const seek = el("input", "watch-seek");
    seek.type = "range";
    seek.min = "0";
    seek.step = "0.1";
    seek.value = "0";
    seek.addEventListener("input", () => { seek.dataset.dragging = "1"; });
    seek.addEventListener("change", () => { delete seek.dataset.dragging; command("seek", Number(seek.value)); });
    const speed = el("select", "watch-speed");
    speed.title = _("Speed");
    for (const r of [0.5, 0.75, 1, 1.25, 1.5, 2]) {
      const o = el("option", null, `${r}×`);
      o.value = String(r);
      speed.append(o);
    }
    speed.addEventListener("change", () => command("rate", Number(speed.value)));
    bar.append(play, time, seek, speed);
    box.append(head, stage, bar);
    box.hidden = false;
    document.body.classList.add("watching");
    st.media = media;
    st.muteNote = false;
    clearInterval(st.tick);
    st.tick = setInterval(sync, TICK_MS);
    const list = $("messages"); // the chat got narrower or shorter: keep its newest messages in view
    if (list) requestAnimationFrame(() => { list.scrollTop = list.scrollHeight; });
  }

  function renderHead() {
    const view = st.view;
    const box = $("watch");
    const lines = view.cues ? ngettext("{n} subtitle line", "{n} subtitle lines", view.cues) : _("No subtitles");
    const who = view.control === "all" ? _("Everyone controls") : _("Only {name} controls", { name: view.starter_name });
    const what = view.kind === "audio" ? _("Listening together") : _("Watching together");
    const starter = _("started by {name}", { name: view.starter_name });
    box.querySelector(".watch-sub").textContent = [what, starter, who, lines].join(" · ");
    const mode = box.querySelector(".watch-mode");
    mode.hidden = view.starter_id !== app().userId();
    mode.textContent = view.control === "all" ? _("Only I control") : _("Let everyone control");
    box.querySelector(".watch-end").hidden = !mayControl(view);
    const allowed = mayControl(view);
    for (const c of box.querySelectorAll(".watch-play, .watch-seek, .watch-speed")) c.disabled = !allowed;
    box.querySelector(".watch-speed").value = String(view.playback.rate);
    box.querySelector(".watch-play").textContent = view.playback.playing ? "⏸ " + _("Pause") : "▶ " + _("Play");
  }

  function close() {
    clearInterval(st.tick);
    st.tick = null;
    if (st.media) { st.media.pause(); st.media.removeAttribute("src"); st.media.load(); }
    st.media = null;
    st.view = null;
    st.cues = [];
    st.cueCount = -1;
    st.lastDrift = null;
    $("watch").replaceChildren();
    $("watch").hidden = true;
    document.body.classList.remove("watching");
  }

  // ------------------------------------------------------------------ keeping in sync

  function sync() {
    const view = st.view, media = st.media;
    if (!view || !media) return;
    const pb = view.playback;
    const expected = positionAt(pb, serverNow());
    const ended = pb.duration != null && expected >= pb.duration;
    const playing = pb.playing && !ended;
    if (media.readyState >= 1) {
      const fix = correct(media.currentTime, expected, pb.rate, playing);
      if (fix.kind === "seek") media.currentTime = fix.position;
      if (media.playbackRate !== fix.rate) media.playbackRate = fix.rate;
      st.lastDrift = media.currentTime - expected;
      if (playing && media.paused) start(media);
      if (!playing && !media.paused) media.pause();
    }
    renderTime(expected, pb.duration);
    renderCue(media.readyState >= 1 ? media.currentTime : expected);
  }

  function start(media) {
    media.play().catch((e) => {
      if (e && e.name === "NotAllowedError" && !media.muted) {
        // The browser wants a click before sound: play muted in sync, and offer to unmute.
        media.muted = true;
        document.querySelector(".watch-unmute").hidden = false;
        media.play().catch(() => {});
      }
    });
  }

  function renderTime(position, duration) {
    const box = $("watch");
    const seek = box.querySelector(".watch-seek");
    if (!seek) return;
    box.querySelector(".watch-time").textContent = duration ? `${fmt(position)} / ${fmt(duration)}` : fmt(position);
    if (duration) seek.max = String(duration);
    if (!seek.dataset.dragging) seek.value = String(position);
  }

  function cueAt(t) {
    let lo = 0, hi = st.cues.length - 1, found = -1;
    while (lo <= hi) { // the last cue starting at or before t
      const mid = (lo + hi) >> 1;
      if (st.cues[mid][0] <= t) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found >= 0 && st.cues[found][1] >= t ? found : -1;
  }

  function renderCue(t) {
    const i = cueAt(t);
    if (i === st.activeCue) return;
    st.activeCue = i;
    const caption = $("watch").querySelector(".watch-caption");
    if (caption) {
      caption.textContent = i >= 0 ? st.cues[i][2] : "";
      caption.hidden = i < 0;
    }
    const lyrics = $("watch").querySelector(".watch-lyrics");
    if (lyrics) {
      for (const li of lyrics.querySelectorAll(".now")) li.classList.remove("now");
      const li = i >= 0 ? lyrics.children[i] : null;
      if (li) {
        li.classList.add("now");
        lyrics.scrollTop = li.offsetTop - lyrics.clientHeight / 2 + li.clientHeight / 2;
      }
    }
  }

  function renderLyrics() {
    const lyrics = $("watch").querySelector(".watch-lyrics");
    st.activeCue = -1;
    if (!lyrics) return;
    lyrics.replaceChildren(...st.cues.map((c) => el("li", null, c[2])));
  }

  // ------------------------------------------------------------------ starting a session

  function openDialog() {
    if (!app() || !app().group) return;
    $("watch-form").reset();
    $("watch-modal").hidden = false;
    $("watch-media").focus();
  }

  async function submitDialog(ev) {
    ev.preventDefault();
    const media = $("watch-media").files[0];
    const subs = $("watch-subs").files[0];
    const link = $("watch-link").value.trim();
    if (!media && !link) { app().toast(_("Choose a video or audio file, or paste a link.")); return; }
    const text = ["/watch", $("watch-only-me").checked ? "only-me" : "", media ? "" : link].filter(Boolean).join(" ");
    const button = $("watch-start");
    button.disabled = true;
    button.textContent = _("Starting…");
    try {
      await app().post(text, [media, subs].filter(Boolean));
      $("watch-modal").hidden = true;
    } catch (e) {
      app().toast(e.message);
    } finally {
      button.disabled = false;
      button.textContent = _("Start watching");
    }
  }

  function decorate(node, message) {
    const files = Array.isArray(message.files) ? message.files : [];
    const playable = files.find((f) => f && (f.kind === "video" || f.kind === "audio"));
    if (!playable) return;
    const button = el("button", "secondary small watch-this", "▶ " + (playable.kind === "audio" ? _("Listen together") : _("Watch together")));
    button.type = "button";
    button.addEventListener("click", async (ev) => {
      ev.stopPropagation();
      try { await app().post("/watch", [], message.id); } catch (e) { app().toast(e.message); }
    });
    node.append(button);
  }

  // ------------------------------------------------------------------ wiring

  function wire() {
    $("watch-button").addEventListener("click", openDialog);
    $("watch-cancel").addEventListener("click", () => { $("watch-modal").hidden = true; });
    $("watch-form").addEventListener("submit", submitDialog);
    window.addEventListener("pai:open", (ev) => {
      close();
      st.group = ev.detail;
      st.clock = new ClockOffset();
    });
    window.addEventListener("pai:leave", () => { close(); st.group = null; clearInterval(st.pinger); });
    window.addEventListener("pai:connected", () => {
      // A few quick pings for a first estimate, then one now and then (clocks drift, routes change).
      for (let i = 0; i < 5; i++) setTimeout(ping, i * 150);
      clearInterval(st.pinger);
      st.pinger = setInterval(ping, 10000);
      refresh();
    });
    window.addEventListener("pai:socket", (ev) => {
      const data = ev.detail || {};
      if (data.type === "watch") show(data.watch);
      else if (data.type === "clock" && Number.isFinite(data.t) && Number.isFinite(data.server)) {
        st.clock.add(data.t, data.server, localNow());
      } else if (data.type === "watch_refused" && typeof data.error === "string") {
        // The core says why in the group's language; the socket's own refusals come as a reason.
        if (data.reason === "busy") app().toast(_("Too many player commands at once; wait a moment."));
        else if (data.reason === "invalid") app().toast(_("The player sent a command the group could not read."));
        else if (data.reason === "member") app().toast(_("Join the group with a nickname to steer the player."));
        else app().toast(data.error);
        refresh();
      }
    });
    window.addEventListener("pai:message", (ev) => decorate(ev.detail.node, ev.detail.message));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();

  // What tests and curious members can read: where this player is against where the session is.
  function status() {
    const view = st.view, media = st.media;
    if (!view || !media) return null;
    const expected = positionAt(view.playback, serverNow());
    return {
      session: view.session, position: media.currentTime, expected, drift: media.currentTime - expected,
      playing: !media.paused, rate: media.playbackRate, offset: st.clock.offset, errorBound: st.clock.errorBound,
      cue: st.activeCue >= 0 ? st.cues[st.activeCue][2] : "", readyState: media.readyState, muted: media.muted,
      serverTime: serverNow(), localTime: localNow(),
    };
  }

  return { positionAt, correct, ClockOffset, status };
})();
