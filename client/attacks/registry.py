"""Attack registry: ``ATTACK_NAMES`` and ``make_attack`` (one attack class per file)."""

from __future__ import annotations

from fedad.client.attacks.alie import ALIE
from fedad.client.attacks.base import Attack
from fedad.client.attacks.data_poisoning import DataPoisoning
from fedad.client.attacks.gaussian import Gaussian
from fedad.client.attacks.ipm import IPM
from fedad.client.attacks.min_max import MinMax, MinSum
from fedad.client.attacks.scaling import Scaling
from fedad.client.attacks.sign_flip import SignFlip
from fedad.client.attacks.zero import Zero
from fedad.common.errors import FedadError

_CLASSES: dict[str, type[Attack]] = {
    cls.name: cls for cls in (SignFlip, Scaling, Gaussian, Zero, DataPoisoning, ALIE, IPM, MinMax, MinSum)
}
ATTACK_NAMES: tuple[str, ...] = tuple(_CLASSES)


def make_attack(name: str, scale: float | None = None, start_round: int = 1, seed: int = 0, **params) -> Attack:
    """Build an attack by name; ``scale`` sets its main parameter (see docs/attacks.md), ``params`` the rest."""
    cls = _CLASSES.get(name)
    if cls is None:
        raise FedadError(f"unknown attack {name!r}: choose one of {', '.join(ATTACK_NAMES)}")
    if scale is not None:
        if cls.scale_param is None:  # every registered attack names one; a new one without it takes no scale
            raise FedadError(f"attack {name!r} takes no scale")
        params[cls.scale_param] = float(scale)
    try:
        return cls(start_round=start_round, seed=seed, **params)
    except TypeError as e:
        raise FedadError(f"bad parameters for attack {name!r}: {e}") from None
