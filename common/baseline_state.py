"""JSON state of the fitted baselines of ``fedad.common.baselines`` (no pickle) and numpy scoring from it.

``baseline_state(det)`` turns a fitted IQR, Isolation Forest, One-Class SVM or PCA detector into plain JSON
(parameters, NaN fill values, threshold and the arrays its score needs: fences; the trees' split features,
thresholds, children and leaf path lengths; support vectors, dual coefficients, intercept and gamma;
principal components). ``baseline_from_state(state)`` rebuilds a fitted detector that scores with numpy
from those arrays alone, reproducing scikit-learn's scores (to rounding; the trees exactly, X compared in
float32 as scikit-learn does). Nothing crossing a process boundary is unpickled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedad.common.baselines import (
    BASELINES,
    BaselineDetector,
    IQRDetector,
    IsolationForestDetector,
    OneClassSVMDetector,
    PCADetector,
)
from fedad.common.errors import FedadError

FORMAT = "fedad.baseline"
FORMAT_VERSION = 1


class ForestScorer:
    """Isolation Forest ``score_samples`` from the trees' arrays: minus 2^(-mean path length / c(max_samples))."""

    def __init__(self, trees: list[dict[str, np.ndarray]], max_samples: int) -> None:
        self.trees = trees
        self.max_samples = int(max_samples)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Minus the isolation score (higher = more normal), as ``IsolationForest.score_samples``."""
        X32 = np.asarray(X, dtype=np.float32).astype(np.float64)  # scikit-learn's trees compare float32 input
        rows = np.arange(len(X32))
        depths = np.zeros(len(X32), dtype=np.float64)
        for tree in self.trees:
            left, right, feature, threshold = tree["left"], tree["right"], tree["feature"], tree["threshold"]
            node = np.zeros(len(X32), dtype=np.int64)
            inner = left[node] >= 0
            while inner.any():
                idx = np.flatnonzero(inner)
                n = node[idx]
                go_left = X32[rows[idx], feature[n]] <= threshold[n]
                node[idx] = np.where(go_left, left[n], right[n])
                inner = left[node] >= 0
            depths += tree["leaf_depth"][node]
        denominator = len(self.trees) * average_path_length(np.array([self.max_samples]))[0]
        scores = 2.0 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
        return -scores


class RBFOneClassScorer:
    """One-Class SVM decision function from support vectors: sum_i a_i exp(-gamma |x - s_i|^2) + b."""

    def __init__(self, support: np.ndarray, dual_coef: np.ndarray, intercept: float, gamma: float) -> None:
        self.support = support
        self.dual_coef = dual_coef
        self.intercept = float(intercept)
        self.gamma = float(gamma)

    def decision_function(self, Z: np.ndarray) -> np.ndarray:
        """Signed distance to the learned support (positive inside), as ``OneClassSVM.decision_function``."""
        Z = np.asarray(Z, dtype=np.float64)
        sq = (Z**2).sum(axis=1)[:, None] + (self.support**2).sum(axis=1)[None, :] - 2.0 * Z @ self.support.T
        return np.exp(-self.gamma * np.maximum(sq, 0.0)) @ self.dual_coef + self.intercept


class SubspaceScorer:
    """PCA projection onto the principal subspace and back (no whitening)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean_ = mean
        self.components_ = components
        self.n_components_ = int(components.shape[0])

    def transform(self, Z: np.ndarray) -> np.ndarray:
        """Coordinates in the principal subspace."""
        return (Z - self.mean_) @ self.components_.T

    def inverse_transform(self, T: np.ndarray) -> np.ndarray:
        """Points of the subspace in feature space."""
        return T @ self.components_ + self.mean_


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean path length of an unsuccessful search in a binary search tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _tree_arrays(tree: Any) -> dict[str, np.ndarray]:
    """Split arrays of a fitted scikit-learn tree plus each node's path length (depth + c(leaf size))."""
    t = tree.tree_
    left, right = t.children_left.astype(np.int64), t.children_right.astype(np.int64)
    depth = np.zeros(t.node_count, dtype=np.float64)
    for node in range(t.node_count):  # children always follow their parent in scikit-learn's node order
        if left[node] >= 0:
            depth[left[node]] = depth[right[node]] = depth[node] + 1.0
    leaf_depth = depth + average_path_length(t.n_node_samples)  # root at depth 0
    return {
        "left": left,
        "right": right,
        "feature": np.maximum(t.feature.astype(np.int64), 0),
        "threshold": t.threshold.astype(np.float64),
        "leaf_depth": leaf_depth,
    }


def _floats(a: Any) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def baseline_state(det: BaselineDetector) -> dict[str, Any]:
    """JSON-able state of a fitted baseline (``baseline_from_state`` rebuilds it)."""
    det._check_fitted()
    saved = getattr(det, "state_", None)
    if isinstance(saved, dict):  # rebuilt by baseline_from_state: its state as read
        return saved
    name = next((k for k, cls in BASELINES.items() if type(det) is cls), None)
    if name is None:
        raise FedadError(f"cannot save a {type(det).__name__}: not one of {', '.join(BASELINES)}")
    params = {k: v for k, v in vars(det).items() if not k.endswith("_")}
    state: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "baseline": name,
        "params": params,
        "n_features": int(det.n_features_in_),
        "fill_values": _floats(det.fill_values_),
        "threshold": float(det.threshold_) if math.isfinite(det.threshold_) else None,
    }
    if isinstance(det, IQRDetector):
        state["arrays"] = {"lower": _floats(det.lower_), "upper": _floats(det.upper_), "unit": _floats(det.unit_)}
    elif isinstance(det, IsolationForestDetector):
        model = det.model_
        if hasattr(model, "_max_features") and model._max_features != det.n_features_in_:
            raise FedadError("cannot save an Isolation Forest fitted on a subset of features")
        trees = [{k: v.tolist() for k, v in _tree_arrays(est).items()} for est in model.estimators_]
        state["arrays"] = {"max_samples": int(model.max_samples_), "trees": trees}
    elif isinstance(det, OneClassSVMDetector):
        model = det.model_
        state["arrays"] = {
            "mean": _floats(det.mean_),
            "scale": _floats(det.scale_),
            "support": _floats(model.support_vectors_),
            "dual_coef": _floats(np.ravel(model.dual_coef_)),
            "intercept": float(np.ravel(model.intercept_)[0]),
            "gamma": float(model._gamma),
        }
    elif isinstance(det, PCADetector):
        state["arrays"] = {
            "mean": _floats(det.mean_),
            "scale": _floats(det.scale_),
            "pca_mean": _floats(det.pca_.mean_),
            "components": _floats(det.pca_.components_),
        }
    return state


def baseline_from_state(state: Any, source: str = "baseline state") -> BaselineDetector:
    """A fitted baseline from ``baseline_state`` JSON; FedadError naming ``source`` when it is not one."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FedadError(f"{source} is not a fedad baseline file")
    if state.get("format_version") != FORMAT_VERSION:
        raise FedadError(f"{source}: unsupported format version {state.get('format_version')!r}")
    try:
        cls = BASELINES[state["baseline"]]
        det = cls(**dict(state["params"]))
        d = int(state["n_features"])
        det.n_features_in_ = d
        det.fill_values_ = np.asarray(state["fill_values"], dtype=np.float64).reshape(d)
        det.threshold_ = math.inf if state["threshold"] is None else float(state["threshold"])
        a = state["arrays"]
        if isinstance(det, IQRDetector):
            det.lower_, det.upper_, det.unit_ = (
                np.asarray(a[k], dtype=np.float64).reshape(d) for k in ("lower", "upper", "unit")
            )
        elif isinstance(det, IsolationForestDetector):
            trees = []
            for t in a["trees"]:
                tree = {k: np.asarray(t[k], dtype=np.int64) for k in ("left", "right", "feature")}
                tree.update({k: np.asarray(t[k], dtype=np.float64) for k in ("threshold", "leaf_depth")})
                if not all(len(v) == len(tree["left"]) for v in tree.values()) or tree["feature"].max(initial=0) >= d:
                    raise ValueError("inconsistent tree arrays")
                trees.append(tree)
            det.model_ = ForestScorer(trees, int(a["max_samples"]))
        elif isinstance(det, OneClassSVMDetector):
            det.mean_ = np.asarray(a["mean"], dtype=np.float64).reshape(d)
            det.scale_ = np.asarray(a["scale"], dtype=np.float64).reshape(d)
            support = np.asarray(a["support"], dtype=np.float64).reshape(-1, d)
            dual = np.asarray(a["dual_coef"], dtype=np.float64).reshape(len(support))
            det.model_ = RBFOneClassScorer(support, dual, a["intercept"], a["gamma"])
        elif isinstance(det, PCADetector):
            det.mean_ = np.asarray(a["mean"], dtype=np.float64).reshape(d)
            det.scale_ = np.asarray(a["scale"], dtype=np.float64).reshape(d)
            comps = np.asarray(a["components"], dtype=np.float64).reshape(-1, d)
            det.pca_ = SubspaceScorer(np.asarray(a["pca_mean"], dtype=np.float64).reshape(d), comps)
            det.n_components_ = int(comps.shape[0])
    except (KeyError, TypeError, ValueError) as exc:
        raise FedadError(f"{source}: missing or bad field {exc}") from None
    det.state_ = state  # type: ignore[attr-defined]  # only rebuilt baselines carry their state as read
    return det
