"""The contract between server and clients: everything a client needs to take part in a federation."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedad.common.models.names import effective_score
from fedad.common.scoring import DEFAULT_SCORE, DEFAULT_TOP_K
from fedad.common.threshold_rule import DEFAULT_RULE


@dataclass
class FederationSpec:
    """Everything a client needs to take part; the server sends it with every instruction."""

    model: str = "dense"
    window: int = 1
    sizes: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    feature_names: list[str] | None = None
    local_epochs: int = 2
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    threshold_quantile: float = 0.99
    scaling: str = "site"  # "site": each node standardises with its own statistics; "global": merged statistics
    score: str = DEFAULT_SCORE  # fedad.common.scoring; normalised by each node's own training error scales
    top_k: int = DEFAULT_TOP_K
    threshold_rule: str = DEFAULT_RULE  # fedad.common.threshold_rule: "pot" or "quantile"
    target_far: float | None = None  # the rule's false-alarm rate (pot default: fedad.common.pot.DEFAULT_RISK)
    threshold_scope: str = "global"  # "global": robust combination of the nodes' histograms; "site": each node's own
    alarm_rule: str = "threshold"  # the test rows' alarms: score > threshold, or "adaptive" (fedad.common.stream_rule)

    def __post_init__(self) -> None:
        self.score = effective_score(self.model, self.score)  # contrastive: its own fitted score, whatever was asked

    def to_dict(self) -> dict:
        """JSON-able form, sent with every instruction."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> FederationSpec:
        """Rebuild from ``to_dict`` output; unknown keys (from a newer server) are ignored."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
