"""Real peers for the benchmark: BentoML and Seldon MLServer, each in a locked environment of
its own, serving the committed SavedModels.

They do not share the project's environment (MLServer pins FastAPI 0.115 and Starlette 0.46;
the service runs FastAPI 0.165), and a peer's release must not move the service's lock, so each
has a requirements file (`<peer>.in`) and a lock made from it for Python 3.11 on Linux
(`<peer>.lock`), installed by `python -m bench.peers install` into `.bench-envs/<peer>` (ignored
by git). Refresh a lock with `uv pip compile bench/peers/<peer>.in --python-version 3.11
--python-platform linux -o bench/peers/<peer>.lock`.

`python -m bench.compare` starts them on loopback ports with this repository on PYTHONPATH, so
their code reads the model cards and preprocesses images with the service's own
`app.artifact` (the same work per request).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.cards import newest_versions
from bench.servers import HOST, ROOT, free_port

PEERS_DIR = Path(__file__).resolve().parent
ENVS_DIR = ROOT / ".bench-envs"


@dataclass(frozen=True)
class Peer:
    name: str
    description: str  # how it is configured, for the report

    @property
    def env_dir(self) -> Path:
        return ENVS_DIR / self.name

    @property
    def lock(self) -> Path:
        return PEERS_DIR / f"{self.name}.lock"

    def installed(self) -> bool:
        return (self.env_dir / "bin" / self.name).exists()

    def command(self, port: int, workers: int, work_dir: Path, model_dir: Path) -> list[str]:
        """The command line that serves iris and mnist on `port`."""
        binary = str(self.env_dir / "bin" / self.name)
        if self.name == "bentoml":
            return [binary, "serve", "bench.peers.bentoml_service:Peer", "--host", HOST,
                    "--port", str(port)]  # fmt: skip
        return [binary, "start", str(mlserver_settings(work_dir, port, workers, model_dir))]

    def env(self, workers: int, model_dir: Path) -> dict[str, str]:
        return {
            "PYTHONPATH": str(ROOT),
            "GLASSBOX_MODEL_DIR": str(model_dir),
            "BENCH_PEER_WORKERS": str(workers),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }


BATCH = {"max_batch_size": 64, "max_batch_time_s": 0.002}  # as the service's defaults
PEERS = {
    "bentoml": Peer(
        "bentoml",
        "BentoML 1.4.40: one @bentoml.service over tf.saved_model.load, batchable APIs "
        "(adaptive batching, max_batch_size 64, its default max_latency_ms of 60 s), "
        "`workers` as the run's; iris as its native ndarray body, mnist as a multipart upload",
    ),
    "mlserver": Peer(
        "mlserver",
        "Seldon MLServer 1.7.1: a custom MLModel runtime over tf.saved_model.load, adaptive "
        "batching on (max_batch_size 64, max_batch_time 2 ms), `parallel_workers` as the run's "
        "workers; iris as Open Inference v2 JSON, mnist as a base64 BYTES input",
    ),
}


def mlserver_settings(work_dir: Path, port: int, workers: int, model_dir: Path) -> Path:
    """MLServer's settings folder: the server's ports and one model-settings.json per model."""
    folder = work_dir / f"mlserver-{port}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": HOST,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": workers,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    for name, path in newest_versions(model_dir, ["iris", "mnist"]).items():
        (folder / name).mkdir(exist_ok=True)
        model = {
            "name": name,
            "implementation": "bench.peers.mlserver_runtime.SavedModelRuntime",
            "parameters": {"uri": str(path)},
            "max_batch_size": BATCH["max_batch_size"],
            "max_batch_time": BATCH["max_batch_time_s"],
        }
        (folder / name / "model-settings.json").write_text(json.dumps(model))
    return folder


def install(names: list[str]) -> int:
    """A virtual environment per peer, from its lock (uv when it is installed: much faster)."""
    for name in names:
        peer = PEERS[name]
        sys.stderr.write(f"{name}: installing {peer.lock.name} into {peer.env_dir}\n")
        subprocess.run([sys.executable, "-m", "venv", str(peer.env_dir)], check=True)
        python = str(peer.env_dir / "bin" / "python")
        if shutil.which("uv"):
            command = ["uv", "pip", "install", "--python", python, "-r", str(peer.lock)]
        else:
            command = [python, "-m", "pip", "install", "-r", str(peer.lock)]
        subprocess.run(command, check=True)
    return 0
