"""``flruntime he keys -w DIR``: create the CKKS contexts of homomorphic-encryption jobs."""

from __future__ import annotations

import argparse
from typing import Any

from flruntime.errors import UsageError
from flruntime.exit_codes import ExitCode


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 60,40, got {text!r}") from None


def register(verbs: Any) -> None:
    """Add the ``he`` verb group (``he keys``)."""
    from flruntime.he.keys import HEParams  # no TenSEAL import: the CLI starts fast without it

    he = verbs.add_parser("he", help="homomorphic encryption (TenSEAL CKKS): create keys")
    sub = he.add_subparsers(dest="he_verb", metavar="COMMAND", parser_class=type(he))
    sub.required = True
    p = sub.add_parser("keys", help="create server_context.tenseal (public) and client_context.tenseal (secret)")
    p.add_argument("-w", "--workspace", required=True, metavar="DIR", help="folder to write the contexts into")
    defaults = HEParams()
    primes = ",".join(map(str, defaults.coeff_mod_bit_sizes))
    p.add_argument(
        "--poly-modulus-degree",
        type=int,
        default=defaults.poly_modulus_degree,
        metavar="N",
        help=f"polynomial degree ({defaults.poly_modulus_degree})",
    )
    p.add_argument(
        "--coeff-mod-bit-sizes",
        type=_ints,
        default=defaults.coeff_mod_bit_sizes,
        metavar="A,B",
        help=f"prime sizes, the last one TenSEAL's special prime ({primes})",
    )
    p.add_argument(
        "--scale-bits",
        type=int,
        default=defaults.scale_bits,
        metavar="S",
        help=f"encoding scale 2**S ({defaults.scale_bits})",
    )
    p.add_argument(
        "--sites",
        metavar="SITE,...",
        help="write startup-kit folders DIR/server/startup/ and DIR/<site>/startup/ for these clients instead",
    )
    p.add_argument("--force", action="store_true", help="replace existing context files (a new key)")
    p.set_defaults(func=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    """Write the contexts and say how to use them."""
    from flruntime.he.keys import HEParams, write_keys

    params = HEParams(args.poly_modulus_degree, tuple(args.coeff_mod_bit_sizes), args.scale_bits)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()] if args.sites else []
    try:
        written = write_keys(args.workspace, params, sites, force=args.force)
    except (ValueError, FileExistsError, ImportError) as exc:
        raise UsageError(str(exc)) from exc
    for path in written:
        print(path)
    print(
        f"CKKS N={params.poly_modulus_degree}, primes {','.join(map(str, params.coeff_mod_bit_sizes))}, "
        f"scale 2**{params.scale_bits}: {params.slots} values per ciphertext"
    )
    if not sites:
        print(f"run an HE job with: flruntime simulate JOB_DIR --he-context-dir {args.workspace}")
    return int(ExitCode.OK)
