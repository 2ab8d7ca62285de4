"""Peaks-over-threshold (POT) thresholds: a generalised Pareto tail fitted to the upper tail of normal scores.

Siffer et al., "Anomaly Detection in Streams with Extreme Value Theory", KDD 2017: above a high initial
threshold u (the ``tail_quantile`` of the normal scores) the excesses X - u follow a generalised Pareto
distribution GPD(xi, sigma) (Pickands-Balkema-de Haan). With n scores of which n_t exceed u, the score
exceeded with probability ``risk`` is

    z = u + sigma / xi * ((risk * n / n_t) ** -xi - 1)      (xi != 0)
    z = u - sigma * log(risk * n / n_t)                      (xi == 0)

so the rule extrapolates to risks far below 1 / n, where an empirical quantile has no data. The default
risk, 0.01, is the operating point of the former 0.99-quantile default (where POT and the quantile nearly
agree); lower risks are an option: on KDD Cup 99, whose normal scores have a heavy tail (rare one-hot
categories), a risk of 0.001 puts the threshold above almost every attack. The fit is
scipy's maximum-likelihood ``genpareto.fit`` with the location fixed at 0. With too few excesses to fit
(fewer than ``MIN_PEAKS``), or a risk not below the tail share, the empirical quantile 1 - risk is used.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedad.common.errors import FedadError

DEFAULT_RISK = 0.01
DEFAULT_TAIL_QUANTILE = 0.98
MIN_PEAKS = 10


@dataclass(frozen=True)
class TailFit:
    """A fitted tail: initial threshold u, GPD shape xi and scale sigma, scores n and excesses n_tail."""

    u: float
    xi: float
    sigma: float
    n: int
    n_tail: int

    def to_dict(self) -> dict[str, float]:
        return {"u": self.u, "xi": self.xi, "sigma": self.sigma, "n": self.n, "n_tail": self.n_tail}


def _check_risk(risk: Any) -> float:
    if isinstance(risk, bool) or not isinstance(risk, (int, float, np.floating)) or not 0 < float(risk) < 1:
        raise FedadError(f"risk (target false-alarm rate) must be a number in (0, 1), got {risk!r}")
    return float(risk)


def fit_tail(scores: Any, tail_quantile: float = DEFAULT_TAIL_QUANTILE) -> TailFit | None:
    """GPD fit of the excesses of ``scores`` over their ``tail_quantile``; None with fewer than MIN_PEAKS."""
    from scipy.stats import genpareto

    if not 0 < float(tail_quantile) < 1:
        raise FedadError(f"tail quantile must be in (0, 1), got {tail_quantile!r}")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0 or not np.isfinite(s).all():
        raise FedadError("POT needs a non-empty array of finite scores")
    u = float(np.quantile(s, tail_quantile))
    peaks = s[s > u] - u
    if peaks.size < MIN_PEAKS or float(peaks.max()) <= 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xi, _, sigma = genpareto.fit(peaks, floc=0.0)
    if not (math.isfinite(xi) and math.isfinite(sigma) and sigma > 0):
        return None
    return TailFit(u=u, xi=float(xi), sigma=float(sigma), n=int(s.size), n_tail=int(peaks.size))


def tail_threshold(fit: TailFit, risk: float = DEFAULT_RISK) -> float:
    """The score exceeded with probability ``risk`` under a fitted tail (see the module docstring)."""
    r = _check_risk(risk) * fit.n / fit.n_tail
    if abs(fit.xi) < 1e-9:
        return float(fit.u - fit.sigma * math.log(r))
    return float(fit.u + fit.sigma / fit.xi * (r**-fit.xi - 1.0))


def pot_threshold(scores: Any, risk: float = DEFAULT_RISK, tail_quantile: float = DEFAULT_TAIL_QUANTILE) -> float:
    """POT threshold of normal ``scores`` at false-alarm ``risk``; the empirical 1 - risk quantile when the
    tail cannot be fitted or the risk is not below the tail share."""
    from fedad.common.threshold import threshold_from_scores

    risk = _check_risk(risk)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    fit = fit_tail(s, tail_quantile)
    if fit is None or risk >= fit.n_tail / fit.n:
        return threshold_from_scores(s, quantile=1.0 - risk)
    return tail_threshold(fit, risk)
