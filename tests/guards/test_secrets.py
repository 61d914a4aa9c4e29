"""The secrets scanner: documented token formats caught, ordinary text and code left alone."""

from __future__ import annotations

import pytest

from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import Scanner
from charter.guards.pii import PIIScanner
from charter.guards.redaction import RedactionVault, Redactor
from charter.guards.secrets import SECRET_KINDS, SecretsScanner, shannon_entropy

# Fabricated values in the documented shapes; none of them is a live credential.
OPENAI = "sk-proj-" + "Xq7vT2mL9pR4sW1zK8nB3cF6hJ0dG5yA" + "_-u2Ee4Rr6Tt8Yy0Ii"
ANTHROPIC = "sk-ant-api03-" + "Zx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0DdSs_Aa-Qq" * 2 + "AA"
GITHUB = "ghp_" + "R8mT2xQ9vL4nK7pW1sZ5cB3dF6hJ0gY2aE8u"
GITHUB_PAT = (
    "github_pat_11ABCDEFG0"
    + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9"
    + "_"
    + "x" * 20
    + "Q1w2E3r4T5y6U7i8O9p0"
)
SLACK = "xoxb-" + "2048123456-4096123456789-" + "Qw9Er8Ty7Ui6Op5As4Df3Gh2"
STRIPE = "sk_live_" + "51Hc8QxLk2Vb9Nm4Pq7Rs3Tu"
GOOGLE = "AIza" + "SyB3x9Qm2Lk7Vp4Nw8Rt1Yz6Hc5Jd0Fg-Ke"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ"
    ".Sfl4KxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AWS_ID = "AKIA" + "Q3VX7B2MZKXR4TZ5"  # base32: A-Z and 2-7
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "Q9Lm2Vx4Zt"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAz3x9Lm2Vx4ZtQ9Lm2Vx4ZtQ9Lm2Vx4ZtQ9Lm2Vx4ZtQ9Lm2Vx\n"
    "b3Jk+Q9Lm2Vx4ZtQ9Lm2Vx4ZtQ9Lm2Vx4Zt/Q9Lm2Vx4ZtQ9Lm2Vx4ZtQ9Lm2V==\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.fixture(scope="module")
def scanner() -> SecretsScanner:
    return SecretsScanner()


def found(scanner: SecretsScanner, text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.label) for s in scanner.scan(text).spans]


@pytest.mark.parametrize(
    ("text", "secret", "label"),
    [
        (f"my key is {OPENAI} thanks", OPENAI, "OPENAI_API_KEY"),
        (
            "legacy sk-" + "T3BlbkFJ" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0",
            None,
            "OPENAI_API_KEY",
        ),
        (f"ANTHROPIC_API_KEY={ANTHROPIC}", ANTHROPIC, "ANTHROPIC_API_KEY"),
        (f"aws id {AWS_ID}", AWS_ID, "AWS_ACCESS_KEY_ID"),
        (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "AWS_SECRET_ACCESS_KEY"),
        (f'AWS_SECRET_KEY: "{AWS_SECRET}"', AWS_SECRET, "AWS_SECRET_ACCESS_KEY"),
        (f"git remote uses {GITHUB}", GITHUB, "GITHUB_TOKEN"),
        (f"token {GITHUB_PAT}", GITHUB_PAT, "GITHUB_TOKEN"),
        (f"SLACK_BOT_TOKEN={SLACK}", SLACK, "SLACK_TOKEN"),
        (f"stripe.api_key = '{STRIPE}'", STRIPE, "STRIPE_KEY"),
        (f"maps key {GOOGLE} in the page", GOOGLE, "GOOGLE_API_KEY"),
        (f"Authorization: Bearer {JWT}", JWT, "JWT"),
        (f"here is the key\n{PEM}\nthanks", PEM, "PRIVATE_KEY"),
        ("postgresql://app:S3cr3t-Pw9@db.internal:5432/app", "S3cr3t-Pw9", "CONNECTION_PASSWORD"),
        (
            "mongodb+srv://admin:Zq8%21xLm2@cluster0.mongodb.net/db",
            "Zq8%21xLm2",
            "CONNECTION_PASSWORD",
        ),
        ("REDIS_URL=redis://:hunter2pw@cache:6379/0", "hunter2pw", "CONNECTION_PASSWORD"),
        ('password = "Tr0ub4dor&3xq"', "Tr0ub4dor&3xq", "SECRET_ASSIGNMENT"),
        ('{"api_key": "9f8a7c6b5d4e3f2a1b0c"}', "9f8a7c6b5d4e3f2a1b0c", "SECRET_ASSIGNMENT"),
        ("db_password: Vx9!mQ2#rT7z", "Vx9!mQ2#rT7z", "SECRET_ASSIGNMENT"),
    ],
)
def test_catches_each_secret_format(
    scanner: SecretsScanner, text: str, secret: str | None, label: str
) -> None:
    hits = found(scanner, text)
    assert [lbl for _, lbl in hits] == [label], hits
    if secret is not None:
        assert hits[0][0] == secret


def test_truncated_private_key_is_still_caught(scanner: SecretsScanner) -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
    assert found(scanner, text) == [(text, "PRIVATE_KEY")]


@pytest.mark.parametrize(
    "text",
    [
        "Please reset the password for my account, I forgot my password again.",
        "if password == confirm_password:\n    return check(password)",
        'password = os.environ["DB_PASSWORD"]',
        "passwd=self.config.password",
        "api_key = get_api_key()",
        "password: ${DB_PASSWORD}",
        "token: <your-token-here>",
        "password = 'changeme123'",
        "the secret = happiness",
        "postgresql://user:password@localhost/db",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed the bug",
        "request id 123e4567-e89b-12d3-a456-426614174000 failed",
        "The ask-me-anything session and the task-runner-for-builds are at 10.",
        "Use the sk-learn library; risk-adjusted returns were 4.2%.",
        "A JWT starts with eyJ, like eyJhbGciOi, and that is all I know.",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----",
        "AKIA is the prefix of AWS access key ids.",
    ],
)
def test_ordinary_text_and_code_are_not_flagged(scanner: SecretsScanner, text: str) -> None:
    assert found(scanner, text) == []
    assert scanner.scan(text).score == 0.0


def test_secrets_redact_and_restore_through_the_shared_redactor(scanner: SecretsScanner) -> None:
    redactor = Redactor([PIIScanner(["EMAIL_ADDRESS"]), scanner])
    vault = RedactionVault()
    text = f"I am jane@example.org and my key is {OPENAI}; db postgresql://app:S3cr3t-Pw9@db/app"
    red = redactor.redact(text, vault)
    assert red.text == (
        "I am <EMAIL_ADDRESS_1> and my key is <OPENAI_API_KEY_1>; "
        "db postgresql://app:<CONNECTION_PASSWORD_1>@db/app"
    )
    assert OPENAI not in red.text
    assert redactor.restore("rotate <OPENAI_API_KEY_1> now", vault) == f"rotate {OPENAI} now"


def test_kinds_restrict_the_scanner() -> None:
    only_aws = SecretsScanner(["aws_access_key_id"])
    assert found(only_aws, f"{AWS_ID} {GITHUB}") == [(AWS_ID, "AWS_ACCESS_KEY_ID")]
    with pytest.raises(ConfigurationError, match="unknown secret kind"):
        SecretsScanner(["PASSWORD_OF_MARS"])
    with pytest.raises(InvalidRequest):
        only_aws.scan(None)  # type: ignore[arg-type]


def test_scanner_protocol_and_result_shape(scanner: SecretsScanner) -> None:
    assert isinstance(scanner, Scanner)
    result = scanner.scan(f"{AWS_ID} and {GITHUB}")
    assert result.score == pytest.approx(0.97)
    assert result.detail == "AWS_ACCESS_KEY_ID x1, GITHUB_TOKEN x1"
    assert {"OPENAI_API_KEY", "PRIVATE_KEY", "JWT"} <= SECRET_KINDS


def test_entropy_separates_words_from_keys() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaaaaaa") == 0.0
    assert shannon_entropy("password") < 3.0
    assert shannon_entropy("Xq7vT2mL9pR4sW1z") == pytest.approx(4.0)
