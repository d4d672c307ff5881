from pathlib import Path

import pytest

from connector.errors import ConfigurationError
from connector.settings import Environment, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text)
    return path


APP = """
[[apps]]
bundle_id = "com.example.app"
environment = "sandbox"
key_file = "/secrets/AuthKey.p8"
key_id = "KEYID12345"
team_id = "TEAMID1234"
"""


def test_file_and_environment_are_merged(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka]\nbootstrap = 'k:9092'\n" + APP)
    settings = load(path, {"APNS_CONNECTOR_DELIVERY__MAX_IN_FLIGHT": "50"})

    assert settings.kafka.bootstrap == "k:9092"
    assert settings.delivery.max_in_flight == 50
    app = settings.app("com.example.app")
    assert app is not None
    assert app.environment is Environment.SANDBOX
    assert app.apns_host == "api.sandbox.push.apple.com"
    assert app.port == 443


def test_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, APP)
    settings = load(None, {"APNS_CONNECTOR_CONFIG": str(path)})
    assert [app.bundle_id for app in settings.apps] == ["com.example.app"]


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (
            "",
            {"APNS_CONNECTOR_DELIVERY__MAX_IN_FLIGHT": "many"},
            (
                "invalid setting: delivery.max_in_flight: Expected `int`, got `str` "
                "(from the environment variable APNS_CONNECTOR_DELIVERY__MAX_IN_FLIGHT)"
            ),
        ),
        (
            "[delivery]\nmax_in_flight = 0\n",
            {},
            "invalid setting: delivery.max_in_flight: Expected `int` >= 1",
        ),
        (
            "[delivery]\nmax_in_fligt = 3\n",
            {},
            "invalid setting: delivery: Object contains unknown field `max_in_fligt`",
        ),
        (
            APP.replace('environment = "sandbox"', 'environment = "staging"'),
            {},
            "invalid setting: apps[0].environment: Invalid enum value 'staging'",
        ),
        (
            APP.replace('key_id = "KEYID12345"\n', ""),
            {},
            "apps[0] (com.example.app).key_id: required for token authentication",
        ),
        (
            APP.replace('key_id = "KEYID12345"', 'key_id = "KEY"'),
            {},
            (
                "apps[0] (com.example.app).key_id: Apple's ids are 10 upper-case "
                "letters and digits, not 'KEY'"
            ),
        ),
        (
            APP.replace('team_id = "TEAMID1234"', 'team_id = "teamid1234"'),
            {},
            (
                "apps[0] (com.example.app).team_id: Apple's ids are 10 upper-case "
                "letters and digits, not 'teamid1234'"
            ),
        ),
        (
            APP + APP,
            {},
            "apps[1] (com.example.app): bundle_id appears twice",
        ),
        (
            "",
            {"APNS_CONNECTOR_KAFKA__BOOTSTRAPS": "x"},
            (
                "environment variable APNS_CONNECTOR_KAFKA__BOOTSTRAPS names no setting; "
                "settings are APNS_CONNECTOR_<SECTION>__<NAME> with a section of "
                "['delivery', 'kafka', 'telemetry']"
            ),
        ),
    ],
)
def test_bad_setting_is_named(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load(write(tmp_path, text), environ)
    assert str(raised.value) == message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load(tmp_path / "absent.toml", {})
    assert (
        str(raised.value) == f"settings file {tmp_path / 'absent.toml'} does not exist"
    )
