"""``python -m migration_pipeline.sandbox``: serve, generate or reset the sandbox.

``serve`` answers over real HTTP exactly as the real hosts do (the fake Pipedrive under
``/api/v1`` and ``/api/v2``, the fake amoCRM under ``/api/v4``), on the same state as the
embedded default for the same data directory, so any client written for the real APIs works
against it with only the base URL changed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from . import (
    AMOCRM_SANDBOX_TOKEN,
    PIPEDRIVE_SANDBOX_TOKEN,
    SCALES,
    SandboxSettings,
    amocrm_fake,
    pipedrive_fake,
)
from . import faults as faults_module
from .faults import FaultSpec, FaultSpecError

FAULT_HELP = faults_module.__doc__ or ""


def _settings(args: argparse.Namespace) -> SandboxSettings:
    if getattr(args, "data_dir", None):
        os.environ["MIGRATION_DATA_DIR"] = str(Path(args.data_dir).resolve())
    settings = SandboxSettings.from_env()
    changes: dict[str, object] = {}
    if getattr(args, "scale", None):
        changes["scale"] = args.scale
    if getattr(args, "seed", None) is not None:
        changes["seed"] = args.seed
    if getattr(args, "faults", None) is not None:
        changes["faults"] = args.faults
    if getattr(args, "from_dir", None):
        changes["from_dir"] = Path(args.from_dir).resolve()
    settings = replace(settings, **changes)
    for side in ("pipedrive", "amocrm"):
        FaultSpec.parse(settings.faults, side)  # fail early on a bad spec
    return settings


def _token_line(token: str, sandbox_token: str, variable: str) -> str:
    # Only the documented sandbox token is printed; a real-looking token from the environment
    # is a secret and never leaves it.
    return token if token == sandbox_token else f"(the value of {variable})"


async def _serve(
    settings: SandboxSettings, host: str, pipedrive_port: int, amocrm_port: int
) -> None:
    import uvicorn

    from .asgi import asgi_app

    servers = [
        uvicorn.Server(
            uvicorn.Config(
                asgi_app(handler),
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                timeout_keep_alive=30,
            )
        )
        for handler, port in (
            (pipedrive_fake(settings).handle, pipedrive_port),
            (amocrm_fake(settings).handle, amocrm_port),
        )
    ]
    await asyncio.gather(*(server.serve() for server in servers))


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(f"dataset: {settings.dataset_dir()}", flush=True)
    pipedrive_fake(settings).validate()
    amocrm_fake(settings)  # initialise the account before the first request
    print(f"Pipedrive: http://{args.host}:{args.pipedrive_port}  (/api/v1, /api/v2)")
    print(
        "  token (x-api-token header): "
        + _token_line(settings.pipedrive_token, PIPEDRIVE_SANDBOX_TOKEN, "PIPEDRIVE_API_TOKEN")
    )
    print(f"amoCRM:    http://{args.host}:{args.amocrm_port}  (/api/v4)")
    print(
        "  token (Authorization: Bearer): "
        + _token_line(settings.amocrm_token, AMOCRM_SANDBOX_TOKEN, "AMOCRM_ACCESS_TOKEN")
    )
    print(f"state: {settings.state_dir}   faults: {settings.faults or 'none'}", flush=True)
    try:
        asyncio.run(_serve(settings, args.host, args.pipedrive_port, args.amocrm_port))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .generator import generate

    out = Path(args.out).resolve()
    counts = generate(args.scale, args.seed, out)
    print(f"wrote {out}")
    for entity, count in counts.items():
        print(f"  {entity:<22} {count:>9}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    settings = _settings(args)
    amocrm_fake(settings).reset()
    settings.pipedrive_state.unlink(missing_ok=True)
    print(f"sandbox reset: amoCRM account emptied, Pipedrive limits cleared ({settings.state_dir})")
    return 0


def _world_options(parser: argparse.ArgumentParser, *, faults: bool = True) -> None:
    parser.add_argument("--data-dir", help="data directory (default: MIGRATION_DATA_DIR or data/)")
    parser.add_argument("--scale", choices=SCALES, help="generated dataset size")
    parser.add_argument("--seed", type=int, help="generator seed")
    parser.add_argument("--from-dir", help="serve this folder of <entity>.jsonl files instead")
    if faults:
        parser.add_argument(
            "--faults", help="fault spec, e.g. 429=0.05,lost=0.02,seed=7 (see below)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m migration_pipeline.sandbox", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve both fakes over HTTP until stopped",
        description="Serve the fake Pipedrive and the fake amoCRM over HTTP.\n\n" + FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--pipedrive-port", type=int, required=True)
    serve.add_argument("--amocrm-port", type=int, required=True)
    _world_options(serve)
    serve.set_defaults(func=cmd_serve)
    generate = sub.add_parser("generate", help="write a generated dataset to a folder")
    generate.add_argument("--scale", choices=SCALES, default="small")
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--out", required=True, help="folder to write <entity>.jsonl files to")
    generate.set_defaults(func=cmd_generate)
    reset = sub.add_parser("reset", help="empty the fake amoCRM account and the rate-limit state")
    _world_options(reset, faults=False)
    reset.set_defaults(func=cmd_reset)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FaultSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
