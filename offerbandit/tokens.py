"""``offerbandit token``: bearer tokens for a server with ``tokens_file`` set.

    offerbandit token add --file tokens.toml --name web-frontend --roles decide,report
    offerbandit token list --file tokens.toml

``add`` prints the new token once (the file keeps only its SHA-256); hand it to the caller,
who sends ``authorization: Bearer <token>`` with every call. A running server reads the
file again within a second of a change. Remove a token by deleting its ``[[token]]`` table.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from server.auth import ROLES, TokensError, add_token, parse_tokens


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="offerbandit token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True)
    a = sub.add_parser("add", help="create a token and append its hash to the file")
    a.add_argument("--file", type=Path, required=True, help="the server's tokens_file")
    a.add_argument("--name", required=True, help="who holds it (unique in the file)")
    a.add_argument("--roles", required=True, help=f"comma-separated, of {', '.join(ROLES)}")
    ls = sub.add_parser("list", help="the names and roles in the file")
    ls.add_argument("--file", type=Path, required=True)
    ns = p.parse_args(argv)
    try:
        if ns.action == "add":
            roles = [r.strip() for r in ns.roles.split(",") if r.strip()]
            token = add_token(ns.file, ns.name, roles)
            print(token)
            return 0
        for entry in parse_tokens(ns.file.read_text()).values():
            print(f"{entry.name}\t{','.join(sorted(entry.roles))}")
        return 0
    except (TokensError, OSError) as exc:
        p.error(str(exc))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
