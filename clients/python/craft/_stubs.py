"""The craft.v1 stubs, generated from proto/craft/v1/*.proto, never committed.

Where they come from, first match wins:
  1. $CRAFT_PY_STUBS: a directory made by clients/python/generate.sh (Bazel
     builds one, //clients/python:stubs);
  2. a cache directory, generated on first use with protoc and
     grpc_python_plugin ($CRAFT_PY_CACHE, else $XDG_CACHE_HOME/craft-python or
     ~/.cache/craft-python), keyed by a hash of the .proto files and protoc's
     version so that a changed contract regenerates. The .proto files are
     found in $CRAFT_PROTO_DIR or the repository's proto/.

Either way the modules become `craft.v1.<name>_pb2` and `craft.v1.<name>_pb2_grpc`
(the directory's craft/ is added to this package's __path__), the names the
generated code imports each other by.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

PROTOS = ("agent", "layout", "load", "placement", "worker")
PROTOC = "/usr/bin/protoc"
GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin"

_lock = threading.Lock()
_loaded = None


class StubsError(RuntimeError):
    """The stubs are neither given nor can be generated."""


def _complete(directory):
    return all(
        os.path.isfile(os.path.join(directory, "craft", "v1", name + suffix))
        for name in PROTOS
        for suffix in ("_pb2.py", "_pb2_grpc.py")
    )


def _proto_root():
    candidates = []
    if os.environ.get("CRAFT_PROTO_DIR"):
        candidates.append(os.environ["CRAFT_PROTO_DIR"])
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "..", "..", "proto"))  # the repository
    for root in candidates:
        if all(os.path.isfile(os.path.join(root, "craft", "v1", p + ".proto")) for p in PROTOS):
            return os.path.abspath(root)
    raise StubsError(
        "craft.v1 stubs: set CRAFT_PY_STUBS to a directory made by clients/python/generate.sh, "
        "or CRAFT_PROTO_DIR to the directory holding craft/v1/*.proto (looked in: %s)"
        % ", ".join(candidates)
    )


def _run(argv):
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise StubsError(
            "%s not found (apt-get install protobuf-compiler protobuf-compiler-grpc)" % argv[0]
        ) from None
    except subprocess.CalledProcessError as e:
        raise StubsError("%s failed: %s" % (" ".join(argv), e.stderr.strip())) from None


def generate(out_dir, proto_root=None):
    """Writes the stubs under out_dir/craft/v1/ (what generate.sh does)."""
    root = proto_root or _proto_root()
    os.makedirs(out_dir, exist_ok=True)
    _run(
        [
            PROTOC,
            "-I" + root,
            "--python_out=" + out_dir,
            "--grpc_python_out=" + out_dir,
            "--plugin=protoc-gen-grpc_python=" + GRPC_PYTHON_PLUGIN,
        ]
        + [os.path.join(root, "craft", "v1", p + ".proto") for p in PROTOS]
    )


def _cached():
    root = _proto_root()
    digest = hashlib.sha256(_run([PROTOC, "--version"]).encode())
    for p in PROTOS:
        with open(os.path.join(root, "craft", "v1", p + ".proto"), "rb") as f:
            digest.update(f.read())
    base = os.environ.get("CRAFT_PY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "craft-python",
    )
    directory = os.path.join(base, digest.hexdigest()[:16])
    if _complete(directory):
        return directory
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=base, prefix=".gen-")
    try:
        generate(tmp, root)
        try:
            os.rename(tmp, directory)  # atomic; another process may have won
        except OSError:
            if not _complete(directory):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def stubs_dir():
    """The directory whose craft/v1/ holds the stubs (see the module doc)."""
    given = os.environ.get("CRAFT_PY_STUBS")
    if given:
        if not _complete(given):
            raise StubsError("CRAFT_PY_STUBS=%s holds no craft/v1 stubs (run generate.sh)" % given)
        return os.path.abspath(given)
    return _cached()


def load():
    """Makes craft.v1 importable; returns the stubs directory. Idempotent."""
    global _loaded
    with _lock:
        if _loaded is None:
            directory = stubs_dir()
            package = sys.modules[__name__.rpartition(".")[0]]
            path = os.path.join(directory, "craft")
            if path not in package.__path__:
                package.__path__.append(path)
            _loaded = directory
        return _loaded


if __name__ == "__main__":
    # clients/python/generate.sh OUT_DIR [PROTO_ROOT]: run as a file, so that
    # generating does not import the package it generates for.
    try:
        generate(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    except StubsError as e:
        sys.exit("generate.sh: %s" % e)
