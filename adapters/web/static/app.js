// The pai web group page. Plain DOM, no framework, no build step, nothing loaded from elsewhere.
// Rule: user text only ever reaches the page through textContent / text nodes, never as HTML markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const store = {
    get: (k) => { try { return localStorage.getItem("pai." + k); } catch (e) { return null; } },
    set: (k, v) => { try { localStorage.setItem("pai." + k, v); } catch (e) { /* private mode */ } },
  };

  const state = {
    botName: "Pai",
    me: null,           // {author_id, nickname}: who this browser's member key says we are
    maxText: 8000,
    group: null,        // {address, number, name, invite_url, join_by_number, admin, ...}
    lastId: 0,
    rendered: new Map(), // message id -> <li>
    replyTo: null,      // message object
    ws: null,
    wsRetry: 0,
    wsQueue: [],        // socket messages waiting for a connecting socket to open
    pollTimer: null,
    typingTimers: new Map(),
    lastTypingSent: 0,
    limits: { max_files: 10, max_file_bytes: 20 * 1024 * 1024 },
    tray: null,         // PaiMedia.Tray: files chosen but not sent yet
    sending: false,
    renewing: null,     // the group this page is giving new links (its own "moved" is expected)
  };
  const media = window.PaiMedia;
  const { _, ngettext } = window.PaiI18n;

  // ------------------------------------------------------------------ language

  // The page follows the browser's language (zh-* reads Chinese) unless the reader picked one with the
  // switch; the sentences come from the bot's own catalogs (/api/i18n), the same the bot speaks from.
  function chosenLanguage() {
    const picked = store.get("lang");
    if (picked === "en" || picked === "zh-CN") return picked;
    const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    return wanted.some((l) => /^zh\b/i.test(String(l))) ? "zh-CN" : "en";
  }

  async function loadLanguage() {
    const lang = chosenLanguage();
    if (lang !== "en") {
      try {
        const resp = await fetch("/api/i18n?lang=" + encodeURIComponent(lang), { credentials: "same-origin" });
        if (resp.ok) window.PaiI18n.use(await resp.json());
      } catch (e) { /* English it is */ }
    }
    document.documentElement.lang = window.PaiI18n.locale;
    translatePage();
    const sw = $("lang-switch");
    sw.textContent = window.PaiI18n.locale.startsWith("zh") ? "EN" : "中文";
  }

  // Elements marked data-i18n get their (English) text translated; {slots} are child elements kept as
  // they are (data-slot). data-i18n-attr lists attributes to translate. Text only, never markup.
  function translatePage() {
    for (const node of document.querySelectorAll("[data-i18n]")) {
      if (node._template === undefined) {
        node._slots = {};
        for (const slot of node.querySelectorAll("[data-slot]")) node._slots[slot.dataset.slot] = slot;
        node._template = node.dataset.i18n || node.textContent.replace(/\s+/g, " ").trim();
      }
      const parts = _(node._template).split(/\{(\w+)\}/);
      node.replaceChildren(...parts.map((part, i) => (i % 2 ? node._slots[part] || document.createTextNode("{" + part + "}") : document.createTextNode(part))));
    }
    for (const node of document.querySelectorAll("[data-i18n-attr]")) {
      node._attrs = node._attrs || {};
      for (const name of node.dataset.i18nAttr.split(",").map((n) => n.trim()).filter(Boolean)) {
        if (node._attrs[name] === undefined) node._attrs[name] = node.getAttribute(name) || "";
        if (node._attrs[name]) node.setAttribute(name, _(node._attrs[name]));
      }
    }
  }

  // ------------------------------------------------------------------ identity
  // Picking a nickname makes this browser a member: the server answers with a member key in an HttpOnly
  // cookie (this script never sees it) and every post is then made as that member, so nobody can post
  // under someone else's name or id. The nickname can change; the member id stays.

  const userId = () => (state.me ? state.me.author_id : "");
  const nickname = () => (state.me ? state.me.nickname : "");

  async function loadMe() {
    try {
      state.me = await api("GET", "/api/members/me");  // 204 (null): no member key yet
    } catch (e) {
      state.me = null;  // no member key yet (or it was forgotten): picking a nickname makes one
    }
    showMe();
  }

  // Becoming a member is a request: a message sent meanwhile waits for it (state.joining).
  function setNickname(value) {
    state.joining = becomeMember(value).finally(() => { state.joining = null; });
    return state.joining;
  }

  async function becomeMember(value) {
    const nick = value.replace(/\s+/g, " ").trim().slice(0, 40);
    if (!nick) return false;
    if (nick.toLowerCase() === state.botName.toLowerCase()) {
      toast(_("“{nick}” is the AI's name — please pick another one.", { nick }));
      return false;
    }
    const joining = !state.me;
    try {
      if (!state.me) state.me = await api("POST", "/api/members", { nickname: nick });
      else if (state.me.nickname !== nick) state.me = await api("PATCH", "/api/members/me", { nickname: nick });
    } catch (e) {
      toast(e.message);
      return false;
    }
    state.me = { author_id: state.me.author_id, nickname: state.me.nickname };
    showMe();
    if (joining && state.ws) {  // the socket opened before the member cookie existed: open it again as her
      const old = state.ws;
      state.ws = null;
      old.close();
      connect();
    }
    return true;
  }

  function nonce() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, _("Cannot reach the server. Is paibot running?"));
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) throw refusal(resp.status, data);
    return data;
  }

  // The error for a refused request. A 401 says what it needs: the server's access token (its screen), or
  // a member key: this browser's was signed out from another one, so it picks a nickname or signs in again.
  function refusal(status, data) {
    if (status === 401 && data && data.need === "member") {
      const wasMember = !!state.me;
      state.me = null;
      showMe();
      if (state.group) askNickname(state.group.name);
      return new ApiError(401, wasMember
        ? _("This browser is no longer signed in (it was signed out from another one). Pick a nickname, or ask the bot for a new sign-in link with /signin.")
        : _("Choose how the group will see you."));
    }
    if (status === 401) showScreen("token");
    return new ApiError(status, (data && data.error) || _("The server said {status}.", { status }));
  }

  // ------------------------------------------------------------------ small UI helpers

  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function initials(name) {
    const parts = name.trim().split(/\s+/);
    const first = Array.from(parts[0] || "?")[0] || "?";
    const second = parts.length > 1 ? Array.from(parts[1])[0] || "" : "";
    return (first + second).toUpperCase();
  }

  function hue(text) {
    let h = 0;
    for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function avatar(node, name, id, isBot) {
    node.textContent = isBot ? "AI" : initials(name);
    node.style.background = isBot ? "" : `hsl(${hue(id)}, 55%, 52%)`;
    if (isBot) node.classList.add("bot");
  }

  function showScreen(name) {
    for (const s of ["home", "chat", "token"]) $(s + "-screen").hidden = s !== name;
    $("group-head").hidden = name !== "chat";
    document.body.dataset.screen = name;
  }

  function showMe() {
    const nick = nickname();
    $("me").hidden = !nick;
    if (nick) {
      $("me-name").textContent = nick;
      avatar($("me-avatar"), nick, userId(), false);
      $("nick-input").value = nick;
    }
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast(_("Invite link copied."));
    } catch (e) {
      toast(_("Copy this link: {link}", { link: text }));
    }
  }

  // The groups this browser opened lately, newest first (kept in the browser's storage).
  function recentGroups() {
    try { return JSON.parse(store.get("recent") || "[]"); } catch (e) { return []; }
  }

  function rememberGroup(group) {
    const recent = recentGroups().filter((g) => g && g.number !== group.number);
    recent.unshift({ address: group.address, number: group.number, name: group.name });
    store.set("recent", JSON.stringify(recent.slice(0, 8)));
  }

  function forgetRecent(number) {
    store.set("recent", JSON.stringify(recentGroups().filter((g) => g && g.number !== number)));
  }

  function renderRecent() {
    const recent = recentGroups();
    const list = $("recent-list");
    list.replaceChildren();
    for (const g of recent) {
      if (!g || !/^\d+$/.test(String(g.number))) continue;
      const li = el("li");
      const a = el("a", "recent-item");
      // Groups remembered before they had addresses open by number (where the group still allows it).
      a.href = "/g/" + (ADDRESS_RE.test(String(g.address || "")) ? g.address : g.number);
      a.append(el("span", "recent-name", String(g.name || _("Group"))), el("span", "recent-number", "#" + g.number));
      li.append(a);
      list.append(li);
    }
    $("recent").hidden = list.children.length === 0;
  }

  // ------------------------------------------------------------------ messages

  // One time format, the bot's own: "13:44" today, "2026-12-03 13:44" on other days (24-hour, local time).
  const formatTime = (iso) => media.formatTime(iso);

  // Text with links made clickable and @mentions of the bot highlighted; built from text nodes only.
  // A link to a message of this group (what the bot cites) jumps to it and highlights it.
  const ADDRESS_RE = /^[A-Za-z0-9_-]{22,64}$/;
  const URL_RE = /https?:\/\/[^\s<>"'()（）【】，。！？、]+/g;
  function fillText(node, text) {
    node.replaceChildren();
    let last = 0;
    for (const m of text.matchAll(URL_RE)) {
      const url = m[0].replace(/[.,;:!?]+$/, "");
      if (m.index > last) appendMentions(node, text.slice(last, m.index));
      node.append(linkNode(url));
      last = m.index + url.length;
    }
    if (last < text.length) appendMentions(node, text.slice(last));
  }

  function appendMentions(node, text) {
    const pattern = new RegExp("(?<![\\w@])@" + state.botName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?![\\w])", "gi");
    let last = 0;
    for (const m of text.matchAll(pattern)) {
      if (m.index > last) node.append(document.createTextNode(text.slice(last, m.index)));
      node.append(el("span", "mention", m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) node.append(document.createTextNode(text.slice(last)));
  }

  function linkNode(url) {
    const a = el("a", "link", url);
    let target = null;
    try { target = new URL(url); } catch (e) { return document.createTextNode(url); }
    if (!/^https?:$/.test(target.protocol)) return document.createTextNode(url);
    const here = target.origin === location.origin && state.group && target.pathname === "/g/" + state.group.address;
    const cited = here && /^#m(\d+)$/.exec(target.hash);
    a.href = target.href;
    if (cited) {
      a.classList.add("citation");
      a.addEventListener("click", (ev) => { ev.preventDefault(); ev.stopPropagation(); jumpTo(cited[1]); });
    } else {
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
      a.addEventListener("click", (ev) => ev.stopPropagation());
    }
    return a;
  }

  function jumpTo(id) {
    const target = state.rendered.get(String(id));
    if (!target) { toast(_("That message is older than what this page has loaded.")); return; }
    target.scrollIntoView({ block: "center", behavior: "smooth" });
    flash(target);
  }

  function messageNode(m) {
    const mine = !m.is_bot && Boolean(userId()) && m.author_id === userId();
    const li = el("li", "msg" + (m.is_bot ? " from-bot" : "") + (mine ? " mine" : ""));
    li.id = "m" + m.id;
    li.dataset.id = m.id;
    li.tabIndex = 0;
    li.title = _("Click to reply");
    const av = el("div", "avatar");
    avatar(av, m.author_name || m.author || "?", m.author_id || m.author || "?", m.is_bot);
    const bubble = el("div", "bubble");
    const meta = el("div", "meta");
    meta.append(el("span", "author", m.author_name || m.author));
    if (m.is_bot) meta.append(el("span", "badge", _("AI member")));
    meta.append(el("time", "time", formatTime(m.sent_at)));
    bubble.append(meta);
    if (m.reply_to) {
      const q = el("div", "quote" + (m.reply_to.is_bot ? " quote-bot" : "") + (m.reply_to.removed ? " removed" : ""));
      if (!m.reply_to.removed && typeof m.reply_to.image === "string" && /^\/api\/files\/[A-Za-z0-9_-]{16,64}$/.test(m.reply_to.image)) {
        const img = el("img", "quote-thumb");  // a reply to a photo shows the photo
        img.src = m.reply_to.image;
        img.alt = "";
        img.loading = "lazy";
        q.append(img);
      }
      const words = el("span", "quote-words");
      if (m.reply_to.removed) words.append(el("i", null, _("message removed")));
      else words.append(el("b", null, m.reply_to.author), document.createTextNode(" " + (m.reply_to.text || (m.reply_to.image ? _("Photo") : ""))));
      q.append(words);
      q.addEventListener("click", (ev) => { ev.stopPropagation(); jumpTo(m.reply_to.id); });
      bubble.append(q);
    }
    const hasPoll = Boolean(m.poll && Array.isArray(m.poll.options));
    if (m.removed) {
      li.classList.add("removed");
      bubble.append(el("div", "text removed-text", _("message removed")));
    } else if (m.text && m.text.trim() && !hasPoll) {
      const body = el("div", "text");
      fillText(body, m.text);
      bubble.append(body);
    }
    if (Array.isArray(m.files) && m.files.length) bubble.append(media.filesNode(m.files));
    if (hasPoll) bubble.append(media.pollNode(m, castVote, myVote(m)));
    if (m.edited) meta.append(el("span", "edited", _("edited")));
    emit("message", { node: bubble, message: m });
    li.append(av, bubble);
    li.addEventListener("click", () => startReply(m));
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") startReply(m); });
    li._message = m;
    return li;
  }

  function flash(node) {
    node.classList.remove("flash");
    void node.offsetWidth;
    node.classList.add("flash");
  }

  // Whether the reader is at the end of the conversation: then new messages and answers growing while
  // they stream keep the view pinned to the bottom; a reader scrolled up to read is left alone.
  function atBottom() {
    const box = $("messages");
    return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  }

  function addMessages(list) {
    const box = $("messages");
    const nearBottom = atBottom();
    let added = false;
    for (const m of list) {
      const key = String(m.id);
      if (state.rendered.has(key)) continue;
      const node = messageNode(m);
      state.rendered.set(key, node);
      // Keep id order even when a live push and a catch-up fetch race each other.
      let before = null;
      for (const other of box.children) {
        if (Number(other.dataset.id) > m.id) { before = other; break; }
      }
      box.insertBefore(node, before);
      state.lastId = Math.max(state.lastId, m.id);
      clearTyping(m.is_bot ? state.botName : String(m.author_name || m.author));  // the message is here
      added = true;
    }
    $("empty").hidden = state.rendered.size > 0;
    if (added && (nearBottom || list.some((m) => m.author_id === userId()))) {
      box.scrollTop = box.scrollHeight;
    }
  }

  function replaceMessage(m) {
    const old = state.rendered.get(String(m.id));
    if (!old) return;
    const pinned = atBottom();
    const node = messageNode(m);
    old.replaceWith(node);
    state.rendered.set(String(m.id), node);
    if (pinned) $("messages").scrollTop = $("messages").scrollHeight;
  }

  function startReply(m) {
    if (m.removed) return;
    state.replyTo = m;
    $("reply-author").textContent = m.author_name || m.author;
    $("reply-text").textContent = summary(m);
    $("reply-bar").hidden = false;
    $("text").focus();
  }

  // A message in one line: its text, or its files when it has no text.
  function summary(m) {
    const text = (m.text || "").trim();
    if (text) return text.length > 120 ? text.slice(0, 120) + "…" : text;
    const files = Array.isArray(m.files) ? m.files : [];
    return files.length ? "📎 " + files.map((f) => String(f.name)).join(", ") : "";
  }

  // ------------------------------------------------------------------ polls

  const voteKey = (m) => `vote.${m.group}.${m.id}`;
  function myVote(m) { return Number(store.get(voteKey(m))) || 0; }

  // A vote is an ordinary reply to the poll message ("vote 2"): the reply is what the bot counts.
  async function castVote(m, n, text) {
    if (!state.group) return false;
    if (!nickname()) { askNickname(state.group.name); return false; }
    // Remembered before it is sent: the tally's edit may redraw the poll before the request returns.
    const before = store.get(voteKey(m));
    store.set(voteKey(m), String(n));
    try {
      const body = { text, reply_to: m.id, nonce: nonce() };
      const msg = await api("POST", `/api/groups/${state.group.address}/messages`, body);
      addMessages([msg]);
      return true;
    } catch (e) {
      store.set(voteKey(m), before || "");
      toast(e.message);
      return false;
    }
  }

  function cancelReply() {
    state.replyTo = null;
    $("reply-bar").hidden = true;
  }

  // ------------------------------------------------------------------ typing indicator

  function showTyping(name) {
    clearTimeout(state.typingTimers.get(name));
    state.typingTimers.set(name, setTimeout(() => clearTyping(name), 6000));
    renderTyping();
  }

  function clearTyping(name) {
    clearTimeout(state.typingTimers.get(name));
    state.typingTimers.delete(name);
    renderTyping();
  }

  function renderTyping() {
    const names = Array.from(state.typingTimers.keys());
    const box = $("typing");
    box.replaceChildren();
    if (!names.length) return;
    const dots = el("span", "dots");
    dots.append(el("i"), el("i"), el("i"));
    const who = names.length === 1 ? names[0] : _("{names} and {last}", { names: names.slice(0, -1).join(_(", ")), last: names[names.length - 1] });
    box.append(dots, el("span", null, ngettext("{who} is typing…", "{who} are typing…", names.length, { who })));
  }

  // ------------------------------------------------------------------ live connection

  async function catchUp() {
    if (!state.group) return;
    let more = true;
    while (more && state.group) {
      const group = state.group;
      const address = group.address;
      let data;
      try {
        data = await api("GET", `/api/groups/${address}/messages?after=${state.lastId}&limit=200`);
      } catch (e) {
        if (e.status === 404) return groupMoved(group);  // the address stopped working while away
        throw e;
      }
      if (!state.group || state.group.address !== address) return;
      addMessages(data.messages);
      more = data.has_more && data.messages.length > 0;
    }
  }

  function connect() {
    if (!state.group) return;
    const address = state.group.address;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(`${scheme}${location.host}/api/groups/${address}/ws`);
    state.ws = ws;
    ws.addEventListener("open", () => {
      state.wsRetry = 0;
      // What was asked while the socket was still connecting (a Play pressed right after joining) goes now.
      for (const data of state.wsQueue.splice(0)) ws.send(JSON.stringify(data));
      document.body.classList.remove("offline");
      emit("connected", state.group);
      catchUp().catch((e) => toast(e.message));
    });
    ws.addEventListener("message", (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (data.type === "message" && data.message) addMessages([data.message]);
      else if (data.type === "edit" && data.message) replaceMessage(data.message);
      else if (data.type === "typing" && typeof data.name === "string") showTyping(data.name);
      else if (data.type === "moved") groupMoved(state.group);
      else emit("socket", data);
    });
    ws.addEventListener("close", () => {
      if (state.ws !== ws) return;
      state.ws = null;
      document.body.classList.add("offline");
      const delay = Math.min(15000, 1000 * 2 ** state.wsRetry) * (0.7 + Math.random() * 0.6);
      state.wsRetry = Math.min(state.wsRetry + 1, 5);
      setTimeout(() => { if (state.group && state.group.address === address && !state.ws) connect(); }, delay);
    });
  }

  function sendTyping() {
    const now = Date.now();
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN || now - state.lastTypingSent < 3000) return;
    state.lastTypingSent = now;
    state.ws.send(JSON.stringify({ type: "typing", name: nickname() }));
  }

  // ------------------------------------------------------------------ screens

  async function openGroup(group, { fresh = false } = {}) {
    leaveGroup();
    state.group = group;
    rememberGroup(group);
    if (location.pathname !== "/g/" + group.address) history.pushState({}, "", "/g/" + group.address);
    document.title = `${group.name} · pai`;
    $("lang-switch").hidden = true;
    $("group-name").textContent = group.name;
    $("group-number").textContent = group.number;
    $("banner-link").textContent = group.invite_url;
    $("invite-banner").hidden = !fresh;
    showNumberJoining(group);
    showScreen("chat");
    emit("open", group);
    if (!nickname()) askNickname(group.name);
    try {
      const data = await api("GET", `/api/groups/${group.address}/messages?limit=200`);
      addMessages(data.messages);
    } catch (e) {
      toast(e.message);
    }
    connect();
    clearInterval(state.pollTimer);
    // Safety net when the socket is down (proxies that drop WebSockets): poll now and then.
    state.pollTimer = setInterval(() => { if (!state.ws || state.ws.readyState !== WebSocket.OPEN) catchUp().catch(() => {}); }, 8000);
    // Not while the nickname dialog is open: what the member is typing there would land in the composer.
    if ($("nick-modal").hidden) $("text").focus();
  }

  // A group's admins decide whether its number lets people in (off for new groups: only links do).
  function showNumberJoining(group) {
    $("number-toggle").hidden = !group.admin;
    $("new-links").hidden = !group.admin;
    $("number-joining").checked = !!group.join_by_number;
  }

  // An admin gives the group a new address and invite link when one went where it should not: the old
  // ones stop working for everyone, open pages included; this page moves to the new address.
  async function onNewLinks() {
    const group = state.group;
    if (!group || !confirm(_("Make new links for this group? Its current address and invite link stop working for everyone, and open pages are disconnected. Share the new invite link with the people who should stay."))) return;
    const button = $("new-links");
    button.disabled = true;
    state.renewing = group;  // this page's own socket is told "moved" before the answer arrives
    try {
      const changed = await api("PATCH", "/api/groups/" + group.address, { new_links: true });
      if (state.group !== group) return;
      history.replaceState({}, "", "/g/" + changed.address);
      await openGroup(changed, { fresh: true });
      toast(changed.join_by_number
        ? _("New links made. The number {number} still lets people join: turn Join by number off if it should not.", { number: changed.number })
        : _("New links made: the old address and invite link no longer work."));
    } catch (e) {
      toast(e.message);
    } finally {
      state.renewing = null;
      button.disabled = false;
    }
  }

  // This page's address stopped working (an admin made new links): say so, forget it, go home.
  function groupMoved(group) {
    if (!state.group || state.group !== group || state.renewing === group) return;
    forgetRecent(group.number);
    history.replaceState({}, "", "/");
    goHome();
    toast(_("An admin made new links for this group: this address no longer works. Ask a member for the new invite link."));
  }

  async function onNumberJoining() {
    const box = $("number-joining");
    const group = state.group;
    if (!group) return;
    box.disabled = true;
    try {
      const changed = await api("PATCH", "/api/groups/" + group.address, { join_by_number: box.checked });
      if (state.group === group) state.group = Object.assign(group, changed);
      toast(changed.join_by_number
        ? _("Anyone who knows the number {number} can join now.", { number: changed.number })
        : _("The number no longer lets people join: share the invite link."));
    } catch (e) {
      box.checked = !box.checked;
      toast(e.message);
    } finally {
      box.disabled = false;
    }
  }

  function leaveGroup() {
    if (state.group) emit("leave", state.group);
    const ws = state.ws;
    state.ws = null;
    state.wsQueue.length = 0;
    if (ws) ws.close();
    clearInterval(state.pollTimer);
    state.group = null;
    state.lastId = 0;
    state.rendered.clear();
    $("messages").replaceChildren();
    for (const name of Array.from(state.typingTimers.keys())) clearTyping(name);
    cancelReply();
    if (state.tray) state.tray.clear();
  }

  function askNickname(groupName) {
    $("nick-modal-text").textContent = groupName
      ? _("Choose how the people in “{group}” will see you.", { group: groupName })
      : _("Choose how the group will see you.");
    $("nick-modal-input").value = nickname();
    $("sign-out-others").hidden = !state.me;
    $("nick-modal").hidden = false;
    $("nick-modal-input").focus();
  }

  // Browsers signed in as this member by other links keep their own keys until she signs them out here.
  async function onSignOutOthers() {
    const button = $("sign-out-others");
    button.disabled = true;
    try {
      const done = await api("DELETE", "/api/members/me/keys");
      toast(done.signed_out
        ? ngettext("{n} other browser signed out.", "{n} other browsers signed out.", done.signed_out)
        : _("No other browser was signed in as you."));
    } catch (e) {
      toast(e.message);
    } finally {
      button.disabled = false;
    }
  }

  function goHome() {
    leaveGroup();
    document.title = _("pai · group chat");
    $("lang-switch").hidden = false;
    showScreen("home");
    renderRecent();
  }

  // A group joinable by number: where it lives (its address), then the group itself.
  async function groupByNumber(number) {
    const found = await api("GET", "/api/numbers/" + encodeURIComponent(number));
    return api("GET", "/api/groups/" + found.address);
  }

  async function route() {
    const path = location.pathname;
    let m;
    try {
      if ((m = path.match(/^\/g\/([A-Za-z0-9_-]{22,64})\/?$/))) {
        await openGroup(await api("GET", "/api/groups/" + m[1]));
      } else if ((m = path.match(/^\/g\/(\d{6})\/?$/))) {  // an address from before groups had addresses
        const group = await groupByNumber(m[1]);
        history.replaceState({}, "", "/g/" + group.address);
        await openGroup(group);
      } else if ((m = path.match(/^\/join\/([A-Za-z0-9_-]+)\/?$/))) {
        const group = await api("GET", "/api/invites/" + m[1]);
        history.replaceState({}, "", "/g/" + group.address);
        await openGroup(group);
      } else {
        goHome();
      }
    } catch (e) {
      if (e.status === 401) return;
      goHome();
      toast(e.message);
    }
  }

  function parseJoin(value) {
    const text = value.trim();
    let m = text.match(/\/join\/([A-Za-z0-9_-]+)/);
    if (m) return { invite: m[1] };
    m = text.match(/\/g\/([A-Za-z0-9_-]{22,64})/);
    if (m) return { address: m[1] };
    m = text.match(/\/g\/(\d+)/) || text.replace(/[\s#-]/g, "").match(/^(\d{4,10})$/);
    if (m) return { number: m[1] };
    if (/^[A-Za-z0-9_-]{8,64}$/.test(text)) return { invite: text };
    return null;
  }

  // ------------------------------------------------------------------ wiring

  function wire() {
    $("home-link").addEventListener("click", (ev) => { ev.preventDefault(); history.pushState({}, "", "/"); goHome(); });
    $("change-nick").addEventListener("click", () => askNickname(state.group && state.group.name));
    $("nick-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (await setNickname($("nick-input").value)) toast(_("Nickname saved."));
    });
    $("nick-modal-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (await setNickname($("nick-modal-input").value)) {
        $("nick-modal").hidden = true;
        // Messages drawn before we knew who we are: mark ours.
        for (const node of Array.from(state.rendered.values())) replaceMessage(node._message);
        $("text").focus();
      }
    });
    $("create-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      // The member creating a group is its admin: make sure we are one before creating it.
      if (!nickname() && !(await setNickname($("nick-input").value))) { toast(_("Pick a nickname first.")); $("nick-input").focus(); return; }
      $("create-button").disabled = true;
      try {
        const group = await api("POST", "/api/groups", { name: $("create-name").value });
        $("create-name").value = "";
        await openGroup(group, { fresh: true });
      } catch (e) {
        toast(e.message);
      } finally {
        $("create-button").disabled = false;
      }
    });
    $("join-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!nickname() && !(await setNickname($("nick-input").value))) { toast(_("Pick a nickname first.")); $("nick-input").focus(); return; }
      const target = parseJoin($("join-input").value);
      if (!target) { toast(_("That is neither a group number nor an invite link.")); return; }
      try {
        const group = target.invite ? await api("GET", "/api/invites/" + target.invite)
          : target.address ? await api("GET", "/api/groups/" + target.address)
          : await groupByNumber(target.number);
        $("join-input").value = "";
        await openGroup(group);
      } catch (e) {
        toast(e.status === 404 && target.number
          ? _("No group lets people join with that number. Ask its members for the invite link.")
          : e.status === 404 ? _("No group found with that number or link.") : e.message);
      }
    });
    $("invite-button").addEventListener("click", () => state.group && copy(state.group.invite_url));
    $("banner-copy").addEventListener("click", () => state.group && copy(state.group.invite_url));
    $("banner-close").addEventListener("click", () => { $("invite-banner").hidden = true; });
    $("number-joining").addEventListener("change", onNumberJoining);
    $("new-links").addEventListener("click", onNewLinks);
    $("sign-out-others").addEventListener("click", onSignOutOthers);
    $("reply-cancel").addEventListener("click", cancelReply);
    $("lang-switch").addEventListener("click", () => {
      store.set("lang", window.PaiI18n.locale.startsWith("zh") ? "en" : "zh-CN");
      location.reload();
    });
    const text = $("text");
    text.addEventListener("input", () => {
      text.style.height = "auto";
      text.style.height = Math.min(text.scrollHeight, 160) + "px";
      sendTyping();
    });
    text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $("composer").requestSubmit(); }
      if (ev.key === "Escape") cancelReply();
    });
    $("composer").addEventListener("submit", onSend);
    wireFiles();
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const url = new URL(location.href);
      url.searchParams.set("token", $("token-input").value);
      location.href = url.toString();
    });
    window.addEventListener("popstate", route);
  }

  function wireFiles() {
    state.tray = new media.Tray($("tray"), state.limits, toast);
    const input = $("file-input");
    $("attach-button").addEventListener("click", () => input.click());
    input.addEventListener("change", () => { state.tray.add(input.files); input.value = ""; $("text").focus(); });
    $("text").addEventListener("paste", (ev) => {
      const files = ev.clipboardData ? Array.from(ev.clipboardData.files || []) : [];
      if (!files.length) return;
      ev.preventDefault();
      state.tray.add(files.map(namePasted));
    });
    const chat = $("chat-screen");
    let depth = 0;
    const hasFiles = (ev) => ev.dataTransfer && Array.from(ev.dataTransfer.types || []).includes("Files");
    chat.addEventListener("dragenter", (ev) => { if (!hasFiles(ev)) return; ev.preventDefault(); depth++; chat.classList.add("dropping"); });
    chat.addEventListener("dragover", (ev) => { if (hasFiles(ev)) ev.preventDefault(); });
    chat.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) chat.classList.remove("dropping"); });
    chat.addEventListener("drop", (ev) => {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      depth = 0;
      chat.classList.remove("dropping");
      state.tray.add(ev.dataTransfer.files);
    });
    $("viewer-close").addEventListener("click", media.closeViewer);
    $("viewer").addEventListener("click", (ev) => { if (ev.target === $("viewer")) media.closeViewer(); });
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") media.closeViewer(); });
  }

  // Screenshots pasted from the clipboard are all called "image.png": give them a name worth keeping.
  function namePasted(file, i) {
    if (file.name && file.name !== "image.png") return file;
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    const ext = (file.type.split("/")[1] || "png").replace("jpeg", "jpg");
    return new File([file], `pasted-${stamp}${i ? "-" + i : ""}.${ext}`, { type: file.type });
  }

  function setProgress(fraction) {
    const bar = $("upload-progress");
    if (fraction === null) { bar.hidden = true; return; }
    bar.hidden = false;
    const pct = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
    $("upload-bar").style.width = pct + "%";
    $("upload-label").textContent = pct < 100 ? _("Uploading… {pct}%", { pct }) : _("Saving…");
  }

  // One attempt at posting; resolves the stored message or throws ApiError (status 0: network).
  async function postOnce(body, files) {
    const path = `/api/groups/${state.group.address}/messages`;
    if (!files.length) return api("POST", path, body);
    const form = new FormData();
    for (const [k, v] of Object.entries(body)) form.append(k, String(v));
    for (const f of files) form.append("file", f, f.name || "file");
    setProgress(0);
    let resp;
    try {
      resp = await media.upload(path, form, setProgress);
    } catch (e) {
      throw new ApiError(0, _("Cannot reach the server. Is paibot running?"));
    }
    if (resp.status < 200 || resp.status >= 300) throw refusal(resp.status, resp.data);
    return resp.data;
  }

  async function onSend(ev) {
    ev.preventDefault();
    const box = $("text");
    const value = box.value.trim();
    const files = state.tray ? state.tray.files : [];
    if ((!value && !files.length) || !state.group || state.sending) return;
    if (state.joining) await state.joining;
    if (!nickname()) { askNickname(state.group.name); return; }
    if (value.length > state.maxText) { toast(_("Messages can be at most {max} characters.", { max: state.maxText })); return; }
    const body = { text: value, nonce: nonce() };
    if (state.replyTo) body.reply_to = state.replyTo.id;
    state.sending = true;
    $("send-button").disabled = true;
    $("composer").classList.add("pending");
    // Retry with the same nonce on a network failure: the server stores it (and its files) at most once.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const msg = await postOnce(body, files);
        addMessages([msg]);
        box.value = "";
        box.style.height = "auto";
        cancelReply();
        if (files.length) state.tray.clear();
        break;
      } catch (e) {
        if (e.status !== 0 && e.status < 500) { toast(e.message); break; }
        if (attempt === 2) toast(e.message + " " + _("Your message was not sent."));
        await new Promise((r) => setTimeout(r, 800 * (attempt + 1)));
      }
    }
    setProgress(null);
    $("composer").classList.remove("pending");
    state.sending = false;
    $("send-button").disabled = false;
    if ($("nick-modal").hidden) box.focus();  // not while the nickname dialog asks (a signed-out browser)
  }

  // ------------------------------------------------------------------ what other scripts of the page use

  // Other parts of the page (watch.js) hear about the group through "pai:<name>" events on window and
  // act through window.PaiApp; app.js knows nothing about them.
  function emit(name, detail) {
    window.dispatchEvent(new CustomEvent("pai:" + name, { detail }));
  }

  window.PaiApp = {
    userId,
    nickname,
    toast,
    api,
    get group() { return state.group; },
    askNickname: () => askNickname(state.group && state.group.name),
    // Send a JSON message over the group's socket; false when it is not open. With `queue`, a message sent
    // while the socket is (re)connecting waits for it to open instead (a few at most; never stale clock pings).
    sendSocket(data, queue = false) {
      if (queue && state.ws && state.ws.readyState === WebSocket.CONNECTING) {
        if (state.wsQueue.length < 8) state.wsQueue.push(data);
        return true;
      }
      if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
      state.ws.send(JSON.stringify(data));
      return true;
    },
    // Post a message (with files, optionally as a reply) as the member; resolves the stored message.
    async post(text, files = [], replyTo = null) {
      if (!state.group) throw new ApiError(0, _("No group is open."));
      if (!nickname()) { askNickname(state.group.name); throw new ApiError(400, _("Pick a nickname first.")); }
      const body = { author: nickname(), author_id: userId(), text, nonce: nonce() };
      if (replyTo !== null) body.reply_to = replyTo;
      try {
        const msg = await postOnce(body, files);
        addMessages([msg]);
        return msg;
      } finally {
        setProgress(null);
      }
    },
  };

  async function init() {
    await loadLanguage();
    wire();
    showMe();
    try {
      const info = await api("GET", "/api/info");
      state.botName = info.bot_name;
      state.maxText = info.max_text_length;
      if (info.max_files > 0) state.limits.max_files = info.max_files;
      if (info.max_file_bytes > 0) state.limits.max_file_bytes = info.max_file_bytes;
      for (const n of document.querySelectorAll(".bot-name")) n.textContent = info.bot_name;
      $("text").placeholder = _("Message the group — type @{bot} to ask the AI", { bot: info.bot_name });
      $("text").maxLength = info.max_text_length;
    } catch (e) {
      if (e.status === 401) return;
      toast(e.message);
    }
    await loadMe();  // a page key, or the key a sign-in link the bot sent elsewhere gave this browser
    await route();
  }

  init();
})();
