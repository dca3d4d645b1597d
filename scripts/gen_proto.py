"""Generate server/pb from proto/ (the one command for protobuf code).

``--check`` regenerates into a temporary folder and fails when it differs from what is
committed. protoc's ``-I<virtual>=<real>`` mapping makes the generated modules import each
other as ``server.pb.offerbandit.v1…`` without any ``sys.path`` tricks.
"""

from __future__ import annotations

import filecmp
import os
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PKG = "server/pb"


def generate(out_root: Path) -> list[Path]:
    # protoc finds the mypy plugins next to this interpreter (the project's venv).
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{OUT_PKG}={PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *(f"{OUT_PKG}/{p.relative_to(PROTO_DIR)}" for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = sorted(p for p in (out_root / OUT_PKG).rglob("*") if p.is_file())
    for folder in {p.parent for p in generated} | {out_root / OUT_PKG}:
        d = folder
        while d != out_root / "server":
            init = d / "__init__.py"
            if not init.exists():
                init.write_text("")
            d = d.parent
    return sorted(p for p in (out_root / OUT_PKG).rglob("*") if p.is_file())


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            files = generate(Path(tmp))
            bad = []
            for f in files:
                rel = f.relative_to(tmp)
                committed = ROOT / rel
                if not committed.exists() or not filecmp.cmp(f, committed, shallow=False):
                    bad.append(str(rel))
            if bad:
                print("generated protobuf code is stale; run `make proto`:", *bad, sep="\n  ")
                return 1
            print(f"protobuf code is up to date ({len(files)} files)")
            return 0
    files = generate(ROOT)
    print(f"generated {len(files)} files under {OUT_PKG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
