import pytest

from connector.apns.reasons import REASON_STATUS, Reason, Verdict, classify


@pytest.mark.parametrize(
    ("status", "reason", "verdict"),
    [
        (200, None, Verdict.DELIVERED),
        (410, "Unregistered", Verdict.TOKEN_INVALID),
        (410, "ExpiredToken", Verdict.TOKEN_INVALID),
        (400, "BadDeviceToken", Verdict.TOKEN_INVALID),
        (400, "DeviceTokenNotForTopic", Verdict.TOKEN_INVALID),
        (400, "BadTopic", Verdict.CONFIGURATION),
        (403, "InvalidProviderToken", Verdict.CONFIGURATION),
        (403, "ExpiredProviderToken", Verdict.RETRIABLE),
        (429, "TooManyRequests", Verdict.RETRIABLE),
        (503, "Shutdown", Verdict.RETRIABLE),
        (400, "IdleTimeout", Verdict.RETRIABLE),
        (413, "PayloadTooLarge", Verdict.PERMANENT),
        (400, "BadCollapseId", Verdict.PERMANENT),
        # Unknown reasons are permanent, whatever the status says.
        (400, "SomethingNew", Verdict.PERMANENT),
        (503, "SomethingNew", Verdict.PERMANENT),
        (500, None, Verdict.RETRIABLE),
    ],
)
def test_answers_are_classified(
    status: int, reason: str | None, verdict: Verdict
) -> None:
    assert classify(status, reason) is verdict


def test_every_reason_has_a_status() -> None:
    assert set(REASON_STATUS) == set(Reason)
