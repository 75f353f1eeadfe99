"""What the app keeps in Litestar's `State`, and the dependencies that hand it to handlers:
the engine, the metrics, the start time, whether start-up loads are done. No globals."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import State

from engine import EngineAPI

from .metrics import Metrics


@dataclass
class Startup:
    """Whether the start-up loads are done (/readyz waits for them)."""

    preloaded: bool


def provide_engine(state: State) -> EngineAPI:
    return state.engine


def provide_metrics(state: State) -> Metrics:
    return state.metrics


def provide_started_at(state: State) -> int:
    return state.started_at


def provide_startup(state: State) -> Startup:
    return state.startup
