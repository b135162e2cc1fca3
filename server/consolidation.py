"""Consolidation jobs: replay a tenant's memories into a LoRA in the background, then serve it from vLLM.

A job runs one :class:`~hei_nw_plugin.consolidate.ConsolidationWorker` step over
the tenant's user namespaces (the served adapter is per tenant, so it learns
from every user of that tenant and from no other tenant). Versions live in
``<data_dir>/consolidated/<tenant>/``. Jobs run one at a time in a worker
thread; when a version is accepted it is loaded into vLLM under a
version-specific name and B2/B3 requests of the tenant go to it. Job records
are kept in memory (the versions themselves, with their lineage, are on disk
and in the provenance log), and the active version of every tenant is loaded
again at start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hei_nw_plugin.memory import HEIMemory
from server.adapters import ConsolidatedAdapters

log = logging.getLogger("hei_nw.server.consolidation")

JobStatus = Literal["queued", "running", "accepted", "rejected", "interrupted", "empty", "failed"]


@dataclass
class Job:
    id: str
    tenant: str
    namespaces: list[str]
    status: JobStatus = "queued"
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    version: str | None = None
    served_as: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


class ConsolidationJobs:
    """Runs and remembers consolidation jobs; ``model`` is the base model's settings or a (model, tokenizer) factory."""

    def __init__(self, memory: HEIMemory, adapters: ConsolidatedAdapters, *, root: Path, model: Any) -> None:
        self.memory = memory
        self.adapters = adapters
        self.root = root
        self.model = model
        self.jobs: dict[str, Job] = {}
        self._one_at_a_time = threading.Lock()

    def folder(self, tenant: str) -> Path:
        return self.root / tenant

    def get(self, tenant: str, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.tenant == tenant else None  # another tenant's job does not exist

    def submit(self, tenant: str, namespaces: list[str], config: dict[str, Any], *, fresh: bool,
               register: bool) -> tuple[Job, asyncio.Task[None]]:
        job = Job(id=f"cons_{uuid.uuid4().hex[:16]}", tenant=tenant, namespaces=namespaces)
        self.jobs[job.id] = job
        task = asyncio.create_task(self._run(job, config, fresh=fresh, register=register))
        return job, task

    async def _run(self, job: Job, config: dict[str, Any], *, fresh: bool, register: bool) -> None:
        try:
            result = await asyncio.to_thread(self._train, job, config, fresh)
            if result.status == "accepted" and result.folder is not None and register:
                job.served_as = await self.adapters.aregister(job.tenant, result.folder, version=result.version)
            job.result = result.to_dict()
            job.version = result.version
            job.status = result.status  # last: a client that sees the final status sees the served adapter too
        except Exception as err:  # the job reports it; the server keeps serving
            log.exception("consolidation job %s failed", job.id)
            job.status, job.error = "failed", f"{type(err).__name__}: {err}"
        finally:
            job.finished_at = time.time()

    def _train(self, job: Job, config: dict[str, Any], fresh: bool) -> Any:
        from hei_nw_plugin.consolidate import ConsolidationConfig, ConsolidationWorker

        with self._one_at_a_time:
            job.status = "running"
            worker = ConsolidationWorker(self.memory, self.model, out_dir=self.folder(job.tenant),
                                         namespaces=job.namespaces, config=ConsolidationConfig(**config), progress=False)
            return worker.step(fresh=fresh)

    def active_versions(self) -> dict[str, tuple[str, Path]]:
        """tenant -> (version, folder) of every tenant with an active consolidated version on disk."""
        out: dict[str, tuple[str, Path]] = {}
        if not self.root.is_dir():
            return out
        for state in self.root.glob("*/state.json"):
            active = json.loads(state.read_text()).get("active")
            if active:
                out[state.parent.name] = (active, state.parent / active)
        return out
