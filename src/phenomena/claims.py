"""Claims: a paper's statement turned into a check, and the chapter's report of them.

A claim has a name, the paper's value or law (``expected`` with a tolerance, or a band
``lower``/``upper``), the measured value, a one-line reason for the tolerance, and the smallest
scale at which it is expected to hold (``min_scale``). The expected value must come from the
paper or from a closed form; never from our own run.

Outcomes:

``pass`` / ``fail``
    the measured value is / is not inside the tolerance.
``skipped``
    the run's scale is below ``min_scale``: the value is shown, but not judged.
``not reproduced``
    the chapter states up front (``not_reproduced="why"``) that this claim does not reproduce at
    this scale, and it indeed fails. It does not raise; the scoreboard shows it as such. If it
    passes after all, it counts as ``pass``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import scales
from .contract import write_json_atomic

STATUSES: tuple[str, ...] = ("pass", "fail", "skipped", "not reproduced")


class ClaimsFailed(AssertionError):
    """Raised by :meth:`Report.raise_if_failed` when at least one claim failed."""


@dataclass(frozen=True)
class Claim:
    """One checked statement. ``tolerance`` is the human-readable form of the acceptance region."""

    name: str
    measured: float | None
    law: str
    reason: str
    expected: float | None = None
    rtol: float = 0.0
    atol: float = 0.0
    lower: float | None = None
    upper: float | None = None
    min_scale: str = "smoke"
    not_reproduced: str | None = None
    status: str = "fail"
    note: str = ""

    @property
    def tolerance(self) -> str:
        return describe_tolerance(self.expected, self.rtol, self.atol, self.lower, self.upper)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def describe_tolerance(
    expected: float | None, rtol: float, atol: float, lower: float | None, upper: float | None
) -> str:
    """``"5 ± 3%"``, ``"[-0.6, -0.4]"``, ``"≤ 0.03"`` and the like."""
    if expected is not None:
        parts = []
        if rtol:
            parts.append(f"{rtol:.3g}·|e|" if atol else f"{100 * rtol:.3g}%")
        if atol:
            parts.append(f"{atol:.3g}")
        return f"{_fmt(expected)} ± {' + '.join(parts) if parts else '0'}"
    if lower is not None and upper is not None:
        return f"[{_fmt(lower)}, {_fmt(upper)}]"
    if upper is not None:
        return f"≤ {_fmt(upper)}"
    return f"≥ {_fmt(lower)}"


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.4g}"


def _as_float(value: Any, what: str, name: str) -> float:
    try:
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool):
            return float(value)
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"claim {name!r}: {what} must be a real number, got {value!r}") from None


def judge(
    measured: float | None,
    *,
    expected: float | None,
    rtol: float,
    atol: float,
    lower: float | None,
    upper: float | None,
) -> bool:
    """Whether ``measured`` lies in the acceptance region. Non-finite values never pass."""
    if measured is None or not math.isfinite(measured):
        return False
    if expected is not None:
        return abs(measured - expected) <= atol + rtol * abs(expected)
    ok = True
    if lower is not None:
        ok &= measured >= lower
    if upper is not None:
        ok &= measured <= upper
    return bool(ok)


class Report:
    """The claims of one run of one chapter, in the order they were checked."""

    def __init__(self, chapter: str, scale: str) -> None:
        self.chapter = chapter
        self.scale = scales.resolve(scale)
        self.claims: list[Claim] = []

    def check(
        self,
        name: str,
        measured: Any,
        *,
        law: str,
        reason: str,
        expected: float | None = None,
        rtol: float = 0.0,
        atol: float = 0.0,
        lower: float | None = None,
        upper: float | None = None,
        min_scale: str = "smoke",
        not_reproduced: str | None = None,
        note: str = "",
    ) -> Claim:
        """Judge ``measured`` against the paper's value and record the claim.

        Give either ``expected`` with ``rtol``/``atol`` (pass when
        ``|measured - expected| <= atol + rtol·|expected|``) or a band ``lower``/``upper``
        (either end may be open). ``law`` states the paper's claim in words, ``reason`` says
        in one line why the tolerance is what it is. Returns the recorded :class:`Claim`.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a claim needs a non-empty name")
        if any(c.name == name for c in self.claims):
            raise ValueError(f"claim {name!r} was already checked in this run; claim names must be unique")
        if not law or not law.strip():
            raise ValueError(f"claim {name!r}: state the paper's claim in `law`")
        if not reason or not reason.strip():
            raise ValueError(f"claim {name!r}: give the one-line reason for the tolerance in `reason`")
        has_expected = expected is not None
        has_band = lower is not None or upper is not None
        if has_expected == has_band:
            raise ValueError(f"claim {name!r}: give either `expected` (with rtol/atol) or a band `lower`/`upper`")
        if rtol < 0 or atol < 0:
            raise ValueError(f"claim {name!r}: tolerances must be non-negative")
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"claim {name!r}: lower={lower} is above upper={upper}")
        min_scale = scales.resolve(min_scale)
        exp = None if expected is None else _as_float(expected, "expected", name)
        lo = None if lower is None else _as_float(lower, "lower", name)
        hi = None if upper is None else _as_float(upper, "upper", name)
        value = None if measured is None else _as_float(measured, "measured", name)

        if not scales.at_least(self.scale, min_scale):
            status = "skipped"
        elif judge(value, expected=exp, rtol=rtol, atol=atol, lower=lo, upper=hi):
            status = "pass"
        elif not_reproduced:
            status = "not reproduced"
        else:
            status = "fail"
        claim = Claim(
            name=name,
            measured=value,
            law=law.strip(),
            reason=reason.strip(),
            expected=exp,
            rtol=float(rtol),
            atol=float(atol),
            lower=lo,
            upper=hi,
            min_scale=min_scale,
            not_reproduced=not_reproduced,
            status=status,
            note=note,
        )
        self.claims.append(claim)
        return claim

    # ----------------------------------------------------------------- views
    def table(self):
        """The report as a DataFrame; numbers rounded to 4 significant digits so reruns print alike."""
        import pandas as pd

        rows = [
            {
                "claim": c.name,
                "paper says": c.law,
                "accepts": c.tolerance,
                "measured": _fmt(c.measured),
                "status": c.status + ("" if c.status != "skipped" else f" (needs {c.min_scale})"),
                "why this tolerance": c.reason,
            }
            for c in self.claims
        ]
        columns = ["claim", "paper says", "accepts", "measured", "status", "why this tolerance"]
        return pd.DataFrame(rows, columns=columns).set_index("claim")

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.claims) for s in STATUSES}

    def summary(self) -> str:
        n = self.counts()
        return " · ".join(f"{v} {k}" for k, v in n.items() if v) or "no claims"

    @property
    def failed(self) -> list[Claim]:
        return [c for c in self.claims if c.status == "fail"]

    def raise_if_failed(self) -> None:
        """Raise :class:`ClaimsFailed` listing every failed claim; do nothing if none failed."""
        if not self.claims:
            raise ClaimsFailed(f"{self.chapter}: no claim was checked; every chapter checks at least one")
        if not any(c.status in ("pass", "fail", "not reproduced") for c in self.claims):
            raise ClaimsFailed(
                f"{self.chapter}: every claim was skipped at scale {self.scale!r}; "
                "every chapter must check at least one real claim at every scale"
            )
        bad = self.failed
        if bad:
            lines = [
                f"  - {c.name}: measured {_fmt(c.measured)}, paper says {c.law} (accepts {c.tolerance})" for c in bad
            ]
            raise ClaimsFailed(
                f"{self.chapter} at scale {self.scale}: {len(bad)} claim(s) failed:\n" + "\n".join(lines)
            )

    def to_records(self) -> list[dict[str, Any]]:
        out = []
        for c in self.claims:
            rec = asdict(c)
            rec["tolerance"] = c.tolerance
            rec["passed"] = c.passed
            out.append(rec)
        return out

    def write(self, path: Path, record: dict[str, Any]) -> None:
        """Write ``record`` plus the claims as JSON to ``path``, atomically (temp file + rename)."""
        payload = dict(record)
        payload["claims"] = self.to_records()
        payload["counts"] = self.counts()
        payload["passed"] = not self.failed
        payload["complete"] = True
        write_json_atomic(path, payload)
