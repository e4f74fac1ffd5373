// firebell web console: the chat page. Plain script, no build step, embedded in the binary.
// Everything it shows arrives as data and is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
  const state = {
    user: localStorage.getItem("firebell.name") || "",
    channel: "incidents",
    thread: null,
    messages: new Map(), // id → message of the current channel
    catalogue: { commands: [], incident_commands: [], topics: [], channels: ["incidents"] },
    recalled: JSON.parse(localStorage.getItem("firebell.recalled") || "[]"),
    events: null,
    ephemerals: [], // replies only this person sees: { where: "channel" | thread id, body }
    // Who the server says this is: { person, proven, signed_in, sign_in, how_to_prove }. With a
    // proven person the page never sends a name: the server acts as the signed-in person.
    me: { person: null, proven: false, signed_in: false, sign_in: false },
  };

  // The `user` field of a request: left out when the server knows who this is.
  function who() {
    return state.me.proven ? {} : { user: state.user };
  }

  function whoQuery(prefix) {
    return state.me.proven ? "" : `${prefix}user=${encodeURIComponent(state.user)}`;
  }

  // ---- talking to the server -------------------------------------------------------------

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)firebell_csrf=([^;]+)/);
    return match ? match[1] : "";
  }

  async function call(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-firebell-csrf": csrf() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = { error: `the server answered ${response.status}` };
    }
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  async function load(path) {
    const response = await fetch(path, { credentials: "same-origin" });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  // ---- rendering ---------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // The common markup: *bold*, `code`, <@person> mentions, and bare links.
  const MARKUP = /(\*[^*\n]+\*|`[^`\n]+`|<@[^>\s]+>|https?:\/\/[^\s<>]+)/g;
  function inline(parent, text) {
    let last = 0;
    for (const match of String(text).matchAll(MARKUP)) {
      if (match.index > last) parent.append(text.slice(last, match.index));
      const token = match[0];
      if (token.startsWith("*")) parent.append(el("strong", null, token.slice(1, -1)));
      else if (token.startsWith("`")) parent.append(el("code", null, token.slice(1, -1)));
      else if (token.startsWith("<@")) parent.append(el("span", "mention", "@" + token.slice(2, -1).replace(/^console:/, "")));
      else {
        const link = el("a", null, token);
        link.href = token;
        link.rel = "noopener noreferrer";
        link.target = "_blank";
        parent.append(link);
      }
      last = match.index + token.length;
    }
    if (last < text.length) parent.append(text.slice(last));
    return parent;
  }

  function paragraphs(className, text) {
    const box = el("div", className);
    for (const line of String(text).split("\n")) {
      inline(box.appendChild(el("p")), line);
    }
    return box;
  }

  function renderBlocks(body, message, pane) {
    const box = el("div", "body");
    if (body.command) box.append(el("code", "typed", body.command));
    for (const block of body.blocks || []) {
      switch (block.type) {
        case "header":
          inline(box.appendChild(el("h3", "block-header")), block.text);
          break;
        case "text":
          box.append(paragraphs("block-text", block.text));
          break;
        case "context":
          box.append(paragraphs("block-context", block.text));
          break;
        case "code":
          box.append(el("pre", "block-code", block.text));
          break;
        case "divider":
          box.append(el("hr"));
          break;
        case "fields": {
          const list = el("dl", "block-fields");
          for (const [label, value] of block.fields) {
            const item = el("div");
            item.append(el("dt", null, label));
            inline(item.appendChild(el("dd")), value);
            list.append(item);
          }
          box.append(list);
          break;
        }
        case "buttons": {
          const row = el("div", "block-buttons");
          for (const button of block.buttons) {
            const node = el("button", `btn ${button.style}`, button.label);
            node.type = "button";
            node.dataset.action = button.action;
            node.addEventListener("click", () => press(node, button, message, pane));
            row.append(node);
          }
          box.append(row);
          break;
        }
      }
    }
    if (body.file && body.file.content_type === "image/png") {
      // A chart: shown inline, served whole (with the page's own sign-in) by /console/files/ID.
      const figure = el("figure", "file-image");
      if (message) {
        const image = el("img");
        image.src = `/console/files/${message.id}${whoQuery("?")}`;
        image.alt = body.file.title || body.file.filename;
        image.loading = "lazy";
        figure.append(image);
      }
      figure.append(el("figcaption", null, `📈 ${body.file.title || body.file.filename}`));
      box.append(figure);
    } else if (body.file) {
      const file = el("details", "file");
      const size = body.file.size >= 1024 ? `${Math.round(body.file.size / 1024)} KiB` : `${body.file.size} bytes`;
      file.append(el("summary", null, `📄 ${body.file.title || body.file.filename} (${size})`));
      if (message) {
        const link = el("a", "download", `Download ${body.file.filename}`);
        link.href = `/console/files/${message.id}${whoQuery("?")}`;
        link.download = body.file.filename;
        file.append(link);
      }
      file.append(el("pre", "block-code", body.file.preview + (body.file.cut ? "\n…" : "")));
      box.append(file);
    }
    return box;
  }

  function author(name) {
    return name === "firebell" ? "firebell" : name.replace(/^console:/, "");
  }

  function renderMessage(message, pane) {
    const item = el("li", "message");
    item.dataset.id = message.id;
    item.dataset.author = message.author;
    if (message.author === "firebell") item.classList.add("bot");
    const head = el("div", "head");
    head.append(el("span", "author", author(message.author)));
    const when = el("time", null, new Date(message.posted_at).toLocaleTimeString());
    when.dateTime = message.posted_at;
    head.append(when);
    if (message.edited_at) head.append(el("span", "edited", "edited"));
    item.append(head, renderBlocks(message.body, message, pane));
    if (pane === "channel") {
      const replies = [...state.messages.values()].filter((m) => m.thread === String(message.id)).length;
      if (replies || message.author === "firebell") {
        const label = replies ? `${replies} ${replies === 1 ? "reply" : "replies"} →` : "Reply in thread";
        const open = el("button", "thread-link", label);
        open.type = "button";
        open.addEventListener("click", () => openThread(String(message.id)));
        item.append(open);
      }
    }
    return item;
  }

  function ephemeral(pane, body) {
    state.ephemerals.push({ where: pane === "thread" ? state.thread : "channel", body });
    renderChannel();
    const list = pane === "thread" ? $("thread-messages") : $("messages");
    const last = list.querySelector("li.ephemeral:last-child");
    if (last) last.scrollIntoView({ block: "nearest" });
  }

  function renderEphemerals(where, pane) {
    return state.ephemerals
      .filter((note) => note.where === where)
      .map((note) => {
        const item = el("li", "message ephemeral");
        const head = el("div", "head");
        head.append(el("span", "author", "firebell"), el("span", "only-you", "only you see this"));
        const close = el("button", "dismiss", "Dismiss");
        close.type = "button";
        close.addEventListener("click", () => {
          state.ephemerals = state.ephemerals.filter((other) => other !== note);
          renderChannel();
        });
        head.append(close);
        item.append(head, renderBlocks(note.body, null, pane));
        return item;
      });
  }

  function showError(pane, text) {
    ephemeral(pane, { blocks: [{ type: "text", text: `⚠️ ${text}` }] });
  }

  function renderChannel() {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.replaceChildren(
      ...[...state.messages.values()].filter((m) => !m.thread).map((m) => renderMessage(m, "channel")),
      ...renderEphemerals("channel", "channel"),
    );
    if (atBottom) list.scrollTop = list.scrollHeight;
    renderThread();
  }

  function renderThread() {
    const pane = $("thread-pane");
    if (!state.thread) {
      pane.hidden = true;
      document.body.classList.remove("thread-open");
      return;
    }
    pane.hidden = false;
    document.body.classList.add("thread-open");
    const root = state.messages.get(state.thread);
    const replies = [...state.messages.values()].filter((m) => m.thread === state.thread);
    const list = $("thread-messages");
    list.replaceChildren(
      ...[root, ...replies].filter(Boolean).map((m) => renderMessage(m, "thread")),
      ...renderEphemerals(state.thread, "thread"),
    );
    list.scrollTop = list.scrollHeight;
  }

  function renderChannels() {
    const names = [...state.catalogue.channels];
    if (!names.includes(state.channel)) names.push(state.channel);
    const items = names.map((name) => channelLink(name, `#${name}`));
    // Direct messages are only for a proven person: a chosen name could be anyone's.
    if (state.me.proven) items.push(channelLink(`@${state.user}`, "Direct messages"));
    $("channels").replaceChildren(...items);
    $("channel-title").textContent = state.channel.startsWith("@") ? "Direct messages" : `#${state.channel}`;
    if (state.me.proven) {
      $("who").textContent = `console:${state.user}`;
      $("who").title = "Signed in";
    } else {
      $("who").textContent = state.user ? `console:${state.user} (chosen)` : "Choose a name";
    }
    $("sign-in").hidden = state.me.proven || !state.me.sign_in;
    $("sign-out").hidden = !(state.me.proven || state.me.signed_in);
  }

  function channelLink(name, label) {
    const item = el("li");
    const link = el("a", null, label);
    link.href = `/?channel=${encodeURIComponent(name)}`;
    if (name === state.channel) link.setAttribute("aria-current", "page");
    link.addEventListener("click", (event) => {
      event.preventDefault();
      switchChannel(name, null);
    });
    item.append(link);
    return item;
  }

  // ---- state changes -------------------------------------------------------------------------

  function remember() {
    const url = new URL(location.href);
    url.searchParams.set("channel", state.channel);
    if (state.thread) url.searchParams.set("thread", state.thread);
    else url.searchParams.delete("thread");
    history.replaceState(null, "", url);
  }

  async function switchChannel(channel, thread) {
    state.channel = channel;
    state.thread = thread;
    state.messages = new Map();
    state.ephemerals = [];
    remember();
    renderChannels();
    try {
      const data = await load(`/console/history?channel=${encodeURIComponent(channel)}${whoQuery("&")}`);
      for (const message of data.messages) state.messages.set(String(message.id), message);
    } catch (error) {
      showError("channel", error.message);
    }
    renderChannel();
  }

  function openThread(id) {
    state.thread = id;
    remember();
    renderThread();
    $("thread-input").focus();
  }

  function receive(message) {
    if (message.channel !== state.channel) return;
    state.messages.set(String(message.id), message);
    renderChannel();
  }

  function listen() {
    if (state.events) state.events.close();
    const events = new EventSource(`/console/events${whoQuery("?")}`);
    events.addEventListener("message", (event) => receive(JSON.parse(event.data)));
    events.addEventListener("resync", () => switchChannel(state.channel, state.thread));
    // After a dropped connection the browser reconnects by itself; reload what was missed.
    events.addEventListener("open", () => {
      if (state.listenedBefore) switchChannel(state.channel, state.thread);
      state.listenedBefore = true;
    });
    state.events = events;
  }

  // ---- actions -------------------------------------------------------------------------------

  async function send(pane, text) {
    const thread = pane === "thread" ? state.thread : null;
    try {
      const data = await call("/console/command", { ...who(), channel: state.channel, thread, text });
      answer(pane, data);
    } catch (error) {
      showError(pane, error.message);
    }
  }

  async function press(node, button, message, pane) {
    if (!message) return;
    node.disabled = true;
    try {
      const data = await call("/console/button", {
        ...who(),
        channel: message.channel,
        thread: message.thread || null,
        message: String(message.id),
        action: button.action,
        value: button.value,
      });
      answer(pane, data, message);
    } catch (error) {
      showError(pane, error.message);
    } finally {
      node.disabled = false;
    }
  }

  function answer(pane, data, message) {
    if (data.reply) ephemeral(pane, data.reply.body);
    if (data.form) showForm(pane, data.form, message);
  }

  function showForm(pane, form, message) {
    const dialog = $("form-dialog");
    $("form-title").textContent = form.title;
    $("form-submit").textContent = form.submit;
    $("form-error").hidden = true;
    const fields = form.fields.map((field) => {
      const wrap = el("div", "field");
      const label = el("label", null, field.label + (field.optional ? " (optional)" : ""));
      label.htmlFor = `field-${field.id}`;
      const input = el(field.multiline ? "textarea" : "input");
      input.id = `field-${field.id}`;
      input.name = field.id;
      input.required = !field.optional;
      if (field.multiline) input.rows = 3;
      wrap.append(label, input);
      return wrap;
    });
    $("form-fields").replaceChildren(...fields);
    const modal = $("modal-form");
    modal.onsubmit = async (event) => {
      event.preventDefault();
      const values = {};
      for (const field of form.fields) values[field.id] = $(`field-${field.id}`).value;
      try {
        const data = await call("/console/form", {
          ...who(),
          channel: message ? message.channel : state.channel,
          thread: message ? message.thread || null : pane === "thread" ? state.thread : null,
          action: form.action,
          value: form.value,
          fields: values,
        });
        dialog.close();
        answer(pane, data, message);
      } catch (error) {
        $("form-error").textContent = error.message;
        $("form-error").hidden = false;
      }
    };
    $("form-cancel").onclick = () => dialog.close();
    dialog.showModal();
    const first = dialog.querySelector("textarea, input");
    if (first) first.focus();
  }

  // ---- the command line: history and completion --------------------------------------------

  function words(text) {
    return text.split(/\s+/);
  }

  function candidates(text) {
    const parts = words(text);
    const current = parts[parts.length - 1];
    const catalogue = state.catalogue;
    let options = [];
    if (parts.length === 1) options = catalogue.commands;
    else if (parts[0] === "/diagnose" && parts.length === 2) options = catalogue.topics.map((t) => t.name);
    else if (parts[0] === "/remediate" && parts.length === 2)
      options = catalogue.topics.flatMap((t) => t.remediations.map((r) => r.name));
    else if (parts[0] === "/incident" && parts.length === 2) options = catalogue.incident_commands;
    else if (parts[0] === "/incident" && parts[1] === "declare" && current.startsWith("sev"))
      options = ["sev=critical", "sev=high", "sev=medium", "sev=low"];
    else if (parts[0] === "/diagnose" && parts.length > 2) {
      const topic = catalogue.topics.find((t) => t.name === parts[1]);
      if (topic) options = topic.args.map((a) => `${a.name}=`);
    } else if (parts[0] === "/remediate" && parts.length > 2) {
      const topic = catalogue.topics.find((t) => t.remediations.some((r) => r.name === parts[1]));
      if (topic) options = topic.args.map((a) => `${a.name}=`);
    }
    return { current, options: options.filter((option) => option.startsWith(current)) };
  }

  function commonPrefix(options) {
    return options.reduce((prefix, option) => {
      let i = 0;
      while (i < prefix.length && prefix[i] === option[i]) i++;
      return prefix.slice(0, i);
    });
  }

  function complete(input, list) {
    const text = input.value;
    const { current, options } = candidates(text);
    list.hidden = true;
    if (!options.length) return;
    const base = text.slice(0, text.length - current.length);
    if (options.length === 1) {
      const done = options[0];
      input.value = base + done + (done.endsWith("=") ? "" : " ");
      return;
    }
    const prefix = commonPrefix(options);
    input.value = base + prefix;
    list.replaceChildren(
      ...options.slice(0, 30).map((option) => {
        const item = el("li", null, option);
        item.addEventListener("mousedown", (event) => {
          event.preventDefault();
          input.value = base + option + (option.endsWith("=") ? "" : " ");
          list.hidden = true;
          input.focus();
        });
        return item;
      }),
    );
    list.hidden = false;
  }

  function composer(formId, inputId, listId, pane) {
    const input = $(inputId);
    const list = $(listId);
    let recall = -1;
    $(formId).addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (!state.user) return askName();
      state.recalled = [text, ...state.recalled.filter((t) => t !== text)].slice(0, 50);
      localStorage.setItem("firebell.recalled", JSON.stringify(state.recalled));
      recall = -1;
      input.value = "";
      list.hidden = true;
      if (!text.startsWith("/")) {
        showError(pane, `'${text}' is not a command: commands start with / — try /diagnose, /incident, /remediate or /oncall`);
        return;
      }
      send(pane, text);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Tab" && !event.shiftKey && input.value.startsWith("/")) {
        event.preventDefault();
        complete(input, list);
      } else if (event.key === "ArrowUp" && (input.value === "" || recall >= 0)) {
        if (recall + 1 < state.recalled.length) {
          event.preventDefault();
          recall += 1;
          input.value = state.recalled[recall];
        }
      } else if (event.key === "ArrowDown" && recall >= 0) {
        event.preventDefault();
        recall -= 1;
        input.value = recall >= 0 ? state.recalled[recall] : "";
      } else if (event.key === "Escape") {
        list.hidden = true;
        if (pane === "thread") closeThread();
      } else if (event.key.length === 1 || event.key === "Backspace") {
        recall = -1;
        list.hidden = true;
      }
    });
  }

  function closeThread() {
    state.thread = null;
    remember();
    renderThread();
    $("input").focus();
  }

  // ---- who you are ---------------------------------------------------------------------------

  function askName() {
    // A proven person's name is the one they signed in with.
    if (state.me.proven) return;
    const dialog = $("name-dialog");
    $("name-input").value = state.user;
    dialog.showModal();
  }

  function setName(name) {
    if (!NAME.test(name)) return false;
    const changed = name !== state.user;
    state.user = name;
    localStorage.setItem("firebell.name", name);
    if (changed) {
      listen();
      if (state.channel.startsWith("@")) state.channel = `@${name}`;
      switchChannel(state.channel, state.thread);
    }
    return true;
  }

  async function signOut() {
    try {
      await fetch("/logout", {
        method: "POST",
        headers: { "x-firebell-csrf": csrf() },
        credentials: "same-origin",
        redirect: "manual",
      });
    } finally {
      location.href = "/login";
    }
  }

  // ---- start ---------------------------------------------------------------------------------

  async function start() {
    const params = new URLSearchParams(location.search);
    state.channel = params.get("channel") || "incidents";
    state.thread = params.get("thread");
    composer("composer", "input", "suggestions", "channel");
    composer("thread-composer", "thread-input", "thread-suggestions", "thread");
    $("close-thread").addEventListener("click", closeThread);
    $("who").addEventListener("click", askName);
    $("sign-out").addEventListener("click", signOut);
    $("name-form").addEventListener("submit", (event) => {
      if (!setName($("name-input").value.trim())) {
        event.preventDefault();
        $("name-input").setCustomValidity("Use letters, digits, '.', '_' or '-' (up to 32), starting with a letter or digit");
        $("name-input").reportValidity();
      }
    });
    $("name-input").addEventListener("input", () => $("name-input").setCustomValidity(""));
    try {
      state.catalogue = await load("/console/catalogue");
      if (state.catalogue.me) state.me = state.catalogue.me;
    } catch (error) {
      showError("channel", `the command catalogue could not be loaded: ${error.message}`);
    }
    if (state.me.proven) state.user = state.me.person;
    if (!state.me.proven && state.channel.startsWith("@")) state.channel = "incidents";
    if (NAME.test(state.user)) {
      listen();
      await switchChannel(state.channel, state.thread);
      $("input").focus();
    } else {
      renderChannels();
      askName();
    }
  }

  start();
})();
