"""The router tier, proven with the real HAProxy 2.6 and real `shoal serve` replicas on
loopback, running the haproxy.cfg that the ConfigMap ships (k8s/base/router), with only its
DNS `server-template` swapped for static `server shoalN` lines (same names, so the same
ring) and its two `bind` ports moved to free loopback ports.

Four replicas serve the same catalog: 24 tiny BERT embedders (`m00`..`m23`, four random
weight sets) and the real all-MiniLM-L6-v2 as `hot`. The router adds `X-Shoal-Replica`
(the server that answered) to each response, which is how the tests see where a request
went. Every routed result is compared with that model's sentence-transformers output.

- every request for one model lands on one replica, whether the key comes from the
  X-Shoal-Model header (Shoal's client, msgpack), the /tei/{model} or /weaviate/{model}
  path, or the JSON body (plain JSON, and the OpenAI SDK with no header);
- a hot model spills to other replicas under concurrent load (bounded load), and comes
  back to its owner when the load is gone;
- a fourth replica takes about a quarter of the models, all from the others, and no model
  moves between the old replicas (consistent hashing);
- SIGKILL on a replica under load loses no request that had not reached it;
- with no replica up, the router answers 503 JSON with Retry-After.

The figures (requests, spill, models moved, requests lost) are printed (`pytest -s`)."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from tests import references

from .conftest import free_port, stop
from .tools import K8S, find, kustomize, tool

ROUTER = K8S / "base" / "router"
CONFIG = ROUTER / "haproxy.cfg"
SEEDS = 4
MODELS = [f"m{i:02d}" for i in range(24)]
HOT = "hot"
TEXTS = ["A shoal of fish turns at once.", "Routers hash the model name onto a ring."]
HOT_TEXTS = [f"Passage {i} about rivers, valleys and the fish that swim upstream every spring. " * 3
             for i in range(8)]


def haproxy() -> str:
    return tool("haproxy", Path("/usr/sbin"), Path("/usr/local/sbin"))


def log(message: str) -> None:
    print(f"[router] {message}", file=sys.stderr)


# --- the configuration ---------------------------------------------------------------

def render(config: str, servers: list[int], port: int, stats_port: int) -> str:
    """`config` with its server-template replaced by `server shoalN 127.0.0.1:PORT` lines (in
    slot order: the same names, hence the same server ids and ring, as the template fills)
    and its binds moved to loopback ports. Nothing else changes."""
    template = re.compile(r"^(\s*)server-template shoal \d+ .*$", re.M)
    assert len(template.findall(config)) == 1, "expected one server-template line"
    static = "\n".join(f"    server shoal{i} 127.0.0.1:{p}" for i, p in enumerate(servers, 1))
    rendered = template.sub(static, config)
    for old, new in ((":8080", f"127.0.0.1:{port}"), (":8405", f"127.0.0.1:{stats_port}")):
        assert rendered.count(f"bind {old}\n") == 1, f"expected one `bind {old}`"
        rendered = rendered.replace(f"bind {old}\n", f"bind {new}\n")
    return rendered


def check_config(path: Path) -> str:
    result = subprocess.run([haproxy(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output and "ALERT" not in output, output
    return output


@pytest.fixture(scope="module")
def shipped_config() -> str:
    """haproxy.cfg as the ConfigMap the router Deployment mounts holds it."""
    objects = kustomize(K8S / "overlays" / "cpu")
    deployment = find(objects, "Deployment", "shoal-router")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config_path = Path(container["command"][container["command"].index("-f") + 1])
    mount = next(m for m in container["volumeMounts"] if config_path.is_relative_to(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = find(objects, "ConfigMap", volume["configMap"]["name"])
    return configmap["data"][str(config_path.relative_to(mount["mountPath"]))]


def test_the_configmap_ships_haproxy_cfg_and_haproxy_accepts_it(shipped_config, tmp_path):
    assert shipped_config == CONFIG.read_text(), "the ConfigMap must hold k8s/base/router/haproxy.cfg as is"
    (tmp_path / "haproxy.cfg").write_text(shipped_config)
    assert "Configuration file is valid" in check_config(tmp_path / "haproxy.cfg")
    (tmp_path / "static.cfg").write_text(render(shipped_config, [free_port(), free_port()], free_port(), free_port()))
    check_config(tmp_path / "static.cfg")


def _directive(config: str, name: str) -> list[str]:
    return [line.split()[len(name.split()):] for line in config.splitlines()
            if line.split()[:len(name.split())] == name.split()]


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 0.001}[unit]


def test_the_router_manifests_agree_with_the_config(shipped_config):
    """Ports, DNS name, timeouts and memory in the manifests match haproxy.cfg, and the
    server timeout outlasts Shoal's own request deadline."""
    from gateway import cli

    objects = kustomize(K8S / "overlays" / "cpu")
    router = find(objects, "Deployment", "shoal-router")
    pod = router["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert router["spec"]["replicas"] == 2
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {name: f":{port}" for name, port in ports.items()} == {"http": ":8080", "stats": ":8405"}
    assert [b[0] for b in _directive(shipped_config, "bind")] == [":8080", ":8405"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "stats"}
    assert _directive(shipped_config, "monitor-uri") == [["/healthz"]]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["resources"]["requests"] and container["resources"]["limits"]

    # replicas come from the headless Service, by the SRV name of its http port
    (template,) = _directive(shipped_config, "server-template")
    srv = template[2]
    match = re.fullmatch(r"_(\w+)\._tcp\.([\w-]+)\.([\w-]+)\.svc\.cluster\.local", srv)
    assert match, srv
    headless = find(objects, "Service", match[2])
    assert headless["metadata"]["namespace"] == match[3]
    assert headless["spec"]["clusterIP"] == "None"
    assert match[1] in {p["name"] for p in headless["spec"]["ports"]}
    server_pods = find(objects, "Deployment", "shoal")["spec"]["template"]["metadata"]["labels"]
    assert all(server_pods.get(k) == v for k, v in headless["spec"]["selector"].items())

    # timeouts: Shoal answers its own deadline first; the soft stop fits the grace period
    server = find(objects, "Deployment", "shoal")["spec"]["template"]["spec"]["containers"][0]
    server_env = {e["name"]: e.get("value") for e in server["env"]}
    default_deadline = cli.build_parser().parse_args(["serve"]).deadline_seconds
    deadline = float(server_env.get("SHOAL_DEADLINE_SECONDS") or default_deadline)
    timeouts = {t[0]: _seconds(t[1]) for t in _directive(shipped_config, "timeout")}
    assert timeouts["server"] > deadline
    assert timeouts["client"] > timeouts["server"]
    (hard_stop,) = _directive(shipped_config, "hard-stop-after")
    assert _seconds(hard_stop[0]) > timeouts["server"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > container["lifecycle"]["preStop"]["sleep"]["seconds"] + _seconds(hard_stop[0])

    (threads,) = _directive(shipped_config, "nbthread")
    assert int(threads[0]) == int(container["resources"]["limits"]["cpu"])
    # buffer memory (maxconn x 2 buffers) fits under the memory limit
    (maxconn,) = _directive(shipped_config, "maxconn")
    (bufsize,) = _directive(shipped_config, "tune.bufsize")
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(maxconn[0]) * 2 * int(bufsize[0]) < int(limit[:-2]) * 2**20

    # the exporter is on the port the ServiceMonitor scrapes
    monitor = find(objects, "ServiceMonitor", "shoal-router")
    service = find(objects, "Service", "shoal-router")
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["targetPort"] == "stats" and endpoint["path"] == "/metrics"
    assert "http-request use-service prometheus-exporter if { path /metrics }" in shipped_config
    pdb = find(objects, "PodDisruptionBudget", "shoal-router")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= router["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["minAvailable"] < router["spec"]["replicas"]


def test_the_router_network_policy(shipped_config):
    """Clients reach the router's HTTP port, Prometheus its stats port; the router reaches
    the Shoal pods and DNS, nothing else."""
    objects = kustomize(K8S / "overlays" / "cpu")
    policy = find(objects, "NetworkPolicy", "shoal-router")["spec"]
    labels = find(objects, "Deployment", "shoal-router")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress = {rule["ports"][0]["port"]: rule["from"] for rule in policy["ingress"]}
    assert ingress["http"] == [{"namespaceSelector": {"matchLabels": {"shoal.ai/client": "true"}}}]
    assert ingress["stats"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    server = find(objects, "Deployment", "shoal")
    to_shoal, to_dns = policy["egress"]
    assert to_shoal["to"][0]["podSelector"]["matchLabels"].items() <= \
        server["spec"]["template"]["metadata"]["labels"].items()
    assert [p["port"] for p in to_shoal["ports"]] == [8080]
    assert {p["port"] for p in to_dns["ports"]} == {53}


# --- a fleet on loopback -----------------------------------------------------------------

class Replica:
    def __init__(self, index: int, catalog: Path, log_dir: Path):
        self.index = index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"replica{index}.log"
        env = dict(os.environ, HF_HUB_OFFLINE="1", SHOAL_DRAIN_SECONDS="5")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--catalog", str(catalog), "--device", "cpu", "--dtype", "float32"],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.index} exited:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"replica {self.index} not ready:\n{self.log.read_text()[-4000:]}")


class Router:
    """haproxy -db on the rendered config; `url`, `stats`, and the server states from its
    own Prometheus exporter."""

    def __init__(self, config: str, servers: list[int], folder: Path):
        self.port, self.stats_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stats = f"http://127.0.0.1:{self.stats_port}"
        self.path = folder / f"haproxy-{self.port}.cfg"
        self.path.write_text(render(config, servers, self.port, self.stats_port))
        check_config(self.path)
        self.log = folder / f"haproxy-{self.port}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([haproxy(), "-db", "-f", str(self.path)], stdout=out,
                                            stderr=subprocess.STDOUT)
        self.servers = len(servers)

    def metrics(self) -> str:
        return httpx.get(self.stats + "/metrics", timeout=5).text

    def up(self) -> set[str]:
        """Servers of backend shoal whose state is UP."""
        pattern = re.compile(r'^haproxy_server_status\{proxy="shoal",server="(\w+)",state="UP"\} 1$', re.M)
        return set(pattern.findall(self.metrics()))

    def counter(self, name: str) -> float:
        match = re.search(rf'^{name}\{{proxy="shoal"\}} (\S+)$', self.metrics(), re.M)
        return float(match[1]) if match else 0.0

    def wait_up(self, expected: set[str], seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{self.log.read_text()[-4000:]}")
            try:
                if self.up() == expected:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"servers up: {self.up()}, expected {expected}\n{self.log.read_text()[-2000:]}")

    def close(self) -> None:
        stop(self.process)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, minilm_spec):
    """Four replicas with the same catalog (24 tiny models + MiniLM as `hot`), and the
    sentence-transformers folder of each model."""
    from tests.tiny import tiny_bert, write_sentence_transformers_config

    haproxy()  # skip (or fail under CI) before building anything when haproxy is missing
    root = tmp_path_factory.mktemp("fleet")
    weights = []
    for seed in range(SEEDS):
        folder = tiny_bert(root / f"tiny{seed}", seed=seed)
        write_sentence_transformers_config(folder)
        weights.append(folder)
    folders = {name: weights[i % SEEDS] for i, name in enumerate(MODELS)} | {HOT: minilm_spec.path}
    catalog = root / "catalog.toml"
    catalog.write_text("".join(f'[models.{name}]\npath = "{folder}"\n\n' for name, folder in folders.items()))
    replicas: list[Replica] = []
    try:
        for index in range(1, 5):
            replicas.append(Replica(index, catalog, root))
        deadline = time.monotonic() + 240
        for replica in replicas:
            replica.wait_ready(deadline)
        yield {"replicas": replicas, "folders": folders, "root": root}
    finally:
        for replica in replicas:
            stop(replica.process)


@pytest.fixture(scope="module")
def router3(fleet, shipped_config):
    router = Router(shipped_config, [r.port for r in fleet["replicas"][:3]], fleet["root"])
    try:
        router.wait_up({"shoal1", "shoal2", "shoal3"})
        yield router
    finally:
        router.close()


@pytest.fixture(scope="module")
def router4(fleet, shipped_config):
    router = Router(shipped_config, [r.port for r in fleet["replicas"]], fleet["root"])
    try:
        router.wait_up({"shoal1", "shoal2", "shoal3", "shoal4"})
        yield router
    finally:
        router.close()


@pytest.fixture(scope="module")
def expected(fleet):
    """name -> sentence-transformers embeddings of TEXTS (HOT_TEXTS for the hot model)."""
    out = {name: references.dense(folder, TEXTS) for name, folder in fleet["folders"].items() if name != HOT}
    return out | {HOT: references.dense(fleet["folders"][HOT], HOT_TEXTS)}


class ReplicaHeaders(httpx.BaseTransport):
    """A real HTTP transport that records (X-Shoal-Model sent, X-Shoal-Replica received)."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.seen: list[tuple[str | None, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.seen.append((request.headers.get("x-shoal-model"), response.headers.get("x-shoal-replica")))
        return response

    def close(self) -> None:
        self.inner.close()


def owners(router: Router, models: list[str]) -> dict[str, str]:
    """model -> the replica that answers a header-routed request for it."""
    out = {}
    with httpx.Client(base_url=router.url, timeout=60) as http:
        for model in models:
            response = http.post("/v1/encode", json={"model": model, "inputs": TEXTS[:1]},
                                 headers={"x-shoal-model": model})
            assert response.status_code == 200, response.text
            out[model] = response.headers["x-shoal-replica"]
    return out


@pytest.fixture(scope="module")
def ring3(router3):
    return owners(router3, MODELS)


def replica_models(replicas: list[Replica], metric: str) -> dict[str, set[str]]:
    """model -> names (shoalN) of the replicas whose /metrics count `metric` > 0 for it."""
    out: dict[str, set[str]] = collections.defaultdict(set)
    sample = re.compile(rf'^{metric}\{{([^}}]*)\}} (\S+)$', re.M)
    for replica in replicas:
        for labels, value in sample.findall(httpx.get(replica.url + "/metrics", timeout=10).text):
            model = re.search(r'model="([^"]*)"', labels)
            if model and float(value) > 0:
                out[model[1]].add(f"shoal{replica.index}")
    return dict(out)


def test_every_request_for_a_model_lands_on_one_replica(fleet, router3, ring3, expected):
    """Seven requests per model, by four routes and three kinds of key, all on the model's
    owner, each equal to sentence-transformers."""
    import openai

    from connectors import ShoalClient

    placed: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    transport = ReplicaHeaders()
    sent_headers: list[httpx.Headers] = []
    sdk_http = httpx.Client(timeout=60, event_hooks={"request": [lambda r: sent_headers.append(r.headers)]})
    sdk = openai.OpenAI(base_url=router3.url + "/v1", api_key="unused", max_retries=0, http_client=sdk_http)
    started = time.monotonic()
    with ShoalClient(router3.url, transport=transport, msgpack=True, retries=0) as shoal, \
            httpx.Client(base_url=router3.url, timeout=60) as http:
        for model in MODELS:
            want = expected[model]
            for _ in range(2):  # header (the client sends it; the body is msgpack)
                references.assert_vectors_close(shoal.embed(TEXTS, model=model), want)
                placed[model].append(("header", transport.seen[-1][1]))
                assert transport.seen[-1][0] == model
            for _ in range(2):  # JSON body, no header
                response = http.post("/v1/encode", json={"model": model, "inputs": TEXTS})
                references.assert_vectors_close(response.json()["embeddings"], want)
                placed[model].append(("body", response.headers["x-shoal-replica"]))
            response = http.post(f"/tei/{model}/embed", json={"inputs": TEXTS})
            references.assert_vectors_close(response.json(), want)
            placed[model].append(("tei path", response.headers["x-shoal-replica"]))
            response = http.post(f"/weaviate/{model}/vectors", json={"text": TEXTS[0]})
            references.assert_vectors_close([response.json()["vector"]], want[:1])
            placed[model].append(("weaviate path", response.headers["x-shoal-replica"]))
            raw = sdk.embeddings.with_raw_response.create(model=model, input=TEXTS)
            references.assert_vectors_close([d.embedding for d in raw.parse().data], want)
            placed[model].append(("openai sdk body", raw.headers["x-shoal-replica"]))
    sdk_http.close()
    assert sent_headers and not any("x-shoal-model" in h for h in sent_headers), "the SDK routes by body alone"
    requests = sum(len(v) for v in placed.values())
    for model, where in placed.items():
        assert {replica for _, replica in where} == {ring3[model]}, f"{model}: {where}"
    spread = collections.Counter(ring3.values())
    log(f"affinity: {requests} requests for {len(MODELS)} models, each model on one replica by header, "
        f"path and body; models per replica {dict(sorted(spread.items()))}; {time.monotonic() - started:.1f}s")
    assert set(spread) == {"shoal1", "shoal2", "shoal3"} and min(spread.values()) >= 3

    # The replicas' own counts agree: each model was requested and loaded on its owner alone.
    for metric in ("shoal_requests_total", "shoal_model_loads_total"):
        seen = replica_models(fleet["replicas"][:3], metric)
        assert {m: seen.get(m) for m in MODELS} == {m: {ring3[m]} for m in MODELS}, metric

    # Without the header a msgpack body has no key: it goes round-robin (hence the header).
    body = msgspec.msgpack.encode({"model": MODELS[0], "inputs": TEXTS})
    with httpx.Client(base_url=router3.url, timeout=60) as http:
        anywhere = {http.post("/v1/encode", content=body, headers={"content-type": "application/msgpack"})
                    .headers["x-shoal-replica"] for _ in range(6)}
    assert len(anywhere) > 1


def _burst(url: str, clients: int, rounds: int) -> list[tuple[int, str, object]]:
    """`clients` threads each sending `rounds` header-routed requests for HOT at once."""
    results: list[tuple[int, str, object]] = []
    barrier = threading.Barrier(clients)

    def client():
        with httpx.Client(base_url=url, timeout=120) as http:
            barrier.wait(timeout=30)
            for _ in range(rounds):
                r = http.post("/v1/encode", json={"model": HOT, "inputs": HOT_TEXTS}, headers={"x-shoal-model": HOT})
                results.append((r.status_code, r.headers.get("x-shoal-replica"), r.json()))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a burst client hung"
    return results


def test_a_hot_model_spills_under_concurrent_load(router3, expected):
    (owner,) = set(owners(router3, [HOT] * 4).values())
    results = _burst(router3.url, clients=12, rounds=2)
    assert len(results) == 24 and all(status == 200 for status, _, _ in results)
    for _, _, body in results:
        references.assert_vectors_close(body["embeddings"], expected[HOT])
    by_replica = collections.Counter(replica for _, replica, _ in results)
    log(f"bounded load: 12 concurrent clients x 2 requests for `{HOT}` (owner {owner}): "
        f"{dict(sorted(by_replica.items()))}")
    assert len(by_replica) >= 2, "the hot model never spilled"
    assert owner in by_replica
    # the load gone, the model is back on its owner alone
    assert set(owners(router3, [HOT] * 4).values()) == {owner}


def test_a_fourth_replica_moves_about_a_quarter_of_the_models(ring3, router4, expected):
    ring4 = owners(router4, MODELS)
    moved = {m: (ring3[m], ring4[m]) for m in MODELS if ring3[m] != ring4[m]}
    log(f"join: a fourth replica took {len(moved)}/{len(MODELS)} models ({len(moved) / len(MODELS):.0%}); "
        f"moved {sorted(moved)}")
    assert {new for _, new in moved.values()} <= {"shoal4"}, f"models moved between old replicas: {moved}"
    assert 0.1 <= len(moved) / len(MODELS) <= 0.45
    with httpx.Client(base_url=router4.url, timeout=60) as http:
        for model in moved:
            response = http.post(f"/tei/{model}/embed", json={"inputs": TEXTS})
            assert response.headers["x-shoal-replica"] == "shoal4"
            references.assert_vectors_close(response.json(), expected[model])


def test_killing_a_replica_loses_only_requests_in_flight_on_it(fleet, router4, expected):
    """Four clients cycle through the models (header and body keys) while the replica that
    owns the most of them gets SIGKILL. Requests sent after the kill must all succeed, on
    the next replica of each model's ring; only requests in flight on the victim at the
    kill may fail (HAProxy retries those that got no answer, so usually none do)."""
    ring4 = owners(router4, MODELS)
    victim_name = collections.Counter(ring4.values()).most_common(1)[0][0]
    victim = fleet["replicas"][int(victim_name.removeprefix("shoal")) - 1]
    records: list[dict] = []
    stop_at = time.monotonic() + 8
    kill_at: list[float] = []

    def client(offset: int):
        with httpx.Client(base_url=router4.url, timeout=60) as http:
            i = offset
            while time.monotonic() < stop_at:
                model = MODELS[i % len(MODELS)]
                record = {"model": model, "start": time.monotonic()}
                try:
                    headers = {"x-shoal-model": model} if i % 2 else {}
                    response = http.post("/v1/encode", json={"model": model, "inputs": TEXTS}, headers=headers)
                    record |= {"status": response.status_code, "replica": response.headers.get("x-shoal-replica"),
                               "body": response.json() if response.status_code == 200 else response.text}
                except httpx.HTTPError as error:
                    record |= {"status": None, "error": repr(error)}
                record["end"] = time.monotonic()
                records.append(record)
                i += 1

    threads = [threading.Thread(target=client, args=(k * 6,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    kill_at.append(time.monotonic())
    victim.process.send_signal(signal.SIGKILL)
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    (killed,) = kill_at

    in_flight = [r for r in records if r["start"] < killed < r["end"]]
    after = [r for r in records if r["start"] >= killed]
    failed = [r for r in records if r["status"] != 200]
    owned = [r for r in after if ring4[r["model"]] == victim_name]
    log(f"kill: {len(records)} requests, {len(in_flight)} in flight at the SIGKILL of {victim_name}, "
        f"{len(after)} sent after it ({len(owned)} for its models), {len(failed)} failed; router retries "
        f"{router4.counter('haproxy_backend_retry_warnings_total'):.0f}, redispatches "
        f"{router4.counter('haproxy_backend_redispatch_warnings_total'):.0f}")
    assert len(after) >= 20 and owned, "too little traffic after the kill to tell"
    assert not [r for r in failed if r["start"] >= killed], [r for r in failed if r["start"] >= killed][:3]
    assert all(r in in_flight for r in failed), failed[:3]
    for r in records:
        if r["status"] == 200:
            references.assert_vectors_close(r["body"]["embeddings"], expected[r["model"]])
    assert all(r["replica"] != victim_name for r in after)
    # the health check has taken it out of the ring
    router4.wait_up({"shoal1", "shoal2", "shoal3", "shoal4"} - {victim_name}, seconds=15)


def test_no_replica_up_answers_503_json_with_retry_after(fleet, router4):
    from connectors import ShoalClient, ShoalError

    for replica in fleet["replicas"]:
        stop(replica.process)
    deadline = time.monotonic() + 30
    while router4.up() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert router4.up() == set()
    for path, body in (("/v1/encode", {"model": MODELS[0], "inputs": TEXTS}), ("/tei/m01/embed", {"inputs": TEXTS})):
        response = httpx.post(router4.url + path, json=body, timeout=10)
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/json")
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["error"]["type"] == "no_replica"
    with ShoalClient(router4.url, model=MODELS[0], retries=0) as shoal, pytest.raises(ShoalError) as caught:
        shoal.embed(TEXTS)
    assert (caught.value.status, caught.value.kind) == (503, "no_replica")


def test_the_router_answers_json_even_before_its_checks_notice(tmp_path, shipped_config):
    """Servers that refuse connections, before any health check has failed: the router
    retries, then answers with its own JSON 503 (http-error), never an HTML page."""
    router = Router(shipped_config, [free_port(), free_port()], tmp_path)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                response = httpx.post(router.url + "/v1/encode", json={"model": "m00", "inputs": ["x"]}, timeout=30)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["error"]["type"] == "no_replica"
    finally:
        router.close()
