// Files, images and polls on the pai page: drawing them in messages, the tray of files about to be sent,
// the image viewer, and uploads with progress. Loaded before app.js, which uses window.PaiMedia.
// Rule (as in app.js): user content only ever reaches the page as text nodes or attribute values set
// through the DOM, never as HTML markup. Files are only ever loaded from this origin (/api/files/...).
"use strict";

window.PaiMedia = (() => {
  const FILE_URL = /^\/api\/files\/[A-Za-z0-9_-]{16,64}$/;
  const { _, ngettext } = window.PaiI18n;

  // The one time format of the page, the bot's own: "13:44" today, "2026-12-03 13:44" otherwise.
  function formatTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const two = (n) => String(n).padStart(2, "0");
    const time = `${two(d.getHours())}:${two(d.getMinutes())}`;
    if (d.toDateString() === new Date().toDateString()) return time;
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${time}`;
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatSize(bytes) {
    if (!(bytes >= 0)) return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function extension(name) {
    const m = /\.([A-Za-z0-9]{1,5})$/.exec(name || "");
    return m ? m[1].toUpperCase() : "FILE";
  }

  // ------------------------------------------------------------------ the image viewer

  function openViewer(file) {
    const box = document.getElementById("viewer");
    const img = document.getElementById("viewer-img");
    img.src = file.url;
    img.alt = file.name;
    document.getElementById("viewer-name").textContent = `${file.name} · ${formatSize(file.size)}`;
    const link = document.getElementById("viewer-download");
    link.href = file.url;
    link.download = file.name;
    box.hidden = false;
    document.getElementById("viewer-close").focus();
  }

  function closeViewer() {
    const box = document.getElementById("viewer");
    if (box.hidden) return;
    box.hidden = true;
    document.getElementById("viewer-img").removeAttribute("src");
  }

  // ------------------------------------------------------------------ files in a message

  function filesNode(files) {
    const wrap = el("div", "files");
    for (const f of files) {
      if (!f || typeof f.url !== "string" || !FILE_URL.test(f.url)) continue;
      const name = String(f.name || "file");
      if (f.kind === "image") {
        const button = el("button", "thumb");
        button.type = "button";
        button.title = _("{name} — click to open", { name });
        const img = el("img");
        img.src = f.url;
        img.alt = name;
        img.loading = "lazy";
        img.decoding = "async";
        button.append(img);
        button.addEventListener("click", (ev) => { ev.stopPropagation(); openViewer({ ...f, name }); });
        wrap.append(button);
      } else {
        const a = el("a", "file-chip");
        a.href = f.url;
        a.download = name;
        a.title = _("Download {name}", { name });
        a.addEventListener("click", (ev) => ev.stopPropagation());
        const info = el("span", "file-info");
        info.append(el("span", "file-name", name), el("span", "file-size", formatSize(f.size)));
        a.append(el("span", "file-icon", extension(name)), info);
        wrap.append(a);
      }
    }
    return wrap;
  }

  // ------------------------------------------------------------------ polls

  // A poll is voted by replying to its message with poll.vote_text: exactly what the polls skill counts.
  // The card stands in for the message's text (which lists the same options for platforms without
  // buttons); its heading is the text's first line, which carries the poll's number ("Poll #3: ...").
  function pollNode(message, castVote, myVote) {
    const poll = message.poll;
    const card = el("div", "poll");
    const closes = poll.closes_at ? new Date(poll.closes_at) : null;
    const closed = closes && !isNaN(closes) && closes.getTime() <= Date.now();
    const heading = String(message.text || "").split("\n")[0].trim();
    card.append(el("div", "poll-question", heading.includes(String(poll.question)) ? heading : String(poll.question)));
    const list = el("div", "poll-options");
    // The bot keeps one tally in the poll message's text ("2. Sushi — 3"), edited as votes come in.
    const counts = new Map();
    for (const line of String(message.text || "").split("\n")) {
      const m = /^(\d+)\. .* — (\d+)$/.exec(line.trim());
      if (m) counts.set(Number(m[1]), Number(m[2]));
    }
    const total = Array.from(counts.values()).reduce((a, b) => a + b, 0);
    poll.options.forEach((option, i) => {
      const b = el("button", "poll-option" + (myVote === i + 1 ? " chosen" : ""));
      b.type = "button";
      b.disabled = Boolean(closed);
      b.append(el("span", "poll-number", String(i + 1)), el("span", "poll-label", String(option)));
      if (counts.size) {
        const n = counts.get(i + 1) || 0;
        b.append(el("span", "poll-count", String(n)));
        b.style.setProperty("--share", total ? `${Math.round((100 * n) / total)}%` : "0%");
        b.classList.add("tallied");
      }
      b.addEventListener("click", async (ev) => {
        ev.stopPropagation();
        for (const other of list.children) other.disabled = true;
        // "vote {n}" is what the polls skill counts; it also counts the Chinese "投 {n}".
        const template = !poll.vote_text || poll.vote_text === "vote {n}" ? _("vote {n}") : String(poll.vote_text);
        const ok = await castVote(message, i + 1, template.replace("{n}", String(i + 1)));
        for (const other of list.children) {
          other.disabled = Boolean(closed);
          other.classList.toggle("chosen", ok && other === b);
        }
      });
      list.append(b);
    });
    card.append(list);
    let note = closed ? _("This poll is closed.") : _("Tap an option to vote (your vote is a reply; the last one counts).");
    if (counts.size) note = ngettext("{n} vote so far.", "{n} votes so far.", total) + " " + note;
    if (!closed && closes && !isNaN(closes)) note += " " + _("Closes {time}.", { time: formatTime(closes.toISOString()) });
    card.append(el("div", "poll-note", note));
    return card;
  }

  // ------------------------------------------------------------------ the tray of files to send

  class Tray {
    constructor(node, limits, toast) {
      this.node = node;
      this.limits = limits;
      this.toast = toast;
      this.items = [];
    }

    get files() { return this.items.map((it) => it.file); }
    get size() { return this.items.length; }

    add(fileList) {
      for (const file of Array.from(fileList || [])) {
        if (this.items.length >= this.limits.max_files) {
          this.toast(_("At most {max} files per message.", { max: this.limits.max_files }));
          break;
        }
        if (file.size > this.limits.max_file_bytes) {
          this.toast(_("{name} is {size}; the limit is {limit}.", { name: file.name, size: formatSize(file.size), limit: formatSize(this.limits.max_file_bytes) }));
          continue;
        }
        if (file.size === 0) { this.toast(_("{name} is empty.", { name: file.name || _("That file") })); continue; }
        const preview = /^image\/(png|jpeg|gif|webp)$/.test(file.type) ? URL.createObjectURL(file) : null;
        this.items.push({ file, preview });
      }
      this.render();
    }

    remove(item) {
      if (item.preview) URL.revokeObjectURL(item.preview);
      this.items = this.items.filter((it) => it !== item);
      this.render();
    }

    clear() {
      for (const it of this.items) if (it.preview) URL.revokeObjectURL(it.preview);
      this.items = [];
      this.render();
    }

    render() {
      this.node.replaceChildren();
      for (const it of this.items) {
        const chip = el("div", "tray-item");
        if (it.preview) {
          const img = el("img");
          img.src = it.preview;
          img.alt = "";
          chip.append(img);
        } else {
          chip.append(el("span", "file-icon", extension(it.file.name)));
        }
        const info = el("span", "file-info");
        info.append(el("span", "file-name", it.file.name || _("pasted image")), el("span", "file-size", formatSize(it.file.size)));
        const x = el("button", "ghost small tray-remove", "✕");
        x.type = "button";
        x.setAttribute("aria-label", _("Remove {name}", { name: it.file.name }));
        x.addEventListener("click", () => this.remove(it));
        chip.append(info, x);
        this.node.append(chip);
      }
      this.node.hidden = this.items.length === 0;
    }
  }

  // ------------------------------------------------------------------ uploading

  // POST a FormData with upload progress (fetch cannot report it). Resolves {status, data}; rejects with
  // status 0 on a network failure, like app.js's api().
  function upload(path, form, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.withCredentials = true;
      xhr.upload.addEventListener("progress", (ev) => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total); });
      xhr.addEventListener("load", () => {
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        resolve({ status: xhr.status, data });
      });
      xhr.addEventListener("error", () => reject(Object.assign(new Error(_("Cannot reach the server.")), { status: 0 })));
      xhr.addEventListener("abort", () => reject(Object.assign(new Error(_("The upload was interrupted.")), { status: 0 })));
      xhr.send(form);
    });
  }

  return { filesNode, pollNode, Tray, upload, openViewer, closeViewer, formatSize, formatTime };
})();
