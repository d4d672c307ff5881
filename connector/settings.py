"""Typed settings, read once at start from a TOML file and the environment.

The file holds the whole configuration; an environment variable overrides one scalar
setting, named `APNS_CONNECTOR_<SECTION>__<NAME>` (for example
`APNS_CONNECTOR_DELIVERY__MAX_IN_FLIGHT=500`). Apps and their credentials come from the
file only. Anything wrong stops the process at start with a `ConfigurationError` that
names the setting.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from connector.apns.proxy import parse_proxy_url
from connector.apns.push_types import PORTS, PRODUCTION_HOST, SANDBOX_HOST
from connector.errors import ConfigurationError

ENV_PREFIX = "APNS_CONNECTOR_"
CONFIG_ENV = "APNS_CONNECTOR_CONFIG"

Positive = Annotated[int, msgspec.Meta(gt=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]


class Environment(enum.StrEnum):
    PRODUCTION = "production"
    SANDBOX = "sandbox"


class Auth(enum.StrEnum):
    # An ES256 JWT signed with the team's `.p8` key.
    TOKEN = "token"
    # A TLS client certificate: a `.p12` file, or PEM certificate and key.
    CERTIFICATE = "certificate"


class KafkaSettings(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True
):
    bootstrap: str = "127.0.0.1:9092"
    group_id: str = "apns-connector"
    requests_topic: str = "apns.requests"
    results_topic: str = "apns.results"
    invalid_tokens_topic: str = "apns.invalid-tokens"
    dlq_topic: str = "apns.requests.dlq"
    client_id: str = "apns-connector"
    commit_interval_ms: Positive = 200


class DeliverySettings(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True
):
    max_in_flight: Positive = 1000
    request_timeout_s: PositiveSeconds = 10.0
    max_attempts: Positive = 3
    retry_backoff_s: PositiveSeconds = 0.2
    # Resends of one request stop once this much time has passed since its first
    # attempt; then its outcome is `failed`, marked retriable.
    retry_budget_s: PositiveSeconds = 30.0
    drain_timeout_s: PositiveSeconds = 20.0
    # One connection serves up to the streams APNs allows; more open only when all
    # of an app's connections are full.
    max_connections_per_app: Positive = 4
    # A connection that heard nothing for this long sends a PING; no answer within
    # the request timeout marks the peer dead.
    ping_interval_s: PositiveSeconds = 60.0


class AppSettings(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True
):
    """One app: its bundle id, where its pushes go and how they authenticate."""

    bundle_id: str
    environment: Environment = Environment.PRODUCTION
    auth: Auth = Auth.TOKEN
    key_file: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    certificate_file: str | None = None
    certificate_key_file: str | None = None
    certificate_password_file: str | None = None
    # Overrides of Apple's host, for the simulator or a proxy in front of Apple.
    host: str | None = None
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 443
    ca_file: str | None = None
    # An HTTP proxy to reach the host through, with CONNECT: "http://proxy:3128".
    proxy_url: str | None = None

    @property
    def apns_host(self) -> str:
        if self.host is not None:
            return self.host
        if self.environment is Environment.SANDBOX:
            return SANDBOX_HOST
        return PRODUCTION_HOST


class TelemetrySettings(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True
):
    # One HTTP listener for /livez, /readyz and /metrics.
    http_host: str = "0.0.0.0"
    http_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    log_level: str = "INFO"


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    kafka: KafkaSettings = KafkaSettings()
    delivery: DeliverySettings = DeliverySettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    apps: list[AppSettings] = []

    def app(self, bundle_id: str) -> AppSettings | None:
        for app in self.apps:
            if app.bundle_id == bundle_id:
                return app
        return None


def load(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings file and the environment, and check everything."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])

    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_file(path)

    from_environment = _apply_environment(raw, environ)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        named = _name_setting(exc)
        variable = from_environment.get(named.partition(":")[0])
        if variable is not None:
            named = f"{named} (from the environment variable {variable})"
        raise ConfigurationError(f"invalid setting: {named}") from exc

    _check(settings)
    return settings


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"settings file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigurationError(f"settings file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"settings file {path} is not TOML: {exc}") from exc


def _apply_environment(
    raw: dict[str, Any], environ: Mapping[str, str]
) -> dict[str, str]:
    """Put the variables' values in place; the variable of each setting set."""
    applied = {}
    sections = {
        "kafka": KafkaSettings,
        "delivery": DeliverySettings,
        "telemetry": TelemetrySettings,
    }
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        section, _, field = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in sections or field not in sections[section].__struct_fields__:
            raise ConfigurationError(
                f"environment variable {name} names no setting; settings are "
                f"{ENV_PREFIX}<SECTION>__<NAME> with a section of {sorted(sections)}"
            )
        raw.setdefault(section, {})[field] = value
        applied[f"{section}.{field}"] = name
    return applied


def _name_setting(exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.delivery.max_in_flight`"; name the setting first.
    message = str(exc).removesuffix(" - at `$`")
    problem, found, where = message.rpartition(" - at `$.")
    if not found:
        return message
    return f"{where.rstrip('`')}: {problem}"


# Apple's key ids and team ids: ten upper-case letters and digits.
_APPLE_ID = re.compile(r"[A-Z0-9]{10}")

_REQUIRED_BY_AUTH = {
    Auth.TOKEN: ("key_file", "key_id", "team_id"),
    Auth.CERTIFICATE: ("certificate_file",),
}


def _check(settings: Settings) -> None:
    seen: set[str] = set()
    for index, app in enumerate(settings.apps):
        where = f"apps[{index}] ({app.bundle_id})"
        if app.bundle_id in seen:
            raise ConfigurationError(f"{where}: bundle_id appears twice")
        seen.add(app.bundle_id)

        required = _REQUIRED_BY_AUTH[app.auth]
        for field in required:
            if not getattr(app, field):
                raise ConfigurationError(
                    f"{where}.{field}: required for {app.auth.value} authentication"
                )

        if app.auth is Auth.TOKEN:
            for field in ("key_id", "team_id"):
                value = getattr(app, field)
                if not _APPLE_ID.fullmatch(value):
                    raise ConfigurationError(
                        f"{where}.{field}: Apple's ids are 10 upper-case letters "
                        f"and digits, not {value!r}"
                    )

        # Another host (the simulator, a gateway) may listen anywhere; Apple does not.
        if app.host is None and app.port not in PORTS:
            raise ConfigurationError(
                f"{where}.port: Apple listens on 443 or 2197, not {app.port}"
            )
        if app.proxy_url is not None:
            try:
                parse_proxy_url(app.proxy_url)
            except ValueError as exc:
                raise ConfigurationError(f"{where}.proxy_url: {exc}") from exc


def require_apps(settings: Settings) -> None:
    """For the commands that deliver: without an app every request would be refused."""
    if not settings.apps:
        raise ConfigurationError(
            "apps: no app is configured; add an [[apps]] table to the settings file "
            f"(--config or {CONFIG_ENV})"
        )
