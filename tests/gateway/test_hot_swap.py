"""Hot-swap end to end over real HTTP: eight tiny models under a budget that holds two,
hundreds of concurrent requests with Zipf-distributed model choice. Every response equals
that model's sentence-transformers output; there are no errors; evictions show in
/metrics. Broken and missing model folders fail clearly while the rest keeps serving."""

from __future__ import annotations

import asyncio
import random
import re

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig, spec_from_folder
from engine.catalog import spec_from_reference
from engine.pool import footprint
from tests.conftest import LiveServer
from tests.texts import varied_texts
from tests.tiny import tiny_bert, write_sentence_transformers_config

MODELS = 8
TEXTS = varied_texts(40, seed=41)


def _zipf_choices(count: int, population: int, exponent: float = 1.1, seed: int = 0) -> list[int]:
    weights = [1 / (rank + 1) ** exponent for rank in range(population)]
    return random.Random(seed).choices(range(population), weights=weights, k=count)


@pytest.fixture(scope="module")
def swap_server(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    root = tmp_path_factory.mktemp("swap")
    specs, references = [], {}
    for i in range(MODELS):
        folder = tiny_bert(root / f"m{i}", hidden=32, heads=4, layers=2, seed=100 + i)
        write_sentence_transformers_config(folder, pooling="mean", normalize=True)
        specs.append(spec_from_folder(f"m{i}", folder))
        references[f"m{i}"] = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    broken = tiny_bert(root / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    specs.append(spec_from_folder("broken", broken))
    specs.append(spec_from_reference("missing", str(root / "no-such-folder")))
    budget = 2 * footprint(specs[0], 4) + 1024  # two of the eight fit
    engine = Engine(specs, EngineConfig(device="cpu", dtype="float32", memory_budget=budget,
                                        # room in the host tier for all eight: whether an evicted model is still
                                        # there when it is asked for again must not depend on the request timing
                                        host_cache=MODELS * footprint(specs[0], 4), swap_age_seconds=0.05,
                                        max_batch_tokens=2048))
    with LiveServer(engine) as live:
        live.root = root
        yield live, references


def test_zipf_traffic_over_eight_models_with_room_for_two(swap_server):
    live, references = swap_server
    choices = _zipf_choices(300, MODELS)
    picks = random.Random(1)
    requests = [(f"m{m}", picks.sample(range(len(TEXTS)), k=picks.randint(1, 3))) for m in choices]

    async def send_all():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=live.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/encode", json={"model": model, "inputs": [TEXTS[i] for i in rows]})
                                          for model, rows in requests))

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(requests)
    for (model, rows), response in zip(requests, responses):
        got = np.array(response.json()["embeddings"])
        np.testing.assert_allclose(got, references[model][rows], atol=1e-5)

    metrics = httpx.get(live.url + "/metrics").text
    evictions = sum(float(v) for v in re.findall(r'^shoal_model_evictions_total\{[^}]*reason="lru"[^}]*\} (\S+)',
                                                 metrics, re.M))
    assert evictions > 0
    assert re.search(r'^shoal_model_loads_total\{model="m\d",source="host"\} [1-9]', metrics, re.M)
    lookups = {kind: float(value) for kind, value in
               re.findall(r'^shoal_pool_lookups_total\{result="(\w+)"\} (\S+)', metrics, re.M)}
    loads = sum(float(v) for v in re.findall(r'^shoal_model_loads_total\{[^}]*\} (\S+)', metrics, re.M))
    assert lookups["hit"] > 0 and lookups["miss"] > 0 and lookups["host"] > 0
    assert lookups["miss"] + lookups["host"] >= loads  # every load was counted as a lookup that missed
    resident = float(re.search(r"^shoal_models_resident (\S+)", metrics, re.M).group(1))
    assert resident <= 2
    states = {m["id"]: m for m in httpx.get(live.url + "/v1/models").json()["data"]}
    assert sum(1 for m in states.values() if m["state"] == "resident") <= 2
    assert sum(m["evictions"] for m in states.values()) == evictions


@pytest.mark.parametrize("model,reason", [("broken", "not a safetensors file"), ("missing", "neither a folder")])
def test_broken_and_missing_models_fail_clearly_and_others_keep_serving(swap_server, model, reason):
    live, references = swap_server
    response = httpx.post(live.url + "/v1/encode", json={"model": model, "inputs": ["hello"]}, timeout=60)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "model_load_failed" and reason in error["message"]
    entry = next(m for m in httpx.get(live.url + "/v1/models").json()["data"] if m["id"] == model)
    assert entry["state"] == "failed" and reason in entry["error"]
    for message in (error["message"], entry["error"]):  # the model is named; no server path is
        assert repr(model) in message and "/tmp" not in message and str(live.root) not in message
    ok = httpx.post(live.url + "/v1/encode", json={"model": "m3", "inputs": TEXTS[:2]}, timeout=60)
    assert ok.status_code == 200
    np.testing.assert_allclose(ok.json()["embeddings"], references["m3"][:2], atol=1e-5)


def test_operator_load_and_unload(swap_server):
    live, _ = swap_server
    loaded = httpx.post(live.url + "/v1/models/m6/load", timeout=60)
    assert loaded.status_code == 200 and loaded.json() == {"model": "m6", "state": "resident"}
    unloaded = httpx.post(live.url + "/v1/models/m6/unload", timeout=60)
    assert unloaded.json()["state"] in ("host", "disk")


def test_a_folder_fixed_after_start_up_serves_after_an_operator_load(tmp_path, minilm_spec):
    import shutil

    folder = tmp_path / "late"
    specs = [minilm_spec, spec_from_reference("late", str(folder))]  # nothing there yet
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live:
        refused = httpx.post(live.url + "/v1/encode", json={"model": "late", "inputs": ["x"]}, timeout=60)
        assert refused.status_code == 503 and "late" in refused.json()["error"]["message"]
        shutil.copytree(minilm_spec.path, folder)  # an operator puts the model in place
        loaded = httpx.post(live.url + "/v1/models/late/load", timeout=60)
        assert loaded.status_code == 200 and loaded.json()["state"] == "resident"
        served = httpx.post(live.url + "/v1/encode", json={"model": "late", "inputs": ["x"]}, timeout=60)
        direct = httpx.post(live.url + "/v1/encode", json={"model": minilm_spec.name, "inputs": ["x"]}, timeout=60)
        assert served.status_code == 200
        np.testing.assert_allclose(served.json()["embeddings"], direct.json()["embeddings"], atol=1e-6)
