"""Value placement rules: every template value is quoted for its target language."""

from __future__ import annotations

import pytest

from osbuild.errors import InvalidInput
from osbuild.media import render
from osbuild.media.quoting import check_xml_text, ini_key, ini_value, ps_string


def test_script_templates_refuse_unquoted_values() -> None:
    env = render._environment(xml=False)
    with pytest.raises(InvalidInput, match="without quoting"):
        env.from_string("$x = {{ value }}").render(value="'; Remove-Item C:\\ -Recurse; '")
    assert env.from_string("$x = {{ value | ps }}").render(value="it's") == "$x = 'it''s'"
    assert env.from_string("{{ n }}").render(n=3) == "3"


def test_answer_file_template_escapes_and_refuses_control_characters() -> None:
    env = render._environment(xml=True)
    assert env.from_string("<a>{{ v }}</a>").render(v="<&]]>") == "<a>&lt;&amp;]]&gt;</a>"
    with pytest.raises(InvalidInput, match="control character"):
        env.from_string("<a>{{ v }}</a>").render(v="bell\x07")


def test_undefined_template_values_are_errors() -> None:
    import jinja2

    for xml in (True, False):
        with pytest.raises(jinja2.UndefinedError):
            render._environment(xml=xml).from_string("{{ missing | string }}").render()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("cost $5 and $$", "cost $$5 and $$$$"),
        (True, "true"),
        (False, "false"),
        (7, "7"),
        (("a.B", "c.D"), "a.B,c.D"),
        ("  padded  ", "padded"),
    ],
)
def test_ini_values(value: object, expected: str) -> None:
    assert ini_value(value) == expected


@pytest.mark.parametrize("bad", ["two\nlines", "cr\rhere", "nul\x00", "bell\x07"])
def test_ini_values_stay_on_one_line(bad: str) -> None:
    with pytest.raises(InvalidInput, match="one line"):
        ini_value(bad, option="config")


def test_ini_keys() -> None:
    assert ini_key("check_latest_version") == "check_latest_version"
    for bad in ("Bad-Key", "x=y", "a\nb=c", ""):
        with pytest.raises(InvalidInput):
            ini_key(bad)


def test_ps_string_rejects_nul_and_non_text() -> None:
    with pytest.raises(InvalidInput):
        ps_string("a\x00b")
    with pytest.raises(TypeError):
        ps_string(3)  # type: ignore[arg-type]


def test_xml_text_check() -> None:
    assert check_xml_text("tab\tand\nnewline ok") == "tab\tand\nnewline ok"
    with pytest.raises(InvalidInput):
        check_xml_text("\x1b[31m")
