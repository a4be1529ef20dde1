"""mask_url: every credential a URL can carry is masked, and nothing it cannot parse raises."""

from __future__ import annotations

import pytest

from fleetsvc.secrets import mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://fleet@127.0.0.1/fleet", "postgresql://fleet@127.0.0.1/fleet"),
        ("postgresql://u:hunter2@db:5432/fleet", "postgresql://u:***@db:5432/fleet"),
        ("mqtts://u:p%40ss@[::1]:8883", "mqtts://u:***@[::1]:8883"),
        (
            "postgresql://db/fleet?user=u&password=hunter2&sslmode=require",
            "postgresql://db/fleet?user=u&password=***&sslmode=require",
        ),
        (
            "postgresql://db/fleet?sslpassword=k3y&PASSWORD=x",
            "postgresql://db/fleet?sslpassword=***&PASSWORD=***",
        ),
        (
            "https://hooks.example/x?client_secret=s&access_token=t&id=7",
            "https://hooks.example/x?client_secret=***&access_token=***&id=7",
        ),
        (
            "postgresql://u:pw@h1:5432,h2:5433/fleet?target_session_attrs=read-write",
            "postgresql://u:***@h1:5432,h2:5433/fleet?target_session_attrs=read-write",
        ),
        ("postgresql://u:pw@db:99999/fleet", "postgresql://u:***@db:99999/fleet"),
        ("postgresql://db/fleet?password", "postgresql://db/fleet?password"),
    ],
)
def test_every_credential_is_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_an_unparseable_url_is_not_echoed() -> None:
    assert mask_url("postgresql://u:pw@[::1/fleet") == "<unparseable url>"
