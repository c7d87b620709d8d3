"""The ``adapters.onebot`` and ``adapters.wecom`` sections of config.yaml: checked with key-path errors by
their plugins, their secrets masked by ``paibot check`` and redacted from logs."""

from __future__ import annotations

import pytest

from bot.config import masked, parse_settings, secrets_of
from bot.errors import ConfigError

AES = "A" * 43


def settings(section: str):  # noqa: ANN201 - Settings
    return parse_settings("adapters:\n  web: {enabled: false}\n" + section)


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ("  onebot: {enabled: true, mode: forward}\n", "adapters.onebot.url", "WebSocket URL"),
        ("  onebot: {enabled: true, mode: http, url: 'ws://x'}\n", "adapters.onebot.url", "HTTP API URL"),
        ("  onebot: {enabled: true, mode: sideways}\n", "adapters.onebot.mode", "forward, reverse, http"),
        ("  onebot: {enabled: true, mode: reverse, listen: 0.0.0.0}\n", "adapters.onebot.access_token",
         "anyone on the network"),
        ("  onebot: {enabled: true, url: 'ws://x', message_limit: 10}\n", "adapters.onebot.message_limit",
         "between 50 and 4500"),
        ("  onebot: {enabled: true, url: 'ws://x', port: 'abc'}\n", "adapters.onebot.port", "whole number"),
        ("  wecom: {enabled: true, encoding_aes_key: " + AES + "}\n", "adapters.wecom.token", "Token"),
        ("  wecom: {enabled: true, token: t, encoding_aes_key: short}\n", "adapters.wecom.encoding_aes_key",
         "43-character"),
    ],
)  # fmt: skip
def test_mistakes_name_their_key(section: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(section)
    assert info.value.path == path and words in info.value.problem


def test_a_reverse_endpoint_on_the_network_is_fine_with_a_token_and_secrets_are_masked() -> None:
    s = settings(
        "  onebot: {enabled: true, mode: reverse, listen: 0.0.0.0, access_token: obtoken-123,"
        " secret: sig-456}\n"
        f"  wecom: {{enabled: true, token: wctoken-789, encoding_aes_key: {AES}}}\n"
    )
    shown = masked(s)["adapters"]
    assert shown["onebot"]["access_token"] == shown["onebot"]["secret"] == "***"
    assert shown["wecom"]["token"] == shown["wecom"]["encoding_aes_key"] == "***"
    assert {"obtoken-123", "sig-456", "wctoken-789", AES} <= set(secrets_of(s))
