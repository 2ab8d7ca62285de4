"""Defences against poisoned updates: plain numpy math, no Flower (``fedad.server.strategies`` adapt to it).

Updates are flat float64 vectors (see ``fedad.server.aggregation``), stacked into an (n, d) matrix.
One module per concept: ``config`` (thresholds and weights), ``scoring`` (per-client deviation scores and
their robust z-scores), ``flags`` (deviating and near-duplicate updates), ``trust`` (trust weights and
history), ``quarantine``, ``round`` (one whole round: ``aggregate_round``) and ``sketch_round`` (the same
round on the homomorphic sketches of ``--strategy secure-robust``).

Strategies (``fedad.server.defence.round.STRATEGIES``):

- ``flag`` (seed paper 000, "a node whose update deviates significantly from the majority is flagged"):
  per round, every update is scored against the coordinate-wise median update: distance, cosine, norm
  ratio and spread alignment (``scoring.update_scores``); each becomes a MAD-based robust z-score across
  clients (two passes, see ``flags.flag_deviating_updates``) and a client is flagged when one passes
  ``FlagConfig.z_threshold`` in its bad direction, or when it is a near-duplicate of another client
  (colluders sending one crafted vector). Flagged clients are left out of a FedAvg of the rest; a client
  flagged in ``Quarantine.max_flags`` rounds is left out from then on.
- ``trust`` (seed paper 001): every valid update is kept, rescaled to a common norm (FLTrust-style) and
  weighted by ``embedding trust x direction trust x trust history x capped example count``
  (``trust.trust_weights``); a weight of 0 (update against the median direction) removes it.
- ``robust``: ``flag`` (with quarantine) first, then ``trust`` over the clients that were not flagged.

Every strategy rejects and flags non-finite or wrong-shape updates (``validate_vector`` in
``fedad.server.aggregation``; ``validate_update`` for arrays in the adapters).
"""
