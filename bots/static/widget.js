// Embed the help chat on any site:
//   <script src="https://HOST/chat/assets/widget.js" data-key="WIDGET_KEY" async></script>
// A round button opens the chat in an iframe; the widget key links the site to its business.
(function () {
  "use strict";
  const script = document.currentScript;
  const origin = new URL(script.src).origin;
  const key = script.dataset.key || "";
  const label = script.dataset.label || "?";
  const button = document.createElement("button");
  button.type = "button";
  button.setAttribute("aria-label", "help chat");
  button.textContent = label;
  button.style.cssText = "position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;" +
    "border:0;background:#2457c5;color:#fff;font:600 22px system-ui;box-shadow:0 4px 14px rgba(0,0,0,.25);" +
    "cursor:pointer;z-index:2147483000";
  let frame = null;
  button.addEventListener("click", function () {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.src = origin + "/chat" + (key ? "?key=" + encodeURIComponent(key) : "");
      frame.title = "help chat";
      frame.allow = "camera; microphone; display-capture";
      frame.style.cssText = "position:fixed;right:20px;bottom:88px;width:min(380px,calc(100vw - 40px));" +
        "height:min(600px,calc(100vh - 120px));border:1px solid #d0d5dc;border-radius:12px;background:#fff;" +
        "box-shadow:0 8px 30px rgba(0,0,0,.2);z-index:2147483000";
      document.body.appendChild(frame);
    } else {
      frame.hidden = !frame.hidden;
    }
  });
  document.body.appendChild(button);
})();
