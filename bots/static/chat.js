// The web widget's chat: one WebSocket to /chat/ws, messages and buttons rendered as they come.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("config").textContent);
  const texts = config.texts;
  const store = "concierge." + config.role + (config.key ? "." + config.key : "");
  const list = document.getElementById("messages");
  const input = document.getElementById("input");
  const status = document.getElementById("status");
  const byRef = new Map();
  let socket = null;
  let since = 0;
  let delay = 500;
  input.placeholder = texts.placeholder;
  document.getElementById("send").textContent = texts.send;

  function bubble(cls, text) {
    const item = document.createElement("li");
    item.className = "msg " + cls;
    const body = document.createElement("div");
    body.textContent = text;
    item.appendChild(body);
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
    return item;
  }

  function fill(item, message) {
    item.firstChild.textContent = message.text;
    const old = item.querySelector(".buttons");
    if (old) old.remove();
    const rows = message.buttons || [];
    if (!rows.length) return;
    const box = document.createElement("div");
    box.className = "buttons";
    for (const row of rows) {
      for (const b of row) {
        if (b.url) {
          const a = document.createElement("a");
          a.href = b.url; a.textContent = b.label; a.target = "_blank"; a.rel = "noopener";
          box.appendChild(a);
        } else {
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = b.label;
          button.dataset.action = b.action;
          button.addEventListener("click", () => send({ type: "press", action: b.action }));
          box.appendChild(button);
        }
      }
    }
    item.appendChild(box);
  }

  function show(message) {
    if (message.seq <= since) return;
    since = message.seq;
    let item = message.ref && message.edit ? byRef.get(message.ref) : null;
    if (!item) item = bubble("bot", "");
    fill(item, message);
    if (message.ref) byRef.set(message.ref, item);
    item.dataset.ref = message.ref || "";
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function connect() {
    status.textContent = texts.connecting;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat/ws";
    socket = new WebSocket(url);
    socket.onopen = () => {
      delay = 500;
      send({
        type: "hello",
        token: localStorage.getItem(store + ".token"),
        since: since,  // 0 on a fresh page: the server replays the visitor's recent messages
        key: config.key,
        locale: navigator.language,
        name: "",
      });
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "welcome") {
        localStorage.setItem(store + ".token", frame.token);
        status.textContent = "";
        if (config.role === "expert" && !list.children.length) bubble("bot", texts.expert_intro);
        // A business's own greeting on its widget (text only, never markup).
        if (config.role === "customer" && texts.greeting && !list.children.length) bubble("bot", texts.greeting);
      } else if (frame.type === "message") {
        show(frame);
      } else if (frame.type === "error") {
        bubble("error", frame.error === "unknown widget key" ? texts.bad_key : frame.error);
      }
    };
    socket.onclose = () => {
      status.textContent = texts.offline;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  document.getElementById("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    bubble("me", text);
    send({ type: "text", text: text });
    input.value = "";
  });
  connect();
})();
