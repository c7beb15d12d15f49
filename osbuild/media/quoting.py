"""Safe placement of spec values into PowerShell, cloudbase-init (oslo.config) and XML text."""

from __future__ import annotations

import re

from osbuild.errors import InvalidInput

# PowerShell treats the typographic single quotes like the ASCII one inside a verbatim
# string, so each of them must be doubled too or a value could close the literal.
_PS_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
# Characters XML 1.0 cannot carry even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class PsLiteral(str):
    """Text that is already a complete PowerShell expression (a quoted literal, $true...)."""


class IniValue(str):
    """Text that is safe as the value of one oslo.config option."""


def ps_string(value: str) -> PsLiteral:
    """``value`` as one single-quoted (verbatim) PowerShell string literal."""
    if not isinstance(value, str):
        raise TypeError(f"ps_string expects text, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput(["a value for a PowerShell script contains a NUL character"])
    escaped = "".join(ch + ch if ch in _PS_SINGLE_QUOTES else ch for ch in value)
    return PsLiteral(f"'{escaped}'")


def ps_value(value: object) -> PsLiteral:
    """A Python value (text, bool, int, list or dict of those) as a PowerShell expression."""
    if isinstance(value, PsLiteral):
        return value
    if isinstance(value, bool):
        return PsLiteral("$true" if value else "$false")
    if isinstance(value, int):
        return PsLiteral(str(value))
    if isinstance(value, str):
        return ps_string(value)
    if value is None:
        return PsLiteral("$null")
    if isinstance(value, list | tuple):
        return PsLiteral("@(" + ", ".join(ps_value(item) for item in value) + ")")
    if isinstance(value, dict):
        pairs = "; ".join(f"{ps_string(str(key))} = {ps_value(item)}"
                          for key, item in value.items())
        return PsLiteral("@{ " + pairs + " }" if pairs else "@{}")
    raise TypeError(f"cannot place a {type(value).__name__} into PowerShell")


def ini_value(value: object, *, option: str = "value") -> IniValue:
    """One oslo.config value: a single line, with ``$`` (its interpolation sign) doubled."""
    if isinstance(value, IniValue):
        return value
    if isinstance(value, bool):
        return IniValue("true" if value else "false")
    if isinstance(value, int):
        return IniValue(str(value))
    if isinstance(value, list | tuple):
        return IniValue(",".join(ini_value(item, option=option) for item in value))
    if not isinstance(value, str):
        raise TypeError(f"cannot place a {type(value).__name__} into an ini file")
    if any(ch in value for ch in "\r\n\x00") or _XML_INVALID.search(value):
        raise InvalidInput([f"cloudbase_init.{option}: must be one line of printable text"])
    return IniValue(value.replace("$", "$$").strip())


_INI_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def ini_key(name: str) -> IniValue:
    """An oslo.config option name (lowercase identifier)."""
    if not _INI_KEY.match(name):
        raise InvalidInput([f"cloudbase_init.config: {name!r} is not an option name"])
    return IniValue(name)


def check_xml_text(value: str) -> str:
    """Refuse text XML 1.0 cannot represent (escaping does not help for these)."""
    if _XML_INVALID.search(value):
        raise InvalidInput(["a value for the answer file contains a control character"])
    return value
