"""Ray launcher: the same idempotent (preset, fold) jobs as ``--jobs N``, on a Ray cluster.

Each job is a Ray task with its own CPU (and GPU) reservation and automatic retries: a worker
that dies mid-job is restarted by Ray, and the job resumes from its last checkpoint because
its run folder already holds one. Results land in the same run folders as local runs, so the
summary and the report do not care where a job ran. Run folders must be on storage every node
can reach (a shared file system) when the cluster has several machines.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from .config import Config
from .errors import SoundformerError

RETRIES = 3


def run_on_ray(fn: Callable, args: list[tuple], cfg: Config, *, address: str | None = None,
               log: Callable[[str], None] = print) -> list:
    try:
        import ray
    except ImportError:
        raise SoundformerError("--launcher ray needs Ray: pip install 'soundformer[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False, logging_level="ERROR")
    cpus = cfg.train.threads or 1
    gpus = 1 if cfg.train.device == "cuda" else 0
    job_cfg = copy.deepcopy(cfg)
    job_cfg.train.threads = cpus  # threads per job = its CPU reservation: jobs x threads <= cores
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)(fn)
    refs = [remote.remote((job_cfg,) + tuple(a[1:4]) + (False, 1)) for a in args]
    log(f"ray: {len(refs)} job(s) submitted ({cpus} CPU{'s' if cpus > 1 else ''}"
        f"{', 1 GPU' if gpus else ''} each, up to {RETRIES} retries)")
    results = []
    for ref, a in zip(refs, args):
        try:
            results.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - a task that failed after its retries
            results.append((a[2].name, None, f"ray task failed after {RETRIES} retries: {str(exc)[:300]}"))
    return results
