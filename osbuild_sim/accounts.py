"""The names Windows gives its built-in groups and Administrator, per media language.

Localised media translate them (Administratoren, Administrateurs); their well-known SIDs are
the same everywhere. Names as Windows shows them (`Get-LocalGroup`, `Get-LocalUser`).
"""

from __future__ import annotations

BUILTIN_ADMINISTRATOR = "-500"  # S-1-5-21-<machine>-500
_NAMES = {
    "en-US": {"S-1-5-32-544": "Administrators", "S-1-5-32-545": "Users",
              "S-1-5-32-555": "Remote Desktop Users", BUILTIN_ADMINISTRATOR: "Administrator"},
    "de-DE": {"S-1-5-32-544": "Administratoren", "S-1-5-32-545": "Benutzer",
              "S-1-5-32-555": "Remotedesktopbenutzer", BUILTIN_ADMINISTRATOR: "Administrator"},
    "fr-FR": {"S-1-5-32-544": "Administrateurs", "S-1-5-32-545": "Utilisateurs",
              "S-1-5-32-555": "Utilisateurs du Bureau \u00e0 distance",
              BUILTIN_ADMINISTRATOR: "Administrateur"},
    "es-ES": {"S-1-5-32-544": "Administradores", "S-1-5-32-545": "Usuarios",
              "S-1-5-32-555": "Usuarios de escritorio remoto",
              BUILTIN_ADMINISTRATOR: "Administrador"},
}


def _names(language: str) -> dict[str, str]:
    # en-GB and the other English media use the en-US names.
    return _NAMES.get(language) or _NAMES["en-US"]


def local_name(language: str, sid: str) -> str | None:
    """This language's name for a well-known SID (or BUILTIN_ADMINISTRATOR), else None."""
    return _names(language).get(sid)


def local_groups(language: str) -> set[str]:
    return {name for sid, name in _names(language).items() if sid.startswith("S-1-5-32-")}
