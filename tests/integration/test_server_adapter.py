"""The Episodic Adapter inside real vLLM: memory route ``adapter`` against the in-process adapter.

One ``hei-nw serve`` starts vLLM with ``vllm.episodic_adapter = true``: the model registered by the
``vllm.general_plugins`` entry point (server/vllm_plugin) on vLLM's encoder-decoder path, with the
shipped adapter weights. The reference is ``hei_nw_plugin.adapter.AdapterHook`` on transformers
with the same weights, memory text and chat: greedy answers must be the same token for token, for
requests with memory and without, also when they share vLLM's batch. How well the adapter answers
is measured by the eval (README, "Answers with memory"); this test checks that vLLM runs *this* adapter
per request. Needs ``.venv-vllm`` with this project installed (``make install``); skips without it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
torch = pytest.importorskip("torch")

from server.launch import ServerProcess
from tests.integration.test_server_vllm import MODEL, client
from tests.integration.vllm_servers import served

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow]

KEY = "hei_it-adapter-" + uuid.uuid4().hex
FACTS = {"nadia": ("Nadia keeps the spare key in the attic drawer.", "Where does Nadia keep the spare key?"),
         "tobias": ("Tobias parked the red bicycle behind the bakery.", "Where did Tobias park the red bicycle?")}
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA of the consolidation's shape whose B matrices are non-zero (seeded), so that it changes answers:
    tenant acme's B2/B3 adapter."""
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from hei_nw_plugin.consolidation_config import ConsolidationConfig
    from hei_nw_plugin.consolidation_train import _wrap
    from server.vllm_process import EMBEDDED, resolve_model_folder

    base = AutoModelForCausalLM.from_pretrained(resolve_model_folder(EMBEDDED))
    model = _wrap(base, ConsolidationConfig(), None)  # the shape a consolidation ships: its layers and projections
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.06)
    folder = tmp_path_factory.mktemp("acme-lora")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lora: Path) -> Iterator[ServerProcess]:
    with served(tmp_path_factory, "adapter", KEY, MODEL, vllm={"episodic_adapter": True, "enable_lora": True},
                memory={"route": "adapter", "write_user_turns": False, "consolidated_adapters": {"acme": str(lora)}}) as s:
        yield s


@pytest.fixture(scope="module")
def memory_texts(server: ServerProcess) -> dict[str, str]:
    """Each user's fact, written through the memory API; the packed memory a chat turn recalls."""
    out = {}
    for user, (fact, question) in FACTS.items():
        h = {"Authorization": f"Bearer {KEY}", "X-HEI-User": user}
        assert httpx.post(f"{server.base_url}/v1/memory/write", headers=h, json={"event": {"text": fact, "pin": True}}).status_code == 200
        rec = httpx.post(f"{server.base_url}/v1/memory/recall", headers=h, json={"cue": question, "k": 3}).json()
        out[user] = rec["memory_tokens"]["text"]
        assert fact in out[user]
    return out


@pytest.fixture(scope="module")
def reference() -> Any:
    """Greedy answers of transformers + AdapterHook with the shipped weights, on the prompt the server builds.

    ``reference(None)`` answers with the base weights, ``reference(folder)`` with that peft LoRA on the decoder.
    """
    from hei_nw_plugin.adapter import AdapterHook, EpisodicAdapter
    from hei_nw_plugin.model.loading import load_base_model
    from hei_nw_plugin.model.prompting import ADAPTER_MEMORY
    from server.prefix import with_memory
    from server.vllm_plugin import SHIPPED_ADAPTER

    adapter, _ = EpisodicAdapter.load(SHIPPED_ADAPTER)

    def answerer(lora_folder: Path | None) -> Any:
        lm = load_base_model()
        if lora_folder is not None:  # B2/B3: the tenant's consolidated LoRA (memory is still encoded with base weights)
            from peft import PeftModel

            lm.model = PeftModel.from_pretrained(lm.model, str(lora_folder))
        hook = AdapterHook(lm.model, adapter)
        tok = lm.tokenizer

        def answer(question: str, memory_text: str) -> str:
            msgs = with_memory([{"role": "user", "content": question}], ADAPTER_MEMORY if memory_text else "")
            enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            state = hook.encode_memory(tok, [memory_text]) if memory_text else None
            with hook.memory(state), torch.inference_mode():
                out = lm.model.generate(**enc, max_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id)
            return str(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))

        return answer

    return answerer


def _ask(url: str, user: str, question: str, **extra: Any) -> Any:
    return client(url, KEY).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}], user=user,
                                                    max_tokens=MAX_TOKENS, temperature=0, **extra)


def test_vllm_runs_the_episodic_adapter_per_request(server: ServerProcess, memory_texts: dict[str, str], reference: Any) -> None:
    url = server.base_url + "/v1"
    base = reference(None)
    jobs = [(u, q, {}) for u, (_, q) in FACTS.items()] + [("nadia", FACTS["nadia"][1], {"extra_body": {"hei_mode": "B0"}})]
    with ThreadPoolExecutor(len(jobs)) as pool:  # memory A, memory B and none in vLLM's batch at once
        replies = list(pool.map(lambda j: _ask(url, j[0], j[1], **j[2]), jobs))
    for (user, question, extra), r in zip(jobs, replies, strict=True):
        hei = r.model_extra["hei"]
        memory = "" if extra else memory_texts[user]
        assert hei["route"] == "adapter" and bool(hei["recalled"]) == bool(memory)
        assert r.choices[0].message.content == base(question, memory), (user, extra)
    # The adapter changed the answer: it did read memory (a no-op block would give the base answer).
    assert replies[0].choices[0].message.content != replies[2].choices[0].message.content


def test_adapter_route_streams_and_refuses_what_vllm_cannot_do(server: ServerProcess, memory_texts: dict[str, str]) -> None:
    url = server.base_url + "/v1"
    plain = _ask(url, "tobias", FACTS["tobias"][1]).choices[0].message.content
    stream = client(url, KEY).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FACTS["tobias"][1]}],
                                                      user="tobias", max_tokens=MAX_TOKENS, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == plain
    with pytest.raises(openai.BadRequestError):  # completions carry no per-request memory
        client(url, KEY).completions.create(model=MODEL, prompt="Where is the key?", user="nadia", max_tokens=4)
    with pytest.raises(openai.BadRequestError):  # vLLM refuses prompt embeddings for encoder-decoder models
        _ask(url, "nadia", FACTS["nadia"][1], extra_body={"hei_route": "embeds"})


def test_b2_runs_the_tenants_lora_and_the_adapter_together(server: ServerProcess, memory_texts: dict[str, str],
                                                          reference: Any, lora: Path) -> None:
    """B2 on the adapter route: vLLM applies the consolidated LoRA to the adapter model and the adapter reads memory."""
    url = server.base_url + "/v1"
    question = FACTS["nadia"][1]
    b1 = _ask(url, "nadia", question)
    b2 = _ask(url, "nadia", question, extra_body={"hei_mode": "B2"})
    b3 = _ask(url, "nadia", question, extra_body={"hei_mode": "B3"})
    assert b2.model == b3.model == "hei-consolidated-acme"
    assert b2.model_extra["hei"]["recalled"] and not b3.model_extra["hei"]["recalled"]
    with_lora, base = reference(lora), reference(None)
    answers = (b2.choices[0].message.content, b3.choices[0].message.content)
    assert answers == (with_lora(question, memory_texts["nadia"]), with_lora(question, ""))
    assert b1.choices[0].message.content == base(question, memory_texts["nadia"])
    assert answers != (base(question, memory_texts["nadia"]), base(question, ""))  # the LoRA did change an answer
