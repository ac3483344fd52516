"""Real discord.py objects (Guild, TextChannel, Member, Message, Attachment) built from gateway-shaped
payloads, with no gateway. Discord itself cannot be reached from here, so the one stand-in is the REST
layer: ``RecordingHTTP`` is discord.py's own ``HTTPClient`` with ``request`` recording each call
(reactions, replies, sends, deletes) instead of sending it to discord.com. Attachment downloads are
real: ``Attachment.read()`` fetches from a loopback "CDN" through discord.py's own aiohttp session."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
from discord.http import HTTPClient, Route
from discord.state import ConnectionState

GUILD, GENERAL, OTHER, MODS = 1, 10, 11, 12
_ids = itertools.count(1000)


@dataclass
class Call:
    method: str
    path: str
    channel_id: int | None
    json: dict[str, Any] | None


class RecordingHTTP(HTTPClient):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.calls: list[Call] = []

    async def request(self, route: Route, *, files: Any = None, form: Any = None, **kwargs: Any) -> Any:
        body = kwargs.get("json")
        self.calls.append(Call(route.method, route.path, route.channel_id, body))
        if route.method == "POST" and route.path == "/channels/{channel_id}/messages":
            return message_payload(next(_ids), int(route.channel_id or 0), 42, "deepscreen-bot", True,
                                   (body or {}).get("content", ""), [])
        return None


def user(uid: int, name: str, bot: bool = False) -> dict[str, Any]:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


def message_payload(mid: int, channel_id: int, uid: int, name: str, bot: bool, content: str,
                    attachments: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": str(mid), "channel_id": str(channel_id), "guild_id": str(GUILD), "author": user(uid, name, bot),
            "member": {"roles": [], "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False,
                       "flags": 0},
            "content": content, "timestamp": "2026-11-27T00:00:00+00:00", "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": attachments,
            "embeds": [], "pinned": False, "type": 0}


class World:
    """One guild with #general (screened), #other (not screened) and #mods."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cdn: str) -> None:
        self.cdn = cdn
        self.http = RecordingHTTP(loop)
        self.http._HTTPClient__session = aiohttp.ClientSession()  # type: ignore[attr-defined]  # what login() sets
        self.state = ConnectionState(dispatch=lambda *a, **k: None, handlers={}, hooks={}, http=self.http,
                                     intents=discord.Intents.default())
        self.state.loop = loop
        everyone = {"id": str(GUILD), "name": "@everyone", "permissions": "0", "position": 0, "color": 0,
                    "hoist": False, "managed": False, "mentionable": False}
        self.guild = discord.Guild(data={"id": str(GUILD), "name": "test guild", "channels": [], "roles": [everyone],
                                         "members": [], "member_count": 4, "owner_id": "5", "features": [],
                                         "emojis": [], "stickers": []}, state=self.state)
        self.state._add_guild(self.guild)
        self.channels = {}
        for cid, name in ((GENERAL, "general"), (OTHER, "other"), (MODS, "mods")):
            channel = discord.TextChannel(state=self.state, guild=self.guild, data={
                "id": str(cid), "type": 0, "name": name, "position": 0, "permission_overwrites": [], "nsfw": False,
                "parent_id": None, "guild_id": str(GUILD)})
            self.guild._add_channel(channel)
            self.channels[cid] = channel

    def message(self, *, channel: int = GENERAL, author: tuple[int, str] = (7, "alice"), bot: bool = False,
                content: str = "", files: list[tuple[str, str, int]] = ()) -> discord.Message:
        """``files``: (name on the CDN, content type, size) for each attachment."""
        attachments = [{"id": str(next(_ids)), "filename": name, "size": size, "url": f"{self.cdn}/{name}",
                        "proxy_url": f"{self.cdn}/{name}", "content_type": kind} for name, kind, size in files]
        data = message_payload(next(_ids), channel, author[0], author[1], bot, content, attachments)
        return discord.Message(state=self.state, channel=self.channels[channel], data=data)

    def calls(self, method: str, path_end: str = "") -> list[Call]:
        return [c for c in self.http.calls if c.method == method and c.path.endswith(path_end)]

    async def close(self) -> None:
        await self.http._HTTPClient__session.close()  # type: ignore[attr-defined]
