"""Process plumbing shared by the peer scripts: the BLAS that Debian's torch
loads (use_blas, loaded_blas), the environment of child processes
(child_env), and the --serve protocol (protocol_channel, serve)."""

import contextlib
import os
import sys


BLAS_ENV = "REUSEFORMER_PEERS_BLAS"            # set once re-executed with the BLAS directory
SAVED_ENV = "REUSEFORMER_PEERS_LD_LIBRARY_PATH"  # LD_LIBRARY_PATH before that, for children


def use_blas(directory, script, argv):
    """Re-executes `script` (the running one) with `directory` first on LD_LIBRARY_PATH.

    The dynamic loader reads LD_LIBRARY_PATH only when a process starts, so
    torch's libblas.so.3 can be redirected only by starting again. Debian's
    torch otherwise gets the system's libblas.so.3, the reference BLAS unless
    an optimised one is installed system-wide (about 30x slower for BERT-base).
    Returns without re-executing for directory "system", a directory without
    libblas.so.3 (loaded_blas then says which BLAS ran), or once done.
    """
    if directory == "system":
        return
    lib = os.path.abspath(directory)
    if not os.path.isfile(os.path.join(lib, "libblas.so.3")) or os.environ.get(BLAS_ENV) == lib:
        return
    env = dict(os.environ)
    env[BLAS_ENV] = lib
    env[SAVED_ENV] = os.environ.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = lib + (":" + env[SAVED_ENV] if env[SAVED_ENV] else "")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(script)] + list(argv), env)


def child_env():
    """This process's environment without the LD_LIBRARY_PATH use_blas added."""
    env = dict(os.environ)
    if BLAS_ENV in env:
        if env.get(SAVED_ENV):
            env["LD_LIBRARY_PATH"] = env[SAVED_ENV]
        else:
            env.pop("LD_LIBRARY_PATH", None)
        env.pop(BLAS_ENV)
        env.pop(SAVED_ENV, None)
    return env


def loaded_blas():
    """The BLAS libraries mapped into this process, and a warning for the reference BLAS."""
    paths = set()
    with contextlib.suppress(OSError), open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and "blas" in os.path.basename(fields[5]).lower():
                paths.add(os.path.realpath(fields[5]))
    info = {"blas": ", ".join(sorted(paths)) or "unknown"}
    if paths and not any(k in p.lower() for p in paths for k in ("openblas", "blis", "mkl", "atlas")):
        info["blas_warning"] = ("PyTorch runs on the reference BLAS (slow); run bench/peers/install.sh "
                                "and leave --blas at its default")
    return info


def protocol_channel():
    """For --serve: the original stdout, kept for the protocol; from here on
    anything else this process or its libraries print goes to stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return protocol


def serve(protocol, one_round):
    """The --serve protocol: "ready" once every peer is warmed up, then one
    timed pass per peer for each line read on stdin, answered "done"."""
    protocol.write("ready\n")
    protocol.flush()
    for _ in sys.stdin:
        one_round()
        protocol.write("done\n")
        protocol.flush()
    protocol.close()

