"""How far behind an installed Windows is, and how much work Windows Update has to catch it up.

Microsoft's account of cumulative updates ("How to improve Windows cumulative update
installation times", Windows IT Pro blog, 2021-02-18): a latest cumulative update (LCU) carries
every component serviced since RTM, and Component-Based Servicing installs the ones whose
installed version differs. The longer a release is in service, the more components differ
from its GA media: the count grows quickly at first and levels out as fewer unserviced
components remain. A machine patched last month differs only by this month's components.
Builders see the same from outside: "It really can take a lot of time to update, more-so
depending on how old is your base/current image" (rgl/packer-plugin-windows-update#30,
where one LCU on old Server 2016 media ran for hours). One measured Server 2022 case:
adoptium/infrastructure#3462 (2024-03) logs 36 minutes to download and install an older
image's updates and 5 more to restart, and its remedy was a base image patched more recently.
The log does not say how old that image was; for a base one to two and a half years behind,
the model below gives 19-55 minutes of staging plus the per-pass work.

So the simulated guest prices an update pass by the share of serviced components its
installed build lacks: GA media years old pay (nearly) the whole staging cost; last month's
image pays a month's share. What every pass pays whatever the gap (search, download of the
small updates, .NET and Defender, the commit at restart) stays in the guest's own spans.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

# The GA date of the media build each release's stand-in ISO carries (Microsoft's release
# announcements): the patch level a fresh install starts from. Server 2025 and Windows 11
# 24H2 share build 26100; the earlier, client date stands for both.
MEDIA_SERVICED = {
    14393: datetime(2016, 10, 12, tzinfo=UTC),  # Server 2016
    17763: datetime(2018, 11, 13, tzinfo=UTC),  # Server 2019 (re-released media)
    20348: datetime(2021, 8, 18, tzinfo=UTC),  # Server 2022
    19045: datetime(2022, 10, 18, tzinfo=UTC),  # Windows 10 22H2
    26100: datetime(2024, 10, 1, tzinfo=UTC),  # Windows 11 24H2, Server 2025
}
_UNKNOWN_MEDIA = datetime(2021, 1, 1, tzinfo=UTC)

_DAYS_PER_MONTH = 30.44
# How fast the differing share grows with months behind (its e-folding time): a year behind
# lacks about two thirds of what years behind lacks.
GROWTH_MONTHS = 12.0
# Staging the LCU's differing components on a 4-vCPU builder when (nearly) all of them
# differ, in seconds: half an hour to an hour.
FULL_STAGING = (1800.0, 3600.0)


def media_serviced(build: int) -> datetime:
    """The patch level a fresh install of GA media of ``build`` starts from."""
    return MEDIA_SERVICED.get(build, _UNKNOWN_MEDIA)


def months_behind(patched: datetime, now: datetime) -> float:
    """Months of Patch Tuesdays between the installed patch level and ``now``; at least one:
    a pass that finds something finds at least the month's LCU."""
    return max(1.0, (now - patched).total_seconds() / 86400.0 / _DAYS_PER_MONTH)


def differing_share(months: float) -> float:
    """The share (0..1) of serviced components an installation ``months`` behind lacks."""
    return 1.0 - math.exp(-months / GROWTH_MONTHS)


def staging_span(months: float) -> tuple[float, float]:
    """Simulated seconds (low, high) to stage the LCU on an installation ``months`` behind."""
    share = differing_share(months)
    return FULL_STAGING[0] * share, FULL_STAGING[1] * share
