"""Helpers shared by the head parity tests: run an engine on one model folder."""

from __future__ import annotations

from engine import Engine, EngineConfig, spec_from_folder


async def with_engine(folder, call, name: str = "m", **config):
    """Start an engine serving `folder` as `name`, await `call(engine, name)`, stop it."""
    engine = Engine([spec_from_folder(name, folder)], EngineConfig(device="cpu", dtype="float32", **config))
    await engine.start()
    try:
        return await call(engine, name)
    finally:
        await engine.stop()
