"""The redactor every sink passes text through (osbuild.redact)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from osbuild import redact
from osbuild.cloud.transcript import Transcript
from osbuild.errors import BuildFailed, CleanupIncomplete, InvalidInput
from osbuild.media.unattend import obfuscate
from osbuild.redact import REDACTED, Redactor

PASSWORD = "Kq7!pX-2mZ#9wL"


def test_short_values_are_not_secrets() -> None:
    redactor = Redactor(["a", "kms", "", None, "  x ", PASSWORD])
    assert redactor.text("a kms x") == "a kms x"
    assert redactor.text(f"a {PASSWORD}") == f"a {REDACTED}"


def test_overlapping_and_nested_values_leave_nothing_behind() -> None:
    redactor = Redactor(["abcdef", "defghi", "bcde"])
    assert redactor.text("0abcdefghi1") == f"0{REDACTED}1"
    assert redactor.text("xbcdex abcdef") == f"x{REDACTED}x {REDACTED}"
    assert redactor.text("abcdefabcdef") == REDACTED * 2  # adjacent, not overlapping


def test_answer_file_and_escaped_forms() -> None:
    tricky = 'pa"ss\\w<o>&rd'
    redactor = Redactor([PASSWORD, tricky])
    for suffix in ("Password", "AdministratorPassword"):
        line = f"<Value>{obfuscate(PASSWORD, suffix)}</Value>"
        assert PASSWORD not in redactor.text(line)
        assert obfuscate(PASSWORD, suffix) not in redactor.text(line)
    printed_json = json.dumps({"note": f"was {tricky}"})
    assert json.dumps(tricky)[1:-1] not in redactor.text(printed_json)
    assert "pa&quot;ss\\w&lt;o&gt;&amp;rd" not in redactor.text("pa&quot;ss\\w&lt;o&gt;&amp;rd")
    utf16 = f"x{PASSWORD}".encode("utf-16-le").decode("latin-1")
    assert REDACTED in redactor.text(utf16)


def test_shapes_without_known_values() -> None:
    line = "key ABCDE-FGHIJ-KLMNO-PQRST-UVWXY password=hunter22 token: xyz"
    assert Redactor().guest_text(line) == f"key {REDACTED} password={REDACTED} token: {REDACTED}"
    # osbuild's own messages name fields: only the key's shape is taken out of them.
    assert Redactor().text(line) == f"key {REDACTED} password=hunter22 token: xyz"
    message = "windows.product_key: 'win11-eval.iso' is evaluation media"
    assert Redactor().text(message) == message


def test_deep_keeps_structure_and_keys() -> None:
    redactor = Redactor([PASSWORD])
    value = {"password_hint": [PASSWORD, 3, (f"x{PASSWORD}", None)], "n": 1.5}
    assert redactor.deep(value) == {"password_hint": [REDACTED, 3, (f"x{REDACTED}", None)],
                                    "n": 1.5}


def test_exceptions_are_redacted_in_place_with_their_causes() -> None:
    redactor = Redactor([PASSWORD])
    cause = BuildFailed(f"guest said {PASSWORD}", stage="updates")
    error = CleanupIncomplete(["volume v1"], cause)
    error.__context__ = InvalidInput([f"field: {PASSWORD}"])
    assert redactor.exception(error) is error
    assert cause.reason == f"guest said {REDACTED}" and PASSWORD not in str(cause)
    assert PASSWORD not in " ".join(error.lines())
    assert error.__context__.problems == [f"field: {REDACTED}"]  # type: ignore[attr-defined]


def test_a_build_teaches_the_process_for_logs() -> None:
    secret = "per-build-secret-for-logs-1"
    redact.for_build(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.redact")
    logger.addHandler(handler)
    redact.redact_logs(logger)
    redact.redact_logs(logger)  # once is enough: no formatter wraps another
    try:
        logger.error("guest printed %s", secret)
        try:
            raise ValueError(secret)
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert secret not in stream.getvalue()
    assert f"ERROR guest printed {REDACTED}" in stream.getvalue()
    assert not isinstance(handler.formatter.inner, redact.RedactingFormatter)  # type: ignore[union-attr]
    assert f"ValueError: {REDACTED}" in stream.getvalue()


def test_the_transcript_file_is_redacted_and_stitching_is_not(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    transcript = Transcript.to_file(path, redact=Redactor([PASSWORD]).guest_text)
    transcript.stitch(f"boot\nnet user x {PASSWORD}\n", complete_log=True)
    transcript.stitch(f"net user x {PASSWORD}\nnext\npart {PASSWORD}", complete_log=False)
    transcript.close()
    assert transcript.lines == ["boot", f"net user x {PASSWORD}", "next"]
    assert path.read_text() == (f"boot\nnet user x {REDACTED}\nnext\npart {REDACTED}\n")
