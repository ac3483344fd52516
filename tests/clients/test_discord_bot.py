"""The Discord bot's handler on real discord.py objects against a live deepscreen: image attachments
in allowed channels are screened (submitted, waited for), then ✅ / ⚠️, a reply, a report to the
moderators' channel and deletion as configured; other channels, bots and non-images are ignored;
per-user and per-guild limits hold. Only Discord's REST API is recorded instead of called (see
tests/clients/discord_world.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from clients.discord_bot.config import BotConfig, ConfigError, Rate
from clients.discord_bot.screening import CLEAN, FLAGGED, SLOW_DOWN, Screener
from deepscreen.client import Client
from tests.clients.conftest import Live, astronaut_jpeg, noise_jpeg
from tests.clients.discord_world import GENERAL, MODS, OTHER, World
from tests.clients.test_extension import QuietHandler
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
NASTY_NAME = "@everyone_**look**.jpg"


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, int]]]:
    folder = tmp_path_factory.mktemp("cdn")
    files = {"noise.jpg": noise_jpeg(6001), "noise2.jpg": noise_jpeg(6002), "face.jpg": astronaut_jpeg(),
             NASTY_NAME: astronaut_jpeg(), "notes.txt": b"just text"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", {k: len(v) for k, v in files.items()}
    server.shutdown()
    server.server_close()


def run(scenario: Callable[[World], Coroutine[Any, Any, None]], cdn_url: str) -> None:
    async def main() -> None:
        world = World(asyncio.get_running_loop(), cdn_url)
        try:
            await scenario(world)
        finally:
            await world.close()

    asyncio.run(main())


def screener(live: Live, **overrides: Any) -> Screener:
    key = live.api_key("discord-bot")
    options: dict[str, Any] = {"models": "nsfw", "wait_seconds": 300.0, **overrides}
    config = BotConfig(deepscreen_url=live.url, deepscreen_api_key=key, channels=frozenset({GENERAL}), **options)
    return Screener(config, Client(live.url, api_key=key))


def test_a_clean_image_gets_a_check_mark(live: Live, cdn: tuple[str, dict[str, int]]) -> None:
    url, sizes = cdn
    bot = screener(live)

    async def scenario(world: World) -> None:
        message = world.message(files=[("noise.jpg", "image/jpeg", sizes["noise.jpg"]),
                                       ("notes.txt", "text/plain", sizes["notes.txt"])])
        done = await bot.handle(message)
        assert [s.filename for s in done.screened] == ["noise.jpg"]  # the text file is not an image
        job = done.screened[0].job
        assert job is not None and job.succeeded, done.screened[0].error
        assert job.results["nsfw"].label == "safe"
        assert bot.client.get_job(job.id).results["nsfw"].score == job.results["nsfw"].score
        reactions = world.calls("PUT", "/reactions/{emoji}/@me")
        assert len(reactions) == 1 and done.actions == [f"react {CLEAN}"]
        assert not done.flagged and world.calls("POST") == [] and world.calls("DELETE") == []

    run(scenario, url)


def test_a_flagged_image_is_reported_replied_to_and_deleted(live: Live, cdn: tuple[str, dict[str, int]]) -> None:
    url, sizes = cdn
    # Shipped models rarely flag generated test media, so the flag labels here are the two the deepfake
    # model can give a face ("real" / "fake"): whatever it says about the photo, the flag path runs on
    # a real verdict. Operators keep the default (fake, hateful, nsfw, synthetic).
    bot = screener(live, models="deepfake", actions=frozenset({"react", "reply", "flag", "delete"}), mod_channel=MODS,
                   flag_labels=frozenset({"real", "fake"}))

    async def scenario(world: World) -> None:
        message = world.message(content="what do you think?", files=[(NASTY_NAME, "image/jpeg", sizes[NASTY_NAME])])
        done = await bot.handle(message)
        assert done.flagged, done
        result = done.screened[0].job.results["deepfake"]  # type: ignore[union-attr]
        assert done.actions == [f"react {FLAGGED}", "reply", "flag", "delete"]
        reply, report = world.calls("POST", "/messages")
        assert reply.channel_id == GENERAL and reply.json["message_reference"]["message_id"] == message.id
        assert f"deepfake **{result.label}** {result.score:.2f}" in reply.json["content"]
        assert "not validated on real data" in reply.json["content"]
        assert "@everyone" not in reply.json["content"] and "\\*\\*look\\*\\*" in reply.json["content"]
        assert reply.json["allowed_mentions"]["parse"] == [] and not reply.json["allowed_mentions"]["replied_user"]
        assert report.channel_id == MODS and message.jump_url in report.json["content"]
        deleted = world.calls("DELETE", "/messages/{message_id}")
        assert len(deleted) == 1 and deleted[0].channel_id == GENERAL
        assert world.http.calls.index(deleted[0]) > world.http.calls.index(report)  # report first: it links

    run(scenario, url)


def test_other_channels_bots_and_text_only_messages_are_left_alone(live: Live,
                                                                   cdn: tuple[str, dict[str, int]]) -> None:
    url, sizes = cdn
    bot = screener(live)
    before = len(list(bot.client.iter_jobs()))

    async def scenario(world: World) -> None:
        image = [("noise2.jpg", "image/jpeg", sizes["noise2.jpg"])]
        assert (await bot.handle(world.message(channel=OTHER, files=image))).skipped == "channel"
        assert (await bot.handle(world.message(bot=True, author=(99, "otherbot"), files=image))).skipped == "bot"
        assert (await bot.handle(world.message(content="no pictures here"))).skipped == "no_images"
        assert world.http.calls == []

    run(scenario, url)
    assert len(list(bot.client.iter_jobs())) == before  # nothing was submitted


def test_per_user_and_per_guild_limits(live: Live, cdn: tuple[str, dict[str, int]]) -> None:
    url, sizes = cdn
    bot = screener(live, user_rate=Rate(1, 3600), guild_rate=Rate(2, 3600))  # windows longer than any job

    async def scenario(world: World) -> None:
        image = [("noise2.jpg", "image/jpeg", sizes["noise2.jpg"])]
        first = await bot.handle(world.message(author=(1, "ann"), files=image))
        again = await bot.handle(world.message(author=(1, "ann"), files=image))
        other = await bot.handle(world.message(author=(2, "bob"), files=image))
        third = await bot.handle(world.message(author=(3, "cy"), files=image))
        assert [first.skipped, again.skipped, other.skipped, third.skipped] == [None, "user_rate", None, "guild_rate"]
        assert again.actions == [f"react {SLOW_DOWN}"] and third.actions == [f"react {SLOW_DOWN}"]
        assert first.screened[0].job and other.screened[0].job
        assert first.screened[0].job.results["nsfw"].score == other.screened[0].job.results["nsfw"].score

    run(scenario, url)


def test_configuration_from_the_environment() -> None:
    env = {"DISCORD_TOKEN": "x", "DEEPSCREEN_API_KEY": "ds_a_b", "DEEPSCREEN_BOT_CHANNELS": "10, 11",
           "DEEPSCREEN_BOT_ACTIONS": "react,flag,delete", "DEEPSCREEN_BOT_MOD_CHANNEL": "12",
           "DEEPSCREEN_BOT_USER_RATE": "3/30"}
    config = BotConfig.from_env(env)
    assert config.channels == {10, 11} and config.actions == {"react", "flag", "delete"} and config.mod_channel == 12
    assert config.user_rate == Rate(3, 30.0) and config.guild_rate == Rate(60, 60.0)
    for broken, named in (({"DEEPSCREEN_BOT_ACTIONS": "react,ban"}, "DEEPSCREEN_BOT_ACTIONS"),
                          ({"DEEPSCREEN_BOT_MOD_CHANNEL": ""}, "DEEPSCREEN_BOT_MOD_CHANNEL"),
                          ({"DEEPSCREEN_BOT_USER_RATE": "lots"}, "DEEPSCREEN_BOT_USER_RATE"),
                          ({"DEEPSCREEN_BOT_CHANNELS": ""}, "DEEPSCREEN_BOT_CHANNELS")):
        with pytest.raises(ConfigError, match=named):
            BotConfig.from_env({**env, **broken})


def test_the_bot_module_builds_a_client_with_the_message_content_intent() -> None:
    from clients.discord_bot.bot import DeepscreenBot

    config = BotConfig(deepscreen_url="http://127.0.0.1:1", deepscreen_token="t", channels=frozenset({GENERAL}))
    bot = DeepscreenBot(config)
    assert bot.intents.message_content and bot.intents.guild_messages
    assert isinstance(bot.screener, Screener)


