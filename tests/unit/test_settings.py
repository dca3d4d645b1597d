"""Settings: defaults < TOML file < environment < flags; bad values fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import Settings


def test_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "offerbandit.toml"
    cfg.write_text(
        'port = 6000\ncontrol_share = 0.1\nexploration = "--squarecb"\n'
        "[channel_windows]\nweb_banner = 1800\nemail = 604800\n"
    )
    monkeypatch.setenv("OFFERBANDIT_CONTROL_SHARE", "0.2")
    s = Settings.load(cfg, data_dir=tmp_path / "d")
    assert (s.port, s.control_share, s.exploration) == (6000, 0.2, "--squarecb")
    assert s.channel_windows == {"web_banner": 1800.0, "email": 604800.0}
    sc = s.service_config()
    assert sc.windows.for_channel("web_banner") == 1800.0
    assert sc.windows.for_channel("sms") == s.attribution_window_seconds
    assert sc.data_dir == tmp_path / "d"
    assert sc.synchronous == "FULL"


def test_defaults_just_work() -> None:
    s = Settings.load()
    assert (s.host, s.port, s.durability, s.control_share) == ("127.0.0.1", 50051, "full", 0.05)
    assert s.max_treatments >= 1000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("control_share", 1.5),
        ("port", 70000),
        ("interactions", ["c"]),
        ("durability", "sometimes"),
        ("reward_scale", 0),
        ("no_such_setting", 1),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.load(**{field: value})
