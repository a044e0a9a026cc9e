"""One-off room links, WebRTC signalling, aiortc peers, metering, recording and the room page."""
