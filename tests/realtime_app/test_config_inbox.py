"""Settings of stored messages and the Redis pool (issue 8)."""

from __future__ import annotations

import pytest

from realtime_app.config import ConfigError, load_config

BASE = {"JWT_SECRET": "x" * 32}


def test_defaults() -> None:
    config = load_config([], BASE)
    assert config.max_stored_messages_per_sender is None
    assert config.stored_messages_per_sender == 100  # a tenth of 1000
    assert config.stored_message_ttl == 7 * 24 * 3600
    assert config.inbox_page_size == 50
    assert config.redis_pool_size == 50
    assert load_config([], {**BASE, "MAX_STORED_MESSAGES": "5"}).stored_messages_per_sender == 1


def test_environment_and_flags() -> None:
    env = {**BASE, "MAX_STORED_MESSAGES": "500", "MAX_STORED_MESSAGES_PER_SENDER": "20",
           "STORED_MESSAGE_TTL": "3600", "INBOX_PAGE_SIZE": "10", "REDIS_POOL_SIZE": "8"}
    config = load_config([], env)
    assert (config.stored_messages_per_sender, config.stored_message_ttl,
            config.inbox_page_size, config.redis_pool_size) == (20, 3600.0, 10, 8)
    flags = load_config(["--max-stored-messages-per-sender", "7", "--stored-message-ttl", "60",
                         "--inbox-page-size", "3", "--redis-pool-size", "2"], env)
    assert (flags.stored_messages_per_sender, flags.stored_message_ttl,
            flags.inbox_page_size, flags.redis_pool_size) == (7, 60.0, 3, 2)


@pytest.mark.parametrize(("env", "message"), [
    ({"MAX_STORED_MESSAGES_PER_SENDER": "0"}, "MAX_STORED_MESSAGES_PER_SENDER must be between"),
    ({"MAX_STORED_MESSAGES_PER_SENDER": "1001"}, "must be <= MAX_STORED_MESSAGES (1000)"),
    ({"MAX_STORED_MESSAGES_PER_SENDER": "x"}, "MAX_STORED_MESSAGES_PER_SENDER must be an int"),
    ({"STORED_MESSAGE_TTL": "0"}, "STORED_MESSAGE_TTL must be between 1 and"),
    ({"STORED_MESSAGE_TTL": "1.5"}, "STORED_MESSAGE_TTL must be an integer"),
    ({"INBOX_PAGE_SIZE": "0"}, "INBOX_PAGE_SIZE must be between 1 and 1000"),
    ({"INBOX_PAGE_SIZE": "1001"}, "INBOX_PAGE_SIZE must be between 1 and 1000"),
    ({"REDIS_POOL_SIZE": "0"}, "REDIS_POOL_SIZE must be between 1 and 10000"),
])
def test_bad_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config([], {**BASE, **env})


def test_help_names_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_config(["--help"], BASE)
    out = capsys.readouterr().out
    for flag in ("--max-stored-messages-per-sender", "--stored-message-ttl",
                 "--inbox-page-size", "--redis-pool-size"):
        assert flag in out
    assert "10% of the max" in out
