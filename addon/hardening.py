"""Keeping what the proxy holds in memory to itself.

Tokens, and under `run` the CI client secret in the environment it started with, live in
this process. Its user's other processes — a build script under `cargo vouch run` among
them — could otherwise read them through /proc/PID/environ and /proc/PID/mem, or find them
in a core file. A process that is not dumpable has its /proc entries owned by root and
refuses ptrace to processes of its own user; with no core-file limit it leaves no core.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from collections.abc import Mapping

#: mitmproxy writes TLS session keys to the file either names.
KEY_LOG_VARIABLES = ("MITMPROXY_SSLKEYLOGFILE", "SSLKEYLOGFILE")

#: From <linux/prctl.h>.
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def protect_process() -> tuple[int, int]:
    """Makes this process non-dumpable and sets its core-file limit to 0; returns the limit it
    had, for a child (CMD under `run`) to get back: both are inherited across fork."""
    before = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, before[1]))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    return before


def is_dumpable() -> bool:
    """Whether this process may be dumped or traced by its own user (False after protect_process)."""
    if not sys.platform.startswith("linux"):
        return resource.getrlimit(resource.RLIMIT_CORE)[0] != 0
    return bool(ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def key_log_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the proxy must not start in this environment: with TLS session keys in a file,
    every token could be read from a capture of the traffic."""
    for name in KEY_LOG_VARIABLES:
        if environ.get(name):
            return (f"{name} is set: mitmproxy would write TLS session keys to a file, and with them "
                    "every token could be read from a capture; unset it")
    return None
