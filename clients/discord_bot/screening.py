"""What the bot does with one Discord message: pick image attachments in allowed channels, respect
per-user and per-guild limits, screen each image through deepscreen (submit, wait), then act:
✅ / ⚠️ reactions, a reply with the verdict, a report to the moderators' channel, deletion.

Works on discord.py's objects (``discord.Message`` and friends) but keeps the decisions in plain
functions so they can be read and tested without a gateway connection.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from clients.discord_bot.config import BotConfig
from clients.discord_bot.rate_limit import SlidingWindow
from deepscreen.client import Client, DeepscreenError, Job
from deepscreen.client.files import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    import discord

log = logging.getLogger(__name__)
CLEAN, FLAGGED, SLOW_DOWN, TROUBLE = "✅", "⚠️", "⏳", "❔"


@dataclass
class Screened:
    """One attachment's fate."""

    filename: str
    job: Job | None = None
    error: str | None = None
    flagged_by: list[str] = field(default_factory=list)  # "model label score" for each flagging result


@dataclass
class Handling:
    """What the bot did with a message (returned for logs and tests)."""

    skipped: str | None = None  # why nothing was screened: bot, dm, channel, no_images, user_rate, guild_rate
    screened: list[Screened] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return any(s.flagged_by for s in self.screened)


def is_image(attachment: Any) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type:
        return content_type.startswith("image/") and content_type != "image/svg+xml"
    return PurePath(attachment.filename).suffix.lower() in IMAGE_EXTENSIONS


def flagging(job: Job, labels: frozenset[str]) -> list[str]:
    return [f"{model} {r.label} {'-' if r.score is None else f'{r.score:.2f}'}"
            for model, r in job.results.items() if r.label in labels]


def verdict_text(message: Any, screened: list[Screened], *, for_moderators: bool) -> str:
    """The verdict as Discord text: names are escaped (no markdown, no mentions), scores rounded."""
    from discord.utils import escape_markdown, escape_mentions

    lines = []
    if for_moderators:
        lines.append(f"{FLAGGED} deepscreen flagged a message by {escape_mentions(str(message.author))} "
                     f"in <#{message.channel.id}>: {message.jump_url}")
    for item in screened:
        name = escape_mentions(escape_markdown(item.filename))
        if item.job is None:
            lines.append(f"• {name}: not screened ({item.error})")
            continue
        parts = []
        for model, r in item.job.results.items():
            score = "-" if r.score is None else f"{r.score:.2f}"
            note = "" if r.validated else ", not validated on real data"
            parts.append(f"{model} **{r.label}** {score} (v{r.model_version}{note})")
        lines.append(f"• {name}: " + "; ".join(parts))
    return "\n".join(lines)[:1900]


class Screener:
    """Holds the deepscreen client and the limits; ``handle`` is called for every message."""

    def __init__(self, config: BotConfig, client: Client) -> None:
        self.config, self.client = config, client
        self.per_user = SlidingWindow(config.user_rate)
        self.per_guild = SlidingWindow(config.guild_rate)

    def _screen(self, data: bytes, filename: str, caption: str | None) -> Job:
        job = self.client.submit_bytes(data, filename=filename, text=caption, models=self.config.models)
        return self.client.wait(job, timeout=self.config.wait_seconds)

    async def _screen_attachment(self, attachment: discord.Attachment, caption: str | None) -> Screened:
        item = Screened(attachment.filename)
        if attachment.size > self.config.max_bytes:
            item.error = "too large"
            return item
        try:
            data = await attachment.read()
            item.job = await asyncio.to_thread(self._screen, data, attachment.filename, caption)
        except DeepscreenError as exc:
            item.error = str(exc)
            return item
        except Exception as exc:  # discord.HTTPException and friends: the attachment could not be read
            item.error = f"could not read the attachment: {exc}"
            return item
        if item.job.succeeded:
            item.flagged_by = flagging(item.job, self.config.flag_labels)
        else:
            item.error = item.job.error.code if item.job.error else item.job.status
        return item

    async def handle(self, message: discord.Message) -> Handling:
        if message.author.bot:
            return Handling(skipped="bot")
        if message.guild is None:
            return Handling(skipped="dm")
        if message.channel.id not in self.config.channels:
            return Handling(skipped="channel")
        images = [a for a in message.attachments if is_image(a)]
        if not images:
            return Handling(skipped="no_images")
        for limiter, key, reason in ((self.per_user, (message.guild.id, message.author.id), "user_rate"),
                                     (self.per_guild, message.guild.id, "guild_rate")):
            if not limiter.allow(key):
                done = Handling(skipped=reason)
                await self._react(message, SLOW_DOWN, done)
                return done
        caption = (message.content.strip() or None) if self.config.caption_from_message else None
        done = Handling(screened=list(await asyncio.gather(*(self._screen_attachment(a, caption) for a in images))))
        await self._act(message, done)
        return done

    async def _react(self, message: discord.Message, emoji: str, done: Handling) -> None:
        if "react" not in self.config.actions:
            return
        try:
            await message.add_reaction(emoji)
            done.actions.append(f"react {emoji}")
        except Exception as exc:  # missing permission, message gone: the verdict still stands
            log.warning("could not react to %s: %s", message.id, exc)

    async def _act(self, message: discord.Message, done: Handling) -> None:
        from discord import AllowedMentions

        if not done.flagged:
            all_screened = all(s.job is not None and s.job.succeeded for s in done.screened)
            await self._react(message, CLEAN if all_screened else TROUBLE, done)
            return
        await self._react(message, FLAGGED, done)
        quiet = AllowedMentions.none()
        if "reply" in self.config.actions:
            await message.reply(verdict_text(message, done.screened, for_moderators=False), allowed_mentions=quiet,
                                mention_author=False)
            done.actions.append("reply")
        if "flag" in self.config.actions and self.config.mod_channel is not None:
            channel = message.guild.get_channel(self.config.mod_channel) if message.guild else None
            if channel is None or not hasattr(channel, "send"):
                log.warning("moderators' channel %s is not visible to the bot", self.config.mod_channel)
            else:
                await channel.send(verdict_text(message, done.screened, for_moderators=True), allowed_mentions=quiet)
                done.actions.append("flag")
        if "delete" in self.config.actions:  # last: the report above links to the message
            await message.delete()
            done.actions.append("delete")
