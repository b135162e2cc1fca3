"""Consolidated LoRA adapters per tenant, served by vLLM for modes B2 and B3.

Consolidation turns a tenant's replayed episodes into LoRA weights; once a
folder exists it is loaded into the running vLLM under a name only this server
knows (``hei-consolidated-<tenant>``) and requests in B2/B3 are sent to it.
Tenants cannot name adapters themselves, so one tenant's consolidated weights
(which encode its memories) never answer another tenant.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx

from server.vllm_process import BackendUnavailableError, VllmProcess

log = logging.getLogger("hei_nw.server.adapters")


class AdapterMissingError(Exception):
    """Mode B2/B3 was asked for a tenant that has no consolidated adapter."""


class ConsolidatedAdapters:
    """tenant -> vLLM LoRA name."""

    def __init__(self, vllm: VllmProcess) -> None:
        self.vllm = vllm
        self._by_tenant: dict[str, str] = {}

    @staticmethod
    def name_for(tenant: str) -> str:
        return f"hei-consolidated-{tenant}"

    def register(self, tenant: str, folder: Path, *, version: str | None = None) -> str:
        """Load ``folder`` (a peft LoRA) into vLLM for ``tenant``; returns the adapter's model name.

        A consolidation ``version`` gets its own name (vLLM keeps a loaded name's
        weights), and the tenant's previous version is unloaded once the new one serves.
        """
        name = self.name_for(tenant) + (f"-{version}" if version else "")
        self.vllm.load_lora(name, folder)
        old = self._by_tenant.get(tenant)
        self._by_tenant[tenant] = name
        if old is not None and old != name:
            try:
                self.vllm.unload_lora(old)
            except (BackendUnavailableError, httpx.HTTPError) as err:  # the new version already serves; a stale name only costs memory
                log.warning("could not unload LoRA %s: %s", old, err)
        return name

    async def aregister(self, tenant: str, folder: Path, *, version: str | None = None) -> str:
        return await asyncio.to_thread(self.register, tenant, folder, version=version)

    def for_tenant(self, tenant: str) -> str:
        """The adapter's model name; AdapterMissingError when the tenant has none."""
        try:
            return self._by_tenant[tenant]
        except KeyError:
            raise AdapterMissingError(
                "modes B2 and B3 answer with consolidated LoRA weights, and this tenant has none yet: "
                "consolidation has not produced an adapter (use B0 or B1)") from None

    def names(self) -> set[str]:
        return set(self._by_tenant.values())
