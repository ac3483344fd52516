"""The Discord side: a ``discord.Client`` that hands every message to the Screener."""

from __future__ import annotations

import logging
import os

import discord

from clients.discord_bot.config import BotConfig
from clients.discord_bot.screening import Screener
from deepscreen.client import Client

log = logging.getLogger(__name__)


class DeepscreenBot(discord.Client):
    def __init__(self, config: BotConfig) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # attachments are message content (a privileged intent: enable it)
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none())
        self.config = config
        self.screener = Screener(config, Client(config.deepscreen_url, token=config.deepscreen_token,
                                                api_key=config.deepscreen_api_key))

    async def on_ready(self) -> None:
        log.info("deepscreen bot ready as %s; screening channels %s", self.user, sorted(self.config.channels))

    async def on_message(self, message: discord.Message) -> None:
        done = await self.screener.handle(message)
        if done.screened:
            log.info("message %s: %s", message.id,
                     "flagged" if done.flagged else "clean", extra={"actions": done.actions})


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    config = BotConfig.from_env(os.environ)
    DeepscreenBot(config).run(config.discord_token, log_handler=None)
