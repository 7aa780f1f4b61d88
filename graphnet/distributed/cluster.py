"""Ray itself: the one place graphnet imports it, and the Ray instance a run uses.

Without an address graphnet starts a local instance for the run — bound to 127.0.0.1, no
dashboard, as many CPUs as this process may use — and shuts it down at the end. With
``--ray-address ADDR`` (or ``RAY_ADDRESS``) it joins that cluster (``ray start --head`` on one
machine, ``ray start --address HEAD:6379`` on the others) and leaves it running. A Ray session
the caller already opened (``ray.init()`` in a notebook or a test) is used as it is.

For a local instance :data:`LOCAL_ENV` goes into the environment (where not already set) while
Ray is first imported (it reads some of it then) and while the session lasts (the instance's
processes inherit it); the caller's environment, and the signal handlers ``ray.init`` replaces,
are put back when the session ends.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import threading
import sys
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import UsageError
from ..runtime import available_cores
from ..text import install_hint

ADDRESS_ENV = "RAY_ADDRESS"
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a cluster's address to answer before giving up on it."""
LOCAL_ENV = {
    # no usage report leaves the machine
    "RAY_USAGE_STATS_ENABLED": "0",
    # on Linux Ray binds a single-node instance to the machine's outward address unless told
    # that this is no cluster: a local run stays on the loopback interface
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def check_workers(workers: Any, flag: str = "workers") -> int:
    """The worker count as an int of at least 1, or a UsageError naming ``flag``."""
    if isinstance(workers, str):
        text = workers.strip()
        if not re.fullmatch(r"[0-9]+", text):
            raise UsageError("bad worker count", field=flag, expected="a whole number, at least 1",
                             found=repr(workers[:40]))
        workers = int(text)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError("bad worker count", field=flag, expected="a whole number, at least 1",
                         found=repr(workers))
    return workers


def check_max_failures(max_failures: Any, flag: str = "max_failures") -> int:
    """The restart allowance as an int of at least 0, or a UsageError naming ``flag``."""
    text = str(max_failures).strip()
    if isinstance(max_failures, bool) or not re.fullmatch(r"[0-9]+", text):
        raise UsageError("bad number of failures", field=flag,
                         expected="a whole number, at least 0", found=repr(max_failures))
    return int(text)


@contextlib.contextmanager
def _environment_kept(local: bool) -> Iterator[None]:
    """For the block, :data:`LOCAL_ENV` in the environment where the caller set nothing (when
    ``local``); after it, the environment exactly as it was — Ray adds variables of its own
    (``PYTHONBREAKPOINT``, ``RAY_AUTH_MODE``) that a library must not leave behind."""
    kept = dict(os.environ)
    if local:
        os.environ.update({name: value for name, value in LOCAL_ENV.items()
                           if name not in kept})
    try:
        yield
    finally:
        for name in set(os.environ) - set(kept):
            del os.environ[name]
        os.environ.update({name: value for name, value in kept.items()
                           if os.environ.get(name) != value})


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Put back the SIGINT and SIGTERM handlers that ``ray.init`` replaces in the driver."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in kept.items():
            if handler is not None:
                signal.signal(number, handler)


def import_ray(*, local: bool = False):
    """The ``ray`` module, or a UsageError with the install hint. ``local``: a local instance
    will be started, so Ray's settings for one are in place while it is first imported."""
    try:
        with _environment_kept(local and "ray" not in sys.modules):
            import ray
    except ImportError:
        raise UsageError("training on several workers (--workers) needs Ray, which is not "
                         "installed", hint=install_hint("ray")) from None
    return ray


@dataclass
class Session:
    """The Ray instance of a run: ``where`` says which, for the output."""

    ray: Any
    where: str
    owned: bool


def address_from(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``RAY_ADDRESS``, else None (a local instance)."""
    address = (address or os.environ.get(ADDRESS_ENV) or "").strip()
    return address or None


@contextlib.contextmanager
def session(address: str | None = None, flag: str = "--ray-address") -> Iterator[Session]:
    """Join the cluster at ``address`` (see :func:`address_from`), or start a local instance
    and shut it down on leaving; a session already open in this process is used as it is."""
    address = address_from(address)
    ray = import_ray(local=address is None)
    if address is not None:
        _check_reachable(address, flag)
    if ray.is_initialized():
        yield Session(ray, "the Ray session this process opened", owned=False)
        return
    with _environment_kept(address is None), _signal_handlers_kept():
        if address is None:
            ray.init(num_cpus=available_cores(), include_dashboard=False,
                     _node_ip_address="127.0.0.1", logging_level=logging.ERROR,
                     log_to_driver=False)
            where = f"a local Ray instance ({available_cores()} CPUs)"
        else:
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            except Exception as error:  # Ray raises ConnectionError, ValueError, RuntimeError…
                raise UsageError(f"could not join the Ray cluster at {address}: "
                                 f"{_first_line(error)}", field=flag,
                                 hint="start one with `ray start --head`, then pass the address "
                                      "it prints") from None
            where = f"the Ray cluster at {address}"
        try:
            yield Session(ray, where, owned=True)
        finally:
            ray.shutdown()


def _check_reachable(address: str, flag: str) -> None:
    """Refuse at once an address where nothing answers (Ray itself would retry for a minute)."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:([0-9]{1,5})", address)
    if match is None:
        if address == "auto":
            return
        raise UsageError("bad Ray address", field=flag, expected="HOST:PORT (the address `ray "
                         "start --head` prints) or ray://HOST:PORT", found=repr(address[:80]))
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise UsageError(f"cannot reach the Ray cluster at {address}: {reason}", field=flag,
                         hint="start one with `ray start --head` and pass the address it prints, "
                              "or leave --ray-address out to run on a local instance") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
