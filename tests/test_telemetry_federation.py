"""/metrics of a real small federation (server and a client over gRPC), scraped while it runs and parsed."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from procs import finish, free_port, start_client, start_server, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Samples of http://127.0.0.1:port/metrics ({} while nothing listens)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_server_and_client_metrics_during_a_federation(tmp_path):
    from fedad.common.synth import write_plant

    write_plant(tmp_path / "plant", nodes=3, records=4000, seed=1, formats=("csv",))
    shards = sorted((tmp_path / "plant").glob("node_*.csv"))
    logs = tmp_path / "logs"
    logs.mkdir()
    address = f"127.0.0.1:{free_port()}"
    sport, cport = free_port(), free_port()
    server = start_server(
        address, tmp_path / "run", "--rounds", "12", "--min-clients", "3", "--local-epochs", "1",
        "--strategy", "trust", "--metrics-port", str(sport), "--metrics-host", "127.0.0.1",
    )  # fmt: skip
    clients = [
        start_client(address, shard, f"node{i}", logs, *(["--metrics-port", str(cport)] if i == 0 else []))
        for i, shard in enumerate(shards)
    ]
    seen: dict = {}
    client_seen: dict = {}

    def progressed() -> bool:
        nonlocal seen, client_seen
        s = scrape(sport)
        if s.get(("fedad_rounds_total", ()), 0) >= 2:
            seen = s
        c = scrape(cport)
        if c.get(("fedad_rounds_total", ()), 0) >= 1:
            client_seen = c
        return bool(seen) and bool(client_seen)

    try:
        wait_for(progressed, 300, "two rounds in the server's and a client's /metrics", [server, *clients])
    finally:
        codes = finish([server, *clients])
    assert codes == [0, 0, 0, 0], (tmp_path / "run-server.log").read_text()[-3000:]
    assert seen[("fedad_clients_connected", ())] == 3
    assert seen[("fedad_model_version", ())] >= 2
    assert seen[("fedad_round_seconds_count", ())] == seen[("fedad_rounds_total", ())]
    for i in range(3):
        assert seen[("fedad_client_bytes_up_total", (("client", f"node{i}"),))] > 0
        assert seen[("fedad_client_bytes_down_total", (("client", f"node{i}"),))] > 0
        assert 0 <= seen[("fedad_client_trust", (("client", f"node{i}"),))] <= 1
    labels = {dict(k[1]).get("client") for k in seen if k[0].startswith("fedad_client_")}
    assert labels == {"node0", "node1", "node2"}  # client names are the only label values
    assert client_seen[("fedad_model_version", ())] >= 1
    assert client_seen[("fedad_client_bytes_up_total", (("client", "node0"),))] > 0
