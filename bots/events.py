"""What channel adapters hand the dialogue engine, and what it hands back: no channel types.

An adapter turns a Telegram update, a Discord interaction or a widget frame into an `Incoming`
and delivers each `Reply` as a message (or an edit of one it sent before, found by `ref`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from concierge.model import Channel
from concierge.reach import Reach

MAX_BUTTON_ACTION = 64  # Telegram's callback_data limit, the tightest of the three channels


class Kind(StrEnum):
    TEXT = "text"
    COMMAND = "command"  # "/name args"
    PRESS = "press"  # a button; `text` is its action
    UNSUPPORTED = "unsupported"  # a sticker, photo, file, voice note…: `text` says which


@dataclass(frozen=True, slots=True)
class Incoming:
    channel: Channel
    user_id: str
    name: str
    kind: Kind
    text: str = ""
    locale: str | None = None  # the client's language setting, when the channel tells
    community: str | None = None  # the group, guild or widget key it came through
    is_admin: bool = False  # the sender administers that community (the adapter checked)
    # Written in the group or guild itself (others read the replies), not in a private chat
    # that merely remembers the group it came from.
    in_group: bool = False

    @property
    def reach(self) -> Reach:
        return Reach(self.channel, self.user_id)

    @property
    def command(self) -> tuple[str, str]:
        """("name", "args") of a command such as "/expert ABCDE-12345" or "/lang@bot fr"."""
        head, _, args = self.text.strip().partition(" ")
        name = head.lstrip("/").split("@", 1)[0].lower()
        return name, args.strip()


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    action: str = ""  # sent back as a PRESS
    url: str = ""  # or a link

    def __post_init__(self) -> None:
        if bool(self.action) == bool(self.url):
            raise ValueError("a button has either an action or a url")
        if len(self.action.encode()) > MAX_BUTTON_ACTION:
            raise ValueError(f"button action {self.action!r} is longer than {MAX_BUTTON_ACTION} bytes")


@dataclass(frozen=True, slots=True)
class Reply:
    to: Reach
    text: str
    buttons: tuple[tuple[Button, ...], ...] = field(default=())
    ref: str | None = None  # names the message so a later Reply can edit it
    edit: bool = False  # replace the message named `ref` (sent anew if it cannot be found)
