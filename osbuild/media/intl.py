"""Windows' own names for languages, locales and time zones, for checking a spec offline.

Locales: the language/region tags of Microsoft's "Default input profiles (input locales) in
Windows" table, the values `UILanguage`, `SystemLocale`, `UserLocale` and `InputLocale`
accept, plus the Chinese regions that table leaves out. Time zones: the Windows time zone
IDs (`tzutil /l`) as CLDR's windowsZones maps them, through tzlocal.
"""

from __future__ import annotations

import difflib
import re
from functools import cache

from tzlocal.windows_tz import tz_win, win_tz

WINDOWS_LOCALES: tuple[str, ...] = (
    "af-ZA", "am-ET", "ar-AE", "ar-BH", "ar-DZ", "ar-EG", "ar-IQ", "ar-JO", "ar-KW", "ar-LB",
    "ar-LY", "ar-MA", "ar-OM", "ar-QA", "ar-SA", "ar-SY", "ar-TN", "ar-YE", "arn-CL", "as-IN",
    "az-Cyrl-AZ", "az-Latn-AZ", "ba-RU", "be-BY", "bg-BG", "bn-BD", "bn-IN", "bo-CN", "br-FR",
    "bs-Cyrl-BA", "bs-Latn-BA", "ca-ES", "ca-ES-valencia", "chr-Cher-US", "co-FR", "cs-CZ",
    "cy-GB", "da-DK", "de-AT", "de-CH", "de-DE", "de-LI", "de-LU", "dsb-DE", "dv-MV", "dz-BT",
    "el-GR", "en-029", "en-AU", "en-BZ", "en-CA", "en-GB", "en-IE", "en-IN", "en-JM", "en-MY",
    "en-NZ", "en-PH", "en-SG", "en-TT", "en-US", "en-ZA", "en-ZW", "es-419", "es-AR", "es-BO",
    "es-CL", "es-CO", "es-CR", "es-DO", "es-EC", "es-ES", "es-ES_tradnl", "es-GT", "es-HN",
    "es-MX", "es-NI", "es-PA", "es-PE", "es-PR", "es-PY", "es-SV", "es-US", "es-UY", "es-VE",
    "et-EE", "eu-ES", "fa-IR", "ff-Latn-SN", "fi-FI", "fil-PH", "fo-FO", "fr-BE", "fr-CA",
    "fr-CH", "fr-FR", "fr-LU", "fr-MC", "fy-NL", "ga-IE", "gd-GB", "gl-ES", "gn-PY", "gsw-FR",
    "gu-IN", "ha-Latn-NG", "haw-US", "he-IL", "hi-IN", "hr-BA", "hr-HR", "hsb-DE", "hu-HU",
    "hy-AM", "id-ID", "ig-NG", "ii-CN", "is-IS", "it-CH", "it-IT", "iu-Cans-CA", "iu-Latn-CA",
    "ja-JP", "jv-Latn-ID", "ka-GE", "kk-KZ", "kl-GL", "km-KH", "kn-IN", "ko-KR", "kok-IN",
    "ku-Arab-IQ", "ky-KG", "lb-LU", "lo-LA", "lt-LT", "lv-LV", "mi-NZ", "mk-MK", "ml-IN",
    "mn-MN", "mn-Mong-CN", "mn-Mong-MN", "moh-CA", "mr-IN", "ms-BN", "ms-MY", "mt-MT", "my-MM",
    "nb-NO", "ne-NP", "nl-BE", "nl-NL", "nn-NO", "nqo-GN", "nso-ZA", "oc-FR", "or-IN",
    "pa-Arab-PK", "pa-IN", "pl-PL", "prs-AF", "ps-AF", "pt-BR", "pt-PT", "qut-GT", "quz-BO",
    "quz-EC", "quz-PE", "rm-CH", "ro-RO", "ru-RU", "rw-RW", "sa-IN", "sah-RU", "sd-Arab-PK",
    "se-FI", "se-NO", "se-SE", "si-LK", "sk-SK", "sl-SI", "sma-NO", "sma-SE", "smj-NO",
    "smj-SE", "smn-FI", "sms-FI", "sn-Latn-ZW", "sq-AL", "sr-Cyrl-BA", "sr-Cyrl-CS",
    "sr-Cyrl-ME", "sr-Cyrl-RS", "sr-Latn-BA", "sr-Latn-CS", "sr-Latn-ME", "sr-Latn-RS",
    "sv-FI", "sv-SE", "sw-KE", "syr-SY", "ta-IN", "ta-LK", "te-IN", "tg-Cyrl-TJ", "th-TH",
    "ti-ET", "tk-TM", "tn-BW", "tn-ZA", "tr-TR", "tt-RU", "tzm-Latn-DZ", "tzm-Tfng-MA",
    "ug-CN", "uk-UA", "ur-IN", "ur-PK", "uz-Cyrl-UZ", "uz-Latn-UZ", "vi-VN", "wo-SN", "xh-ZA",
    "yo-NG", "zgh-Tfng-MA", "zh-CN", "zh-TW", "zu-ZA",
    # Known to Windows (LCIDs 0c04, 1404, 1004), absent from the input-profile table.
    "zh-HK", "zh-MO", "zh-SG",
)

# `LLLL:KKKKKKKK` (language and keyboard layout) or `LLLL:{TIP GUID}{profile GUID}`.
_GUID = r"\{[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}"
_INPUT_PROFILE_RE = re.compile(rf"^[0-9A-Fa-f]{{4}}:([0-9A-Fa-f]{{8}}|{_GUID}{_GUID})$")


@cache
def _locales_by_key() -> dict[str, str]:
    return {tag.lower(): tag for tag in WINDOWS_LOCALES}


@cache
def _zones_by_key() -> dict[str, str]:
    return {name.lower(): name for name in win_tz}


def windows_locale(value: str) -> str | None:
    """The tag as Windows spells it (`de-de` gives `de-DE`), or None if Windows has none."""
    return _locales_by_key().get(value.strip().lower())


def windows_time_zone(value: str) -> str | None:
    """The Windows time zone ID as Windows spells it, or None."""
    return _zones_by_key().get(value.strip().lower())


def is_input_profile(value: str) -> bool:
    """An `InputLocale` entry: a locale tag or a language:keyboard pair."""
    return windows_locale(value) is not None or bool(_INPUT_PROFILE_RE.match(value.strip()))


def locale_hint(value: str) -> str:
    """Why ``value`` is not a Windows locale, with the nearest ones."""
    near = difflib.get_close_matches(value.lower(), list(_locales_by_key()), n=3, cutoff=0.6)
    hint = ", ".join(_locales_by_key()[n] for n in near)
    return f"{value!r} is not a Windows locale" + (f" (did you mean {hint}?)" if hint else
                                                     " (like en-US, de-DE or sr-Latn-RS)")


def time_zone_hint(value: str) -> str:
    """Why ``value`` is not a Windows time zone, with the one it probably means."""
    windows_name = tz_win.get(value.strip())
    if windows_name:
        return f"{value!r} is an IANA name; Windows calls it {windows_name!r}"
    near = difflib.get_close_matches(value.lower(), list(_zones_by_key()), n=2, cutoff=0.6)
    hint = " or ".join(repr(_zones_by_key()[n]) for n in near)
    return (f"{value!r} is not a Windows time zone"
            + (f" (did you mean {hint}?)" if hint else
               " (names like 'UTC' or 'W. Europe Standard Time', as `tzutil /l` lists them)"))
