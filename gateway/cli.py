"""`shoal serve`: every option is also an environment variable SHOAL_<OPTION>."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

from engine import (
    EngineConfig,
    EngineError,
    ModelSpec,
    default_model_spec,
    describe_model,
    load_catalog,
    parse_model_argument,
    spec_from_reference,
)
from engine.sizes import parse_size

log = logging.getLogger("shoal.gateway")


def _env(name: str, default=None):
    return os.environ.get(f"SHOAL_{name.upper().replace('-', '_')}", default)


def _env_list(name: str) -> list[str]:
    value = _env(name)
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoal", description="Serve many small models from one device.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server",
                                description="Start the HTTP server. Every option is also SHOAL_<OPTION>.")
    serve.add_argument("--host", default=_env("host", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(_env("port", 8080)))
    serve.add_argument("--model", action="append", default=None, metavar="NAME=PATH_OR_ID",
                       help="serve a model from a folder or the local HF cache (repeatable; env: comma-separated)")
    serve.add_argument("--catalog", default=_env("catalog"), metavar="FILE", help="TOML model catalog")
    serve.add_argument("--device", default=_env("device", "auto"), choices=["auto", "cpu", "cuda"])
    serve.add_argument("--dtype", default=_env("dtype", "auto"), choices=["auto", "float32", "bfloat16", "float16"])
    serve.add_argument("--memory-budget", default=_env("memory_budget"), metavar="SIZE",
                       help="device bytes for model weights (e.g. 2GiB); default: a safe fraction of free memory")
    serve.add_argument("--host-cache", default=_env("host_cache"), metavar="SIZE",
                       help="host memory for evicted models' weights")
    serve.add_argument("--pin", action="append", default=None, metavar="NAME", help="never evict this model")
    serve.add_argument("--api-key", action="append", default=None, metavar="KEY", help="accepted bearer key")
    serve.add_argument("--api-keys-file", default=_env("api_keys_file"), metavar="FILE",
                       help="file with one accepted bearer key per line")
    serve.add_argument("--admin-key", action="append", default=None, metavar="KEY",
                       help="operator key: the only keys that may load and unload models, once set")
    serve.add_argument("--admin-keys-file", default=_env("admin_keys_file"), metavar="FILE",
                       help="file with one operator key per line")
    serve.add_argument("--max-batch-tokens", type=int, default=_int_env("max_batch_tokens"),
                       help="token budget per forward batch (default 16384 on CUDA, 4096 on CPU)")
    serve.add_argument("--max-queue-tokens", type=int, default=_int_env("max_queue_tokens"),
                       help="queued tokens before new requests get 429 (default 1048576)")
    serve.add_argument("--deadline-seconds", type=float, default=float(_env("deadline_seconds", 120)),
                       help="deadline for requests without X-Shoal-Deadline-Ms (0: none)")
    serve.add_argument("--max-inputs", type=int, default=int(_env("max_inputs", 2048)),
                       help="inputs per request")
    serve.add_argument("--max-body-size", default=_env("max_body_size", "32MiB"), metavar="SIZE")
    serve.add_argument("--load-timeout-seconds", type=float, default=float(_env("load_timeout_seconds", 120)),
                       help="how long POST /v1/models/NAME/load waits for room and for the load")
    serve.add_argument("--drain-seconds", type=float, default=float(_env("drain_seconds", 30)),
                       help="on SIGTERM, how long in-flight requests may take to finish")
    serve.add_argument("--log-level", default=_env("log_level", "info"), choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", default=_env("access_log", "") in ("1", "true"))
    inspect_command = commands.add_parser(
        "inspect", help="show what Shoal makes of a model folder, without serving it",
        description="Read a model folder (or a hub id in the local Hugging Face cache) as `shoal serve` would: "
                    "architecture, task, outputs, dimension, max length, size, and why it cannot serve if not.")
    inspect_command.add_argument("model", metavar="PATH_OR_ID")
    inspect_command.add_argument("--name", help="the name it would be served under (default: the folder's name)")
    return parser


def _int_env(name: str) -> int | None:
    value = _env(name)
    return int(value) if value else None


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    specs: list[ModelSpec] = load_catalog(args.catalog) if args.catalog else []
    for argument in (args.model if args.model is not None else _env_list("model")):
        name, reference = parse_model_argument(argument)
        specs.append(spec_from_reference(name, reference))
    if not specs:
        specs = [default_model_spec()]
    pins = set(args.pin if args.pin is not None else _env_list("pin"))
    unknown = pins - {spec.name for spec in specs}
    if unknown:
        raise ValueError(f"--pin names unknown models: {sorted(unknown)}")
    return [replace(spec, pin=True) if spec.name in pins else spec for spec in specs]


def api_keys(args: argparse.Namespace, option: str = "api_key") -> tuple[str, ...]:
    """Keys from `--api-key`/`--api-keys-file` (or `--admin-key`/`--admin-keys-file`)."""
    given = getattr(args, option)
    keys = list(given if given is not None else _env_list(option))
    keys_file = getattr(args, option.removesuffix("_key") + "_keys_file")
    if keys_file:
        lines = Path(keys_file).read_text().splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return tuple(keys)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from engine import Engine

    from .app import GatewaySettings, create_app
    from .logs import configure_logging

    configure_logging(args.log_level)
    specs = model_specs(args)
    config = EngineConfig(device=args.device, dtype=args.dtype, max_batch_tokens=args.max_batch_tokens,
                          max_queue_tokens=args.max_queue_tokens, max_inputs_per_request=args.max_inputs,
                          memory_budget=parse_size(args.memory_budget) if args.memory_budget else None,
                          host_cache=parse_size(args.host_cache) if args.host_cache else None,
                          default_deadline_seconds=args.deadline_seconds or None,
                          load_timeout_seconds=args.load_timeout_seconds)
    engine = Engine(specs, config)
    preload = tuple(spec.name for spec in specs if spec.pin) or ((specs[0].name,) if len(specs) == 1 else ())
    settings = GatewaySettings(api_keys=api_keys(args), admin_keys=api_keys(args, "admin_key"),
                               max_body_bytes=parse_size(args.max_body_size),
                               preload=preload, drain_seconds=args.drain_seconds)
    gateway = create_app(engine, settings)
    listening = listen(args.host, args.port)  # before "serving": a busy port is an error, not a log line after it
    log.info("serving", extra={"url": f"http://{args.host}:{args.port}", "models": [s.name for s in specs],
                               "auth": bool(settings.api_keys), "operator_keys": bool(settings.admin_keys)})
    server = uvicorn.Server(uvicorn.Config(gateway.asgi, log_config=None, access_log=args.access_log,
                                           timeout_graceful_shutdown=int(args.drain_seconds), lifespan="on"))
    server.run(sockets=[listening])


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound now so that a port in use fails clearly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                      f"choose another with --port or SHOAL_PORT") from None
    listening.listen(2048)
    listening.set_inheritable(True)
    return listening


def inspect(args: argparse.Namespace) -> None:
    """What Shoal makes of a model folder or cached hub id, without loading its weights."""
    logging.getLogger("shoal").setLevel(logging.CRITICAL)  # the report says it all, once
    report = describe_model(args.name or Path(args.model.rstrip("/")).name, args.model)
    print(json.dumps(report, indent=2))
    if not report["can_serve"]:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(args)
        elif args.command == "inspect":
            inspect(args)
    except (ValueError, OSError, EngineError) as error:
        print(f"shoal: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
