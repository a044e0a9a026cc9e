// The video room page: a lobby with the camera preview, then the call. One signalling WebSocket,
// one RTCPeerConnection to the gateway (the `control` data channel; the media too in relay mode)
// and, in direct mode, a media RTCPeerConnection to the other browser whose offer, answer and
// candidates travel as `signal` frames. The wire protocol is video_gateway/PROTOCOL.md.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("config").textContent);
  const texts = config.texts || {};
  const lang = config.lang || document.documentElement.lang || "en";
  const peerName = config.peer_name || "";
  const $ = (id) => document.getElementById(id);
  const remoteVideo = $("remote");
  const REPORT_CHECK_MS = 1000; // direct mode: how often the page looks at its media connection
  const REPORT_EVERY_MS = 5000; // and reports it when nothing changed (PROTOCOL.md's REPORT_SECONDS)

  // A catalogue message (a str.format template, or plural forms keyed by CLDR category).
  function t(key, values) {
    let message = texts[key];
    if (message == null) return key;
    if (typeof message === "object") {
      let category = "other";
      if (values && typeof values.count === "number") {
        try { category = new Intl.PluralRules(lang).select(values.count); } catch (e) { /* keep "other" */ }
      }
      message = message[category] != null ? message[category] : message.other || "";
    }
    return String(message).replace(/\{\{|\}\}|\{(\w+)\}/g, (match, name) => {
      if (match === "{{") return "{";
      if (match === "}}") return "}";
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : match;
    });
  }

  // What the page knows about the room; the gateway's frames update it.
  const room = {
    phase: "lobby", // lobby | joining | call | lost | replaced | ended
    mode: null,
    role: config.role,
    iceServers: [],
    tariff: null,
    budgetEnd: null, // the billed second at which the authorised budget runs out
    budgetWarned: false,
    billed: 0, // as of billedAt; the timer runs on from there while the call is live
    billedAt: 0,
    state: "waiting",
    peerPresent: false,
    recorded: !!config.recorded,
  };
  // Read by automated tests; nothing on the page depends on it.
  const roomState = (window.roomState = {
    state: "lobby", billedSeconds: 0, mode: null, remoteVideoFrames: 0, ended: null,
  });

  // Local media: the chosen microphone and camera, a screen being shared, and a silent audio
  // track sent when there is no microphone (so the other side still receives media).
  const media = {
    mic: null, camera: null, screen: null, silent: null, audioContext: null,
    muted: false, cameraOff: false, acquiring: false,
  };
  const outgoingAudio = () => media.mic || media.silent;
  const outgoingVideo = () => media.screen || (media.camera && !media.cameraOff ? media.camera : null);
  const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 } };

  let conn = null; // the current attempt: {ws, gw, dc, media, timers}
  let hangupTimer = null;
  let wakeLock = null;
  let toastTimer = null;

  // ---------------------------------------------------------------- texts on the page
  function label(id, text) {
    const button = $(id);
    button.querySelector(".label").textContent = text;
    button.setAttribute("aria-label", text);
  }
  label("mic", t("room.mute"));
  label("cam", t("room.camera_off"));
  label("share", t("room.share"));
  label("settings", t("room.devices"));
  label("hangup", t("room.hangup"));
  $("controls").setAttribute("aria-label", t("room.controls"));
  $("lobby-title").textContent = t("room.lobby.title", { name: peerName });
  $("camera-label").textContent = t("room.camera");
  $("mic-label").textContent = t("room.microphone");
  $("join").textContent = t("room.join");
  $("retry").textContent = t("room.media.retry");
  $("recording-text").textContent = t("room.recording");
  $("play").textContent = t("room.play");
  $("preview").setAttribute("aria-label", t("room.lobby.preview"));
  $("preview-empty").textContent = t("room.no_video");
  $("local").setAttribute("aria-label", t("room.self"));
  remoteVideo.setAttribute("aria-label", t("room.remote", { name: peerName }));
  $("timer").setAttribute("aria-label", t("room.timer"));
  $("peer-caption").textContent = peerName;
  $("peer-initial").textContent = (Array.from(peerName.trim())[0] || "?").toLocaleUpperCase(lang);
  if (room.recorded) {
    $("recorded-notice").textContent = t("room.recorded");
    $("recorded-notice").hidden = false;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) $("share").hidden = true;

  function toast(text) {
    const box = $("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  function clock(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(s) : two(m) + ":" + two(s);
  }

  // Integer minor units in the currency's own number of decimals: JPY 150 → ¥150, EUR 150 → €1.50.
  function money(minor, currency) {
    try {
      const format = new Intl.NumberFormat(lang, { style: "currency", currency: currency });
      const digits = format.resolvedOptions().maximumFractionDigits;
      return format.format(minor / Math.pow(10, digits));
    } catch (e) {
      return null;
    }
  }

  function costText() {
    const tariff = room.tariff;
    if (!tariff || !tariff.currency) return "";
    const perMinute = Number(tariff.per_minute) || 0;
    const perSession = Number(tariff.per_session) || 0;
    if (perMinute) {
      const amount = money(perSession + (perMinute * billedNow()) / 60, tariff.currency);
      return amount ? t("room.cost.running", { amount: amount }) : "";
    }
    const amount = money(perSession, tariff.currency);
    return amount ? t("room.cost.fixed", { amount: amount }) : "";
  }

  // ---------------------------------------------------------------- rendering
  function setPhase(phase) {
    room.phase = phase;
    for (const name of Array.from(document.body.classList)) {
      if (name.startsWith("phase-")) document.body.classList.remove(name);
    }
    document.body.classList.add("phase-" + phase);
    if (phase !== "lobby") $("lobby").hidden = true;
    if (phase === "call" || phase === "joining") {
      const devices = $("devices");
      if (devices.parentNode !== $("stage")) $("stage").appendChild(devices);
      $("notice").hidden = true;
    }
    render();
  }

  function stateText() {
    if (room.phase === "joining") return t("room.joining");
    if (room.phase !== "call") return "";
    if (room.state === "live") return t("room.state.live", { name: peerName });
    if (room.peerPresent) return t("room.state.connecting", { name: peerName });
    if (room.state === "paused") return t("room.state.paused", { name: peerName });
    return t("room.state.waiting", { name: peerName });
  }

  // The gateway's count runs on between its ticks (every few seconds, and at once when the call
  // starts, pauses or resumes), never past the budget.
  function billedNow() {
    let billed = room.billed;
    if (room.phase === "call" && room.state === "live") billed += Math.floor((performance.now() - room.billedAt) / 1000);
    return room.budgetEnd !== null ? Math.min(billed, room.budgetEnd) : billed;
  }

  function render() {
    const inCall = room.phase === "call";
    const billed = billedNow();
    setText($("state-line"), stateText());
    setText($("timer"), clock(billed));
    setText($("cost"), inCall || room.phase === "lost" ? costText() : "");
    $("recording").hidden = !room.recorded || room.phase === "lobby" || room.phase === "ended";

    const banner = $("banner");
    const warn = inCall && room.budgetEnd !== null && (room.budgetWarned || room.budgetEnd - billed <= 60);
    if (warn) {
      // Announced once when it appears, not at every second of the countdown.
      if (banner.hidden) banner.setAttribute("role", "alert");
      else banner.removeAttribute("role");
      setText(banner, t("room.budget", { time: clock(room.budgetEnd - billed) }));
    }
    banner.hidden = !warn;

    toggle("mic", media.muted, !media.mic);
    toggle("cam", media.cameraOff, !media.camera);
    toggle("share", !!media.screen, !inCall);
    $("hangup").disabled = !inCall;
    $("settings").disabled = !(inCall || room.phase === "joining");
    if (!inCall) showDevices(false);

    roomState.state =
      room.phase === "call" ? room.state : room.phase === "joining" ? "connecting" : room.phase;
    roomState.billedSeconds = billed;
    roomState.mode = room.mode;
  }

  function setText(element, text) {
    if (element.textContent !== text) element.textContent = text;
  }

  function toggle(id, pressed, disabled) {
    const button = $(id);
    button.setAttribute("aria-pressed", pressed ? "true" : "false");
    button.disabled = disabled;
  }

  function showDevices(open) {
    document.body.classList.toggle("show-devices", open);
    $("settings").setAttribute("aria-expanded", open ? "true" : "false");
  }

  function showNotice(title, text, extra, button, action) {
    $("notice-title").textContent = title;
    $("notice-text").textContent = text;
    $("notice-extra").textContent = extra || "";
    const b = $("notice-button");
    b.hidden = !button;
    b.textContent = button || "";
    b.onclick = action || null;
    $("notice").hidden = false;
    if (button) b.focus();
  }

  // The local picture (lobby preview and the small in-call video) shows what is being sent.
  function updatePreview() {
    const track = outgoingVideo();
    for (const video of [$("preview"), $("local")]) {
      if (video._track !== track) {
        video._track = track;
        video.srcObject = track ? new MediaStream([track]) : null;
        if (track) video.play().catch(() => {});
      }
      video.classList.toggle("mirror", !!track && track === media.camera);
    }
    document.body.classList.toggle("no-local-video", !track);
  }

  // Remote media: one stream on the big video, rebuilt when a track arrives.
  const remoteTracks = { audio: null, video: null };
  function remoteTrack(track) {
    remoteTracks[track.kind] = track;
    attachRemote();
  }
  function clearRemote() {
    remoteTracks.audio = remoteTracks.video = null;
    attachRemote();
  }
  function attachRemote() {
    const tracks = [remoteTracks.audio, remoteTracks.video].filter(Boolean);
    remoteVideo.srcObject = tracks.length ? new MediaStream(tracks) : null;
    if (tracks.length) playRemote();
  }
  function playRemote() {
    const playing = remoteVideo.play();
    if (playing && playing.then) {
      playing.then(() => { $("play").hidden = true; }, (error) => {
        if (error && error.name === "NotAllowedError") $("play").hidden = false;
      });
    }
  }
  $("play").addEventListener("click", playRemote);

  // Frames decoded on the remote video: counted for tests, and used to show the peer's name
  // instead of a frozen or empty picture. requestVideoFrameCallback counts frames presented
  // (none in a hidden tab), getVideoPlaybackQuality frames decoded: the larger count wins.
  let presented = 0;
  let decoded = 0;
  let lastQuality = 0;
  let lastFrameAt = -Infinity;
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const onVideoFrame = () => {
      presented += 1;
      lastFrameAt = performance.now();
      remoteVideo.requestVideoFrameCallback(onVideoFrame);
    };
    remoteVideo.requestVideoFrameCallback(onVideoFrame);
  }
  setInterval(() => {
    const now = performance.now();
    if (remoteVideo.getVideoPlaybackQuality) {
      const total = remoteVideo.getVideoPlaybackQuality().totalVideoFrames;
      if (total > lastQuality) {
        decoded += total - lastQuality;
        lastFrameAt = now;
      }
      lastQuality = total; // restarts from zero with each new stream
    }
    roomState.remoteVideoFrames = Math.max(presented, decoded);
    const picture = room.phase === "call" && room.peerPresent && now - lastFrameAt < 1500;
    document.body.classList.toggle("remote-picture", picture);
  }, 500);

  // The timer runs between the gateway's ticks.
  setInterval(() => { if (room.phase === "call" && room.state === "live") render(); }, 250);

  // ---------------------------------------------------------------- devices
  async function getMedia(constraints) {
    return navigator.mediaDevices.getUserMedia(constraints);
  }

  function adopt(kind, track) {
    const key = kind === "audio" ? "mic" : "camera";
    media[key] = track;
    if (track) {
      track.enabled = kind === "audio" ? !media.muted : !media.cameraOff;
      track.addEventListener("ended", () => {
        if (media[key] === track) adopt(kind, null); // unplugged, or taken by the system
      });
    }
    if (kind === "audio" && !track && room.phase !== "lobby") ensureSilence();
    updateSenders();
    updatePreview();
    render();
  }

  // First access: camera and microphone, else the microphone alone, else the camera alone.
  async function acquire() {
    media.acquiring = true;
    $("retry").hidden = true;
    for (const key of ["mic", "camera"]) {
      if (media[key]) media[key].stop();
      media[key] = null;
    }
    setMessage(t("room.lobby.asking", { name: peerName }), false);
    let stream = null;
    if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
      for (const constraints of [{ audio: true, video: VIDEO }, { audio: true }, { video: VIDEO }]) {
        try {
          stream = await getMedia(constraints);
          break;
        } catch (error) {
          // Refused: do not ask again and again. Missing or busy: try with less.
          if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) break;
        }
      }
    }
    media.acquiring = false;
    if (stream && (room.phase === "ended" || room.phase === "replaced")) {
      stream.getTracks().forEach((track) => track.stop()); // answered after the call was over
      return;
    }
    if (stream) {
      adopt("audio", stream.getAudioTracks()[0] || null);
      adopt("video", stream.getVideoTracks()[0] || null);
    } else {
      updatePreview();
      render();
    }
    if (media.mic && media.camera) setMessage("", false);
    else if (media.mic) setMessage(t("room.media.no_camera"), true);
    else if (media.camera) setMessage(t("room.media.no_mic", { name: peerName }), true);
    else setMessage(t("room.media.none", { name: peerName }), true);
    $("retry").hidden = !!(media.mic && media.camera) || !navigator.mediaDevices || room.phase !== "lobby";
    await listDevices();
  }

  function setMessage(text, warning) {
    const box = $("media-message");
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("warning", warning);
  }

  async function listDevices() {
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch (e) { /* no device list: the selects say none */ }
    fill($("camera-select"), devices.filter((d) => d.kind === "videoinput"), media.camera, t("room.camera"));
    fill($("mic-select"), devices.filter((d) => d.kind === "audioinput"), media.mic, t("room.microphone"));
  }

  function fill(select, devices, track, name) {
    devices = devices.filter((d) => d.deviceId); // without permission the list is anonymous
    select.replaceChildren();
    devices.forEach((device, index) => {
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || name + " " + (index + 1);
      select.appendChild(option);
    });
    if (!devices.length) {
      const option = document.createElement("option");
      option.textContent = t("room.no_device");
      option.value = "";
      select.appendChild(option);
    }
    select.disabled = !devices.length;
    const current = track && track.getSettings ? track.getSettings().deviceId : null;
    select.selectedIndex = devices.findIndex((d) => d.deviceId === current);
    if (select.selectedIndex < 0 && !devices.length) select.selectedIndex = 0;
  }

  async function switchDevice(kind, deviceId) {
    if (!deviceId) return;
    const key = kind === "audio" ? "mic" : "camera";
    const old = media[key];
    if (old && old.getSettings && old.getSettings().deviceId === deviceId) return;
    // Stop the old device first: phones often cannot open two cameras at once.
    if (old) {
      media[key] = null;
      old.stop();
    }
    let track = null;
    try {
      const constraints = kind === "audio" ? { deviceId: { exact: deviceId } } : Object.assign({ deviceId: { exact: deviceId } }, VIDEO);
      const stream = await getMedia({ [kind]: constraints });
      track = stream.getTracks()[0] || null;
    } catch (error) {
      toast(t("room.device_failed"));
    }
    adopt(kind, track);
    if (room.phase === "lobby" && media.mic && media.camera) {
      setMessage("", false);
      $("retry").hidden = true;
    }
    await listDevices();
  }

  $("camera-select").addEventListener("change", (e) => switchDevice("video", e.target.value));
  $("mic-select").addEventListener("change", (e) => switchDevice("audio", e.target.value));
  $("retry").addEventListener("click", acquire);
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", () => { if (!media.acquiring) listDevices(); });
  }

  // A silent track keeps audio flowing from someone without a microphone: the gateway counts
  // a call as live only when both sides receive media.
  function ensureSilence() {
    if (media.mic || media.silent) return;
    try {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return;
      const context = media.audioContext || (media.audioContext = new Context());
      const destination = context.createMediaStreamDestination();
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      gain.gain.value = 0;
      oscillator.connect(gain).connect(destination);
      oscillator.start();
      if (context.state === "suspended") context.resume().catch(() => {});
      media.silent = destination.stream.getAudioTracks()[0] || null;
    } catch (e) {
      media.silent = null;
    }
  }

  // Point every sender at the track it should carry now; no renegotiation is needed.
  function updateSenders() {
    const c = conn;
    if (!c) return;
    for (const pc of [room.mode === "relay" ? c.gw : null, c.media]) {
      if (!pc || pc.signalingState === "closed") continue;
      for (const transceiver of pc.getTransceivers()) {
        if (transceiver.stopped || transceiver.currentDirection === "stopped") continue;
        const kind = transceiver.receiver.track.kind;
        const want = (kind === "audio" ? outgoingAudio() : outgoingVideo()) || null;
        if (transceiver.sender.track !== want) transceiver.sender.replaceTrack(want).catch(() => {});
      }
    }
  }

  // ---------------------------------------------------------------- controls
  $("mic").addEventListener("click", () => {
    if (!media.mic) return;
    media.muted = !media.muted;
    media.mic.enabled = !media.muted;
    render();
  });

  $("cam").addEventListener("click", () => {
    if (!media.camera) return;
    media.cameraOff = !media.cameraOff;
    media.camera.enabled = !media.cameraOff;
    updateSenders();
    updatePreview();
    render();
  });

  $("share").addEventListener("click", async () => {
    if (media.screen) return stopSharing();
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (error) {
      if (!error || (error.name !== "NotAllowedError" && error.name !== "AbortError")) toast(t("room.share_failed"));
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    if (room.phase !== "call") {
      track.stop();
      return;
    }
    try { track.contentHint = "detail"; } catch (e) { /* older browsers */ }
    if (media.screen) media.screen.stop();
    media.screen = track;
    // The browser's own "Stop sharing" button ends the track: back to the camera.
    track.addEventListener("ended", () => { if (media.screen === track) stopSharing(); });
    updateSenders();
    updatePreview();
    render();
  });

  function stopSharing() {
    const track = media.screen;
    media.screen = null;
    if (track) track.stop();
    updateSenders();
    updatePreview();
    render();
  }

  $("settings").addEventListener("click", () => {
    showDevices(!document.body.classList.contains("show-devices"));
  });

  $("hangup").addEventListener("click", () => {
    const c = conn;
    if (!c || !c.ws || c.ws.readyState !== WebSocket.OPEN) return;
    if (!window.confirm(t("room.hangup_confirm"))) return;
    send(c, { type: "hangup" });
    // The gateway answers with `ended`; should it not, end here all the same.
    clearTimeout(hangupTimer);
    hangupTimer = setTimeout(() => finish("hangup", null), 5000);
  });

  $("join").addEventListener("click", join);

  // ---------------------------------------------------------------- the call
  function send(c, frame) {
    if (c && c.ws && c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(frame));
  }

  function sendControl(c, frame) {
    if (c && c.dc && c.dc.readyState === "open") c.dc.send(JSON.stringify(frame));
  }

  function socketUrl() {
    if (/^wss?:/.test(config.ws)) return config.ws;
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + config.ws;
  }

  function join() {
    if (room.phase === "joining" || room.phase === "call" || room.phase === "ended" || room.phase === "replaced") return;
    if (media.audioContext && media.audioContext.state === "suspended") media.audioContext.resume().catch(() => {});
    ensureSilence(); // inside the click: browsers start audio only after a gesture
    keepAwake();
    const c = (conn = { ws: null, gw: null, dc: null, media: null, timers: [], startTimer: null });
    setPhase("joining");
    updatePreview();
    try {
      c.ws = new WebSocket(socketUrl());
    } catch (error) {
      lost(c);
      return;
    }
    c.ws.onmessage = (event) => {
      if (conn !== c) return;
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      onFrame(c, frame).catch((error) => {
        console.warn("room:", frame.type, error);
        if (frame.type === "welcome" || frame.type === "answer") lost(c);
      });
    };
    c.ws.onclose = () => lost(c);
  }

  async function onFrame(c, frame) {
    switch (frame.type) {
      case "welcome": return welcome(c, frame);
      case "answer": if (c.gw) await c.gw.setRemoteDescription({ type: "answer", sdp: frame.sdp }); return;
      case "peer": return peer(c, !!frame.present);
      case "signal": return signal(c, frame.data || {});
      case "replaced": return replaced();
      case "ended": return finish(frame.reason, frame.billed_seconds);
      case "error": toast(frame.message || frame.code || ""); return;
      default: return;
    }
  }

  async function welcome(c, frame) {
    room.mode = frame.mode === "relay" ? "relay" : "direct";
    if (frame.role) room.role = frame.role;
    room.iceServers = Array.isArray(frame.ice_servers) ? frame.ice_servers : [];
    room.tariff = frame.tariff || null;
    room.budgetEnd = typeof frame.budget_seconds === "number" ? frame.budget_seconds : null;
    if (typeof frame.recorded === "boolean") room.recorded = frame.recorded;
    room.peerPresent = !!frame.peer_present;
    meter(frame.billed_seconds, frame.state);
    setPhase("call");

    const gw = (c.gw = new RTCPeerConnection({ iceServers: room.iceServers }));
    const dc = (c.dc = gw.createDataChannel("control", { ordered: true })); // before the offer
    dc.onmessage = (event) => { if (conn === c) control(c, event.data); };
    dc.onclose = () => lost(c);
    const failed = () => {
      if (gw.connectionState === "failed" || gw.iceConnectionState === "failed") lost(c);
    };
    gw.addEventListener("connectionstatechange", failed);
    gw.addEventListener("iceconnectionstatechange", failed);
    if (room.mode === "relay") {
      gw.ontrack = (event) => { if (conn === c) remoteTrack(event.track); };
      for (const kind of ["audio", "video"]) {
        // A transceiver even without a local track, so the other person's media comes back.
        const transceiver = gw.addTransceiver(kind, { direction: "sendrecv" });
        const track = kind === "audio" ? outgoingAudio() : outgoingVideo();
        if (track) await transceiver.sender.replaceTrack(track);
      }
    } else {
      c.timers.push(setInterval(() => report(c), REPORT_CHECK_MS));
      if (room.peerPresent && room.role === "customer") startMedia(c);
    }
    await gw.setLocalDescription(await gw.createOffer());
    await gathered(gw); // the gateway does not trickle: the offer carries every candidate
    if (conn !== c) return;
    send(c, { type: "offer", sdp: gw.localDescription.sdp });
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        pc.removeEventListener("icecandidate", last);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      const last = (event) => { if (!event.candidate) done(); };
      const timer = setTimeout(done, 10000); // a slow STUN/TURN server: send what we have
      pc.addEventListener("icegatheringstatechange", check);
      pc.addEventListener("icecandidate", last);
    });
  }

  function meter(billed, state) {
    if (typeof billed === "number" && isFinite(billed)) {
      room.billed = billed;
      room.billedAt = performance.now();
    }
    if (state === "waiting" || state === "live" || state === "paused") room.state = state;
    render();
  }

  function control(c, raw) {
    let message;
    try { message = JSON.parse(raw); } catch (e) { return; }
    if (message.type === "tick") {
      meter(message.billed_seconds, message.state);
    } else if (message.type === "budget") {
      if (typeof message.billed_seconds === "number") meter(message.billed_seconds, room.state);
      if (typeof message.remaining_seconds === "number") room.budgetEnd = billedNow() + message.remaining_seconds;
      room.budgetWarned = true;
      render();
    } else if (message.type === "ping") {
      sendControl(c, { type: "pong", t: message.t });
    } else if (message.type === "ended") {
      finish(message.reason, message.billed_seconds);
    }
  }

  // Direct mode: what the gateway needs to meter the browser-to-browser media. The page looks every
  // second and tells the gateway when what it sees changes, otherwise every REPORT_EVERY_MS: each
  // message costs the gateway, which holds a thousand of these connections.
  async function report(c) {
    if (conn !== c || !c.dc || c.dc.readyState !== "open") return;
    const pc = c.media;
    let bytes = 0;
    if (pc) {
      try {
        const stats = await pc.getStats();
        stats.forEach((entry) => {
          if (entry.type === "inbound-rtp" && typeof entry.bytesReceived === "number") bytes += entry.bytesReceived;
        });
      } catch (e) { /* closed meanwhile */ }
    }
    const state = pc ? pc.connectionState || pc.iceConnectionState : "new";
    const connected = !!pc && c.media === pc && (state === "connected" || state === "completed");
    const flowing = connected && bytes > (c.bytesSeen || 0);
    c.bytesSeen = bytes;
    const now = performance.now();
    const same = c.reported && c.reported.connected === connected && c.reported.flowing === flowing;
    if (same && now - c.reported.at < REPORT_EVERY_MS) return;
    c.reported = { connected: connected, flowing: flowing, at: now };
    sendControl(c, { type: "stats", connected: connected, flowing: flowing, bytes_received: bytes });
  }

  function peer(c, present) {
    room.peerPresent = present;
    if (room.mode === "direct") {
      if (!present) closeMedia(c);
      else if (room.role === "customer") startMedia(c);
    }
    render();
  }

  function newMediaPc(c) {
    closeMedia(c);
    const pc = new RTCPeerConnection({ iceServers: room.iceServers });
    pc._outbox = []; // our candidates, held until our description has gone out
    pc._inbox = []; // theirs, held until their description is applied
    pc._described = false;
    c.media = pc;
    pc.onicecandidate = (event) => {
      if (!event.candidate || c.media !== pc) return;
      const candidate = event.candidate.toJSON ? event.candidate.toJSON() : event.candidate;
      if (pc._described) send(c, { type: "signal", data: { candidate: candidate } });
      else pc._outbox.push(candidate);
    };
    pc.ontrack = (event) => { if (conn === c && c.media === pc) remoteTrack(event.track); };
    pc.onconnectionstatechange = () => {
      // The customer starts over when the path between the browsers breaks.
      if (pc.connectionState === "failed" && c.media === pc && room.role === "customer" && room.peerPresent) {
        startMedia(c, 2000);
      }
    };
    return pc;
  }

  function describe(c, pc) {
    const description = pc.localDescription;
    send(c, { type: "signal", data: { sdp: { type: description.type, sdp: description.sdp } } });
    pc._described = true;
    for (const candidate of pc._outbox.splice(0)) send(c, { type: "signal", data: { candidate: candidate } });
  }

  async function applyCandidates(pc) {
    for (const candidate of pc._inbox.splice(0)) await pc.addIceCandidate(candidate).catch(() => {});
  }

  function closeMedia(c) {
    clearTimeout(c.startTimer);
    if (c.media) {
      const pc = c.media;
      c.media = null;
      pc.close();
    }
    if (room.mode === "direct") clearRemote();
  }

  // The customer's side of the media connection. Debounced: the welcome and a `peer` frame
  // arriving together start one connection, not two.
  function startMedia(c, delay) {
    clearTimeout(c.startTimer);
    c.startTimer = setTimeout(() => {
      if (conn === c && room.peerPresent) offerMedia(c).catch((error) => console.warn("room: media offer", error));
    }, delay || 250);
  }

  async function offerMedia(c) {
    const pc = newMediaPc(c);
    for (const kind of ["audio", "video"]) {
      // sendrecv even without a track: a screen can still be shared later without renegotiating.
      const transceiver = pc.addTransceiver(kind, { direction: "sendrecv" });
      const track = kind === "audio" ? outgoingAudio() : outgoingVideo();
      if (track) await transceiver.sender.replaceTrack(track);
    }
    const offer = await pc.createOffer();
    if (c.media !== pc) return;
    await pc.setLocalDescription(offer);
    if (c.media !== pc) return;
    describe(c, pc);
  }

  async function signal(c, data) {
    if (room.mode !== "direct") return;
    if (data.sdp && data.sdp.type === "offer") {
      // A fresh connection for every offer: the other side started over.
      const pc = newMediaPc(c);
      await pc.setRemoteDescription(data.sdp);
      if (c.media !== pc) return;
      for (const transceiver of pc.getTransceivers()) {
        const kind = transceiver.receiver.track.kind;
        transceiver.direction = "sendrecv";
        await transceiver.sender.replaceTrack((kind === "audio" ? outgoingAudio() : outgoingVideo()) || null);
      }
      await applyCandidates(pc);
      const answer = await pc.createAnswer();
      if (c.media !== pc) return;
      await pc.setLocalDescription(answer);
      if (c.media !== pc) return;
      describe(c, pc);
    } else if (data.sdp && data.sdp.type === "answer") {
      const pc = c.media;
      if (!pc || pc.signalingState !== "have-local-offer") return;
      await pc.setRemoteDescription(data.sdp);
      await applyCandidates(pc);
    } else if (data.candidate) {
      const pc = c.media;
      if (!pc) return;
      if (pc.remoteDescription && !pc._inbox.length) await pc.addIceCandidate(data.candidate).catch(() => {});
      else pc._inbox.push(data.candidate);
    }
  }

  // ---------------------------------------------------------------- endings
  function teardown() {
    const c = conn;
    conn = null;
    clearTimeout(hangupTimer);
    if (!c) return;
    clearTimeout(c.startTimer);
    c.timers.forEach(clearInterval);
    if (c.ws) {
      c.ws.onclose = c.ws.onmessage = null;
      try { c.ws.close(); } catch (e) { /* already closed */ }
    }
    if (c.dc) c.dc.onclose = c.dc.onmessage = null;
    for (const pc of [c.media, c.gw]) {
      if (pc) try { pc.close(); } catch (e) { /* already closed */ }
    }
    c.media = c.gw = null;
    remoteTracks.audio = remoteTracks.video = null;
    remoteVideo.srcObject = null;
    $("play").hidden = true;
  }

  // A dropped socket or gateway connection: the person rejoins with the same devices.
  function lost(c) {
    if (conn !== c) return;
    teardown();
    setPhase("lost");
    showNotice(t("room.lost.title"), t("room.lost.text"), "", t("room.rejoin"), join);
  }

  function stopLocal() {
    for (const track of [media.mic, media.camera, media.screen, media.silent]) if (track) track.stop();
    media.mic = media.camera = media.screen = media.silent = null;
    if (media.audioContext) media.audioContext.close().catch(() => {});
    media.audioContext = null;
    if (wakeLock) wakeLock.release().catch(() => {});
    wakeLock = null;
    updatePreview();
  }

  function replaced() {
    teardown();
    stopLocal();
    setPhase("replaced");
    showNotice(t("room.replaced.title"), t("room.replaced.text"), "", t("room.take_back"), () => location.reload());
  }

  function finish(reason, billed) {
    if (room.phase === "ended") return;
    if (typeof billed === "number" && isFinite(billed)) room.billed = billed;
    teardown();
    stopLocal();
    roomState.ended = reason || "hangup";
    setPhase("ended");
    const reasons = ["hangup", "budget", "expired", "operator"];
    const why = reasons.indexOf(reason) >= 0 ? t("room.ended." + reason) : "";
    showNotice(
      t("room.ended.title"),
      why,
      t("room.ended.duration", { duration: clock(room.billed) }) + " " + t("room.ended.close"),
      null,
      null,
    );
  }

  // ---------------------------------------------------------------- phones
  function keepAwake() {
    if (!navigator.wakeLock || wakeLock) return;
    navigator.wakeLock.request("screen").then((lock) => {
      wakeLock = lock;
      lock.addEventListener("release", () => { if (wakeLock === lock) wakeLock = null; });
    }, () => {});
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && (room.phase === "call" || room.phase === "joining")) keepAwake();
  });

  // ---------------------------------------------------------------- start
  render();
  if (typeof RTCPeerConnection === "undefined") {
    setMessage(t("room.media.unsupported"), true);
    $("devices").hidden = true;
  } else {
    // Joining does not wait for the permission prompt: devices allowed later are sent then.
    $("join").disabled = false;
    acquire();
  }
})();
