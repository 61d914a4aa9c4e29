"""The PII scanner and reversible redaction: detection, offline operation, vault safety, quality."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import spacy
import tldextract
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import Scanner
from charter.guards.pii import NER_ENTITIES, PATTERN_ENTITIES, PIIScanner
from charter.guards.redaction import RedactionVault, Redactor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))
import shared_data

DATA = shared_data.data_dir() / "pii" / "presidio_synth.jsonl"
ALL_PATTERN = sorted(PATTERN_ENTITIES)


@pytest.fixture(scope="module")
def scanner() -> PIIScanner:
    return PIIScanner(ALL_PATTERN)


def found(scanner: PIIScanner, text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.label) for s in scanner.scan(text).spans]


@pytest.mark.parametrize(
    ("text", "value", "label"),
    [
        ("Write to jane.doe@example.org today.", "jane.doe@example.org", "EMAIL_ADDRESS"),
        ("Call my phone on 541-714-1388 after six.", "541-714-1388", "PHONE_NUMBER"),
        ("Mobile: +44 7911 123456", "+44 7911 123456", "PHONE_NUMBER"),
        ("What is the limit for card 4454794511390933?", "4454794511390933", "CREDIT_CARD"),
        ("card 4111-1111-1111-1111 expires soon", "4111-1111-1111-1111", "CREDIT_CARD"),
        ("Maestro 6304273733980000000", "6304273733980000000", "CREDIT_CARD"),
        ("Pay to IBAN GB59IFUE40226315499137 please", "GB59IFUE40226315499137", "IBAN_CODE"),
        ("Here's my SSN: 460-89-9847", "460-89-9847", "US_SSN"),
        ("the server at 106.31.73.20 is down", "106.31.73.20", "IP_ADDRESS"),
        ("ipv6 2001:db8:85a3::8a2e:370:7334 answers", "2001:db8:85a3::8a2e:370:7334", "IP_ADDRESS"),
        ("see https://www.UEarly.se/ for details", "https://www.UEarly.se/", "URL"),
        (
            "wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
            "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
            "CRYPTO",
        ),
        ("mac address 00:1A:2B:3C:4D:5E on eth0", "00:1A:2B:3C:4D:5E", "MAC_ADDRESS"),
        ("my NHS number is 401 023 2137", "401 023 2137", "UK_NHS"),
    ],
)
def test_detects_each_entity_type(scanner: PIIScanner, text: str, value: str, label: str) -> None:
    assert (value, label) in found(scanner, text)
    assert scanner.scan(text).score > 0


def test_luhn_invalid_card_is_not_flagged(scanner: PIIScanner) -> None:
    assert found(scanner, "card 4454794511390934 is on file") == []


def test_ordinary_text_has_no_pii(scanner: PIIScanner) -> None:
    text = (
        "Hello, I ordered shoes on March 3, order 48213, total 129.90 EUR, app version 3.14.2. "
        "Could you check with the courier? The meeting is at 10:30 in room 4."
    )
    result = scanner.scan(text)
    assert result.spans == ()
    assert result.score == 0.0


def test_file_names_are_not_urls(scanner: PIIScanner) -> None:
    """Pins Presidio flagging setup.py / main.rs / README.md as schemeless URLs (.py is a TLD)."""
    text = "run setup.py, then edit main.rs and README.md; docs at example.py/help"
    assert found(scanner, text) == [("example.py/help", "URL")]


def test_only_the_entity_types_asked_for_are_reported() -> None:
    only_email = PIIScanner(["email_address"])
    text = "mail jane@example.org or call 541-714-1388"
    assert found(only_email, text) == [("jane@example.org", "EMAIL_ADDRESS")]
    assert only_email.entities == ("EMAIL_ADDRESS",)


def test_prefilter_finds_what_the_full_scan_finds(scanner: PIIScanner) -> None:
    full = PIIScanner(ALL_PATTERN, prefilter=False)
    text = (
        "Reach Jane at jane.doe@example.org or 541-714-1388. " * 3
        + "Card 4454794511390933, IBAN GB59IFUE40226315499137, host 10.0.0.7, "
        + "docs at https://example.com/help, SSN 460-89-9847."
    )
    assert scanner.scan(text).spans == full.scan(text).spans
    assert len(scanner.scan(text).spans) >= 9


def test_overlapping_findings_keep_one_label_per_character(scanner: PIIScanner) -> None:
    # The domain of an email also matches the URL recognizer; only the email may be reported.
    assert found(scanner, "jane@example.com") == [("jane@example.com", "EMAIL_ADDRESS")]


def test_named_entity_types_without_a_model_say_how_to_fix_it() -> None:
    with pytest.raises(ConfigurationError) as err:
        PIIScanner(["EMAIL_ADDRESS", "PERSON"])
    assert "PERSON" in str(err.value)
    assert "ner_model" in str(err.value)


def test_a_missing_ner_model_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not installed"):
        PIIScanner(["PERSON"], ner_model=str(tmp_path / "no-such-pipeline"))


def test_a_pipeline_without_ner_is_refused(tmp_path: Path) -> None:
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(ConfigurationError, match="no named-entity component"):
        PIIScanner(["PERSON"], ner_model=str(tmp_path / "blank"))


def test_ner_entities_come_from_an_installed_pipeline(tmp_path: Path) -> None:
    # A rule-based pipeline stands in for a trained one: the plumbing is the same.
    nlp = spacy.blank("en")
    ruler: Any = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "rubija"}]}])
    nlp.to_disk(tmp_path / "ner")
    pii = PIIScanner(["PERSON", "EMAIL_ADDRESS"], ner_model=str(tmp_path / "ner"))
    text = "My name is Rubija, mail rubija@example.org"
    assert found(pii, text) == [("Rubija", "PERSON"), ("rubija@example.org", "EMAIL_ADDRESS")]


@pytest.mark.parametrize(
    "entities",
    [[], ["EMAIL_ADDRESS", "PASSPORT_OF_MARS"], "EMAIL_ADDRESS"],
)
def test_bad_entity_lists_are_configuration_errors(entities: Any) -> None:
    with pytest.raises(ConfigurationError):
        PIIScanner(entities)


def test_bad_threshold_and_bad_input_are_clear_errors(scanner: PIIScanner) -> None:
    with pytest.raises(ConfigurationError, match="score_threshold"):
        PIIScanner(["EMAIL_ADDRESS"], score_threshold=1.5)
    with pytest.raises(ConfigurationError, match="phone region"):
        PIIScanner(["PHONE_NUMBER"], phone_regions=["XX"])
    with pytest.raises(InvalidRequest):
        scanner.scan(b"jane@example.org")  # type: ignore[arg-type]


def test_implements_the_scanner_protocol(scanner: PIIScanner) -> None:
    assert isinstance(scanner, Scanner)
    assert NER_ENTITIES.isdisjoint(PATTERN_ENTITIES)


def test_runs_with_no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Pins the stock email recognizer fetching the public suffix list on first use."""
    attempts: list[tuple[Any, ...]] = []

    def deny(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", deny)
    monkeypatch.setattr(socket, "create_connection", deny)
    monkeypatch.setattr(socket.socket, "connect", deny)
    # A cold tldextract (empty cache, default URLs): any use of it would try to download.
    monkeypatch.setattr(
        tldextract.tldextract, "TLD_EXTRACTOR", tldextract.TLDExtract(cache_dir=str(tmp_path))
    )
    pii = PIIScanner(ALL_PATTERN)
    text = "mail jane@example.co.uk, see www.example.com.au/x and https://example.org"
    labels = {label for _, label in found(pii, text)}
    assert labels == {"EMAIL_ADDRESS", "URL"}
    assert attempts == []


# Redaction --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redactor(scanner: PIIScanner) -> Redactor:
    return Redactor([scanner])


def test_redact_and_restore_round_trip(redactor: Redactor) -> None:
    vault = RedactionVault()
    text = "I am jane@example.org, phone 541-714-1388, card 4454794511390933."
    red = redactor.redact(text, vault)
    assert red.text == "I am <EMAIL_ADDRESS_1>, phone <PHONE_NUMBER_1>, card <CREDIT_CARD_1>."
    assert [s.label for s in red.spans] == ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"]
    answer = "Thanks <EMAIL_ADDRESS_1>, I will call <PHONE_NUMBER_1> about <CREDIT_CARD_1>."
    assert redactor.restore(answer, vault) == (
        "Thanks jane@example.org, I will call 541-714-1388 about 4454794511390933."
    )


def test_same_value_same_placeholder_within_a_conversation(redactor: Redactor) -> None:
    vault = RedactionVault()
    first = redactor.redact("a@example.org and b@example.org", vault)
    second = redactor.redact("again b@example.org, then a@example.org", vault)
    assert first.text == "<EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>"
    assert second.text == "again <EMAIL_ADDRESS_2>, then <EMAIL_ADDRESS_1>"
    other = RedactionVault()
    assert redactor.redact("b@example.org", other).text == "<EMAIL_ADDRESS_1>"


@pytest.mark.parametrize(
    "mangled",
    [
        "<email_address_1>",
        "EMAIL_ADDRESS_1",
        "[EMAIL_ADDRESS_1]",
        "<EMAIL ADDRESS 1>",
        "< EMAIL_ADDRESS_1 >",
        "{Email-Address-1}",
    ],
)
def test_mangled_placeholders_are_restored(redactor: Redactor, mangled: str) -> None:
    vault = RedactionVault()
    redactor.redact("mail jane@example.org", vault)
    assert vault.restore(f"Sent to {mangled}.") == "Sent to jane@example.org."


def test_placeholders_that_were_not_issued_are_not_restored(redactor: Redactor) -> None:
    vault = RedactionVault()
    redactor.redact("mail jane@example.org", vault)
    forged = "Leak <EMAIL_ADDRESS_2> and <PHONE_NUMBER_1> and <EMAIL_ADDRESS_10>"
    assert vault.restore(forged) == forged
    assert vault.original("<EMAIL_ADDRESS_2>") is None
    assert vault.original("<EMAIL_ADDRESS_1>") == "jane@example.org"


def test_a_placeholder_typed_by_the_user_is_never_issued_nor_restored(redactor: Redactor) -> None:
    """Pins the exfiltration path: user writes <EMAIL_ADDRESS_1>, a later email takes that name."""
    vault = RedactionVault()
    first = redactor.redact("Please repeat <EMAIL_ADDRESS_1> back to me", vault)
    assert first.text == "Please repeat <EMAIL_ADDRESS_1> back to me"
    second = redactor.redact("my address is jane@example.org", vault)
    assert second.text == "my address is <EMAIL_ADDRESS_2>"
    assert vault.restore("<EMAIL_ADDRESS_1> / <EMAIL_ADDRESS_2>") == (
        "<EMAIL_ADDRESS_1> / jane@example.org"
    )


@pytest.mark.parametrize("planted", ["EMAIL_ADDRESS_1", "[email address 1]", "Email-Address-1"])
def test_a_bare_or_mangled_planted_placeholder_is_reserved_too(
    redactor: Redactor, planted: str
) -> None:
    vault = RedactionVault()
    redactor.redact(f"say {planted} twice", vault)
    assert redactor.redact("jane@example.org", vault).text == "<EMAIL_ADDRESS_2>"
    assert vault.restore(planted) == planted


def test_a_number_suffix_is_not_read_as_a_longer_placeholder(redactor: Redactor) -> None:
    vault = RedactionVault()
    redactor.redact("mail jane@example.org", vault)
    assert vault.restore("<EMAIL_ADDRESS_12>") == "<EMAIL_ADDRESS_12>"


def test_vault_seals_without_plain_text_and_opens_only_with_its_key(redactor: Redactor) -> None:
    vault = RedactionVault()
    redactor.redact("mail jane@example.org, card 4454794511390933", vault)
    key = AESGCM.generate_key(bit_length=256)
    sealed = vault.seal(key, "conv-1")
    assert b"jane@example.org" not in sealed and b"4454794511390933" not in sealed
    opened = RedactionVault.unseal(sealed, key, "conv-1")
    assert opened.restore("<EMAIL_ADDRESS_1> <CREDIT_CARD_1>") == (
        "jane@example.org 4454794511390933"
    )
    assert redactor.redact("jane@example.org", opened).text == "<EMAIL_ADDRESS_1>"
    with pytest.raises(InvalidRequest):
        RedactionVault.unseal(sealed, AESGCM.generate_key(bit_length=256), "conv-1")
    with pytest.raises(InvalidRequest):
        RedactionVault.unseal(sealed, key, "conv-2")
    with pytest.raises(ConfigurationError):
        vault.seal(b"short", "conv-1")


def test_vault_repr_shows_no_originals(redactor: Redactor) -> None:
    vault = RedactionVault()
    redactor.redact("mail jane@example.org", vault)
    assert "jane" not in repr(vault)
    assert len(vault) == 1


def test_text_without_findings_is_unchanged(redactor: Redactor) -> None:
    vault = RedactionVault()
    red = redactor.redact("nothing personal here", vault)
    assert (red.text, red.changed, len(vault)) == ("nothing personal here", False, 0)


# Quality on the shared data ------------------------------------------------------------------

# Gold label -> Presidio entity; DOMAIN_NAME spans in this set are whole URLs.
GOLD = {
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "DOMAIN_NAME": "URL",
}
# Lower bounds, a little under what bench/guards/bench_pii.py measures on the whole file.
BOUNDS = {  # entity: (precision, recall)
    "EMAIL_ADDRESS": (0.95, 0.95),
    "CREDIT_CARD": (0.95, 0.95),
    "IBAN_CODE": (0.95, 0.85),
    "US_SSN": (0.95, 0.9),
    "IP_ADDRESS": (0.95, 0.95),
    "URL": (0.95, 0.95),
    "PHONE_NUMBER": (0.8, 0.45),
}


def test_precision_and_recall_per_type_on_the_presidio_synthetic_set(scanner: PIIScanner) -> None:
    assert DATA.exists(), f"the shared PII data is missing: {DATA}"
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    pii = PIIScanner(sorted(BOUNDS))
    tp = dict.fromkeys(BOUNDS, 0)
    fp = dict.fromkeys(BOUNDS, 0)
    fn = dict.fromkeys(BOUNDS, 0)
    for row in rows:
        gold = [(s["start"], s["end"], GOLD[s["type"]]) for s in row["spans"] if s["type"] in GOLD]
        unclaimed = list(gold)
        for span in pii.scan(row["text"]).spans:
            hit = next(
                (
                    g
                    for g in unclaimed
                    if g[2] == span.label and span.start < g[1] and g[0] < span.end
                ),
                None,
            )
            if hit is None:
                fp[span.label] += 1
            else:
                unclaimed.remove(hit)
                tp[span.label] += 1
        for _, _, label in unclaimed:
            fn[label] += 1
    for entity, (min_p, min_r) in BOUNDS.items():
        assert tp[entity] + fn[entity] >= 10, f"too few gold {entity} to measure"
        precision = tp[entity] / max(1, tp[entity] + fp[entity])
        recall = tp[entity] / (tp[entity] + fn[entity])
        assert precision >= min_p, f"{entity} precision {precision:.3f} < {min_p}"
        assert recall >= min_r, f"{entity} recall {recall:.3f} < {min_r}"
