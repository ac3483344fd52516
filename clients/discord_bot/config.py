"""The bot's settings, from environment variables (documented in clients/discord_bot/README.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

ACTIONS = frozenset({"react", "reply", "flag", "delete"})
DEFAULT_FLAG_LABELS = frozenset({"fake", "hateful", "nsfw", "synthetic"})
RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float

    @classmethod
    def parse(cls, name: str, raw: str) -> Rate:
        match = RATE.match(raw)
        if not match or int(match.group(1)) < 1:
            raise ConfigError(f"{name}: expected COUNT/SECONDS such as 5/60, got {raw!r}")
        return cls(int(match.group(1)), float(match.group(2)))


def _ids(name: str, raw: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in raw.replace(" ", "").split(",") if part)
    except ValueError as exc:
        raise ConfigError(f"{name}: expected a comma list of channel ids, got {raw!r}") from exc


@dataclass(frozen=True)
class BotConfig:
    """What the bot screens, with which credentials, and what it does with a flagged image.

    ``channels``: the channel ids it screens (an allow-list; it ignores every other channel).
    ``actions`` on a flagged image: ``react`` (⚠️; ✅ on clean ones), ``reply`` (the verdict, in the
    channel), ``flag`` (the verdict and a link to the message, in ``mod_channel``), ``delete``.
    """

    deepscreen_url: str
    channels: frozenset[int]
    discord_token: str = ""
    deepscreen_token: str | None = None
    deepscreen_api_key: str | None = None
    models: str | None = None
    actions: frozenset[str] = frozenset({"react"})
    mod_channel: int | None = None
    user_rate: Rate = Rate(5, 60.0)
    guild_rate: Rate = Rate(60, 60.0)
    flag_labels: frozenset[str] = DEFAULT_FLAG_LABELS
    max_bytes: int = 25 * 1024 * 1024
    wait_seconds: float = 120.0
    caption_from_message: bool = False  # a meme's own text (OCR) is the caption, not the chat line

    def __post_init__(self) -> None:
        unknown = self.actions - ACTIONS
        if unknown:
            raise ConfigError(f"DEEPSCREEN_BOT_ACTIONS: unknown {', '.join(sorted(unknown))} "
                              f"(choose from {', '.join(sorted(ACTIONS))})")
        if "flag" in self.actions and self.mod_channel is None:
            raise ConfigError("DEEPSCREEN_BOT_ACTIONS has 'flag' but DEEPSCREEN_BOT_MOD_CHANNEL is not set")
        if not self.deepscreen_token and not self.deepscreen_api_key:
            raise ConfigError("set DEEPSCREEN_API_KEY (a ds_… key for the bot) or DEEPSCREEN_TOKEN")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BotConfig:
        def get(name: str, default: str = "") -> str:
            return env.get(name, default).strip()

        if not get("DISCORD_TOKEN"):
            raise ConfigError("DISCORD_TOKEN: the bot's token from the Discord developer portal is required")
        channels = _ids("DEEPSCREEN_BOT_CHANNELS", get("DEEPSCREEN_BOT_CHANNELS"))
        if not channels:
            raise ConfigError("DEEPSCREEN_BOT_CHANNELS: list the channel ids the bot may screen")
        mod = get("DEEPSCREEN_BOT_MOD_CHANNEL")
        return cls(
            discord_token=get("DISCORD_TOKEN"),
            deepscreen_url=get("DEEPSCREEN_URL", "http://127.0.0.1:8000"),
            deepscreen_token=get("DEEPSCREEN_TOKEN") or None,
            deepscreen_api_key=get("DEEPSCREEN_API_KEY") or None,
            channels=channels,
            models=get("DEEPSCREEN_BOT_MODELS") or None,
            actions=frozenset(a for a in get("DEEPSCREEN_BOT_ACTIONS", "react").replace(" ", "").split(",") if a),
            mod_channel=int(mod) if mod.isdigit() else None,
            user_rate=Rate.parse("DEEPSCREEN_BOT_USER_RATE", get("DEEPSCREEN_BOT_USER_RATE", "5/60")),
            guild_rate=Rate.parse("DEEPSCREEN_BOT_GUILD_RATE", get("DEEPSCREEN_BOT_GUILD_RATE", "60/60")),
            flag_labels=frozenset(get("DEEPSCREEN_BOT_FLAG_LABELS", ",".join(sorted(DEFAULT_FLAG_LABELS))).split(",")),
            caption_from_message=get("DEEPSCREEN_BOT_CAPTION_FROM_MESSAGE", "0") in ("1", "true", "yes"),
        )
