"""Concurrent fit/evaluate calls to clients whose failures keep the client they came from.

Flower's ``fit_clients`` turns a client that died mid-call into a bare exception, so the server could only
say "client unknown failed"; here every exception travels with its ``ClientProxy``.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from flwr.common import Code
from flwr.server.client_proxy import ClientProxy


class ClientCallFailed(Exception):
    """A call to one client raised (connection lost, timeout); ``proxy`` says which client."""

    def __init__(self, proxy: ClientProxy, cause: BaseException) -> None:
        text = str(cause).splitlines()[0] if str(cause) else ""
        super().__init__(f"{type(cause).__name__}: {text}".rstrip(": "))
        self.proxy, self.cause = proxy, cause


def call_clients(
    method: str,
    instructions: list[tuple[ClientProxy, Any]],
    max_workers: int | None,
    timeout: float | None,
    group_id: int,
) -> tuple[list[tuple[ClientProxy, Any]], list]:
    """Run ``proxy.<method>(ins)`` ("fit" or "evaluate") on every client; (results, failures) like Flower's."""

    def one(proxy: ClientProxy, ins: Any) -> Any:
        call: Callable[..., Any] = getattr(proxy, method)
        return call(ins, timeout=timeout, group_id=group_id)

    results: list[tuple[ClientProxy, Any]] = []
    failures: list = []
    if not instructions:
        return results, failures
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [(proxy, pool.submit(one, proxy, ins)) for proxy, ins in instructions]
        for proxy, future in futures:
            exc = future.exception()
            if exc is not None:
                failures.append(ClientCallFailed(proxy, exc))
                continue
            res = future.result()
            (results if res.status.code == Code.OK else failures).append((proxy, res))
    return results, failures
