"""Suite (b): the ``hei-nw`` command line, run in-process through ``main(argv)`` on generated argv.

argv is built from the CLI's grammar (the engine's commands, their options, settings files and store
URLs) with arbitrary tokens in every slot, plus unknown commands and stray arguments. The property:
exit status 0, or 2 with exactly one error line (argparse may print its usage above it), never a
traceback; status 1 (a runtime fault) only when the case pointed ``--store-url`` somewhere; a command
that exits non-zero changes no stored byte. Every case runs against a data folder under a temporary
directory, which is also the working directory while the suite runs, so no case can touch the
caller's files. The embedder is the hashing one (loading MiniLM per command would cost seconds each
and is not what is under test).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import strategies as st

from hei_nw_eval.reliability.fuzz.common import SuiteResult, Tally, changed_tables, drive, snapshot, texts
from hei_nw_plugin import memory as memory_module
from hei_nw_plugin.cli import build_parser, main
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder

COMMANDS = ["write", "write", "recall", "recall", "delete", "pin", "verify", "stats", "evict", "rotate-keys"]
CONFIG_BODIES = ["[limits]\nmax_k = {n}\n", "[limits]\nmax_text_chars = {n}\n", "[gate]\ntau = \"{t}\"\n",
                 "[bogus]\na = 1\n", "{t}", "[store]\npool_size = {n}\n", "decay:\n  ttl_s: {n}\n", "[pack]\nmax_mem_tokens = {n}\n"]
CONFIG_SUFFIXES = [".toml", ".yaml", ".yml", ".json", ""]
STORE_URLS = ["", "abc", "mysql://u@h/db", "postgresql+psycopg://nobody@127.0.0.1:1/x", "sqlite:///alt/other.db",
              "sqlite:////proc/hei-nw-fuzz/x.db", "sqlite://", "sqlite:///:memory:", "sqlite:///\x00.db", "://", "sqlite:///."]


def _known_ids(pool: list[str]) -> st.SearchStrategy[str]:
    return st.integers(0, 2**16).map(lambda i: pool[i % len(pool)] if pool else "trace")


def _argv(data: st.DataObject, data_dir: Path, ids: list[str], reserved: set[str]) -> list[str]:
    argv = ["--data-dir", str(data_dir)]
    if data.draw(st.booleans(), label="namespace?"):
        argv += [data.draw(st.sampled_from(["--namespace", "-n"])), data.draw(st.one_of(st.just("fz"), texts), label="ns")]
    if data.draw(st.integers(0, 5), label="config?") == 0:
        body = data.draw(st.sampled_from(CONFIG_BODIES), label="config body").format(
            n=data.draw(st.integers(-5, 10**6)), t=data.draw(texts).replace("\x00", ""))
        cfg = data_dir.parent / f"settings{data.draw(st.sampled_from(CONFIG_SUFFIXES), label='suffix')}"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(body, encoding="utf-8", errors="surrogatepass")
        argv += ["--config", data.draw(st.sampled_from([str(cfg), str(data_dir.parent / "missing.toml"), str(data_dir)]))]
    if data.draw(st.integers(0, 7), label="store url?") == 0:
        argv += ["--store-url", data.draw(st.one_of(st.sampled_from(STORE_URLS), texts), label="url")]
    choice = data.draw(st.integers(0, 19), label="command kind")
    if choice == 0:
        return argv  # no command
    if choice == 1:
        return argv + [data.draw(texts.filter(lambda t: t not in reserved), label="unknown command")]
    cmd = data.draw(st.sampled_from(COMMANDS), label="command")
    argv.append(cmd)
    positional = {"write": texts, "recall": texts, "delete": st.one_of(_known_ids(ids), texts),
                  "pin": st.one_of(_known_ids(ids), texts)}.get(cmd)
    if positional is not None and data.draw(st.integers(0, 9), label="drop positional?") > 0:
        argv.append(data.draw(positional, label="positional"))
    for flag, values in _options(cmd):
        if data.draw(st.booleans(), label=f"give {flag}"):
            argv += [flag] if values is None else [flag, data.draw(values, label=flag)]
    if data.draw(st.integers(0, 5), label="extras?") == 0:
        argv += data.draw(st.lists(texts, min_size=1, max_size=3), label="extra tokens")
    return argv


def _options(cmd: str) -> list[tuple[str, st.SearchStrategy[str] | None]]:
    slot = st.one_of(st.tuples(texts, texts).map(lambda kv: f"{kv[0]}={kv[1]}"), texts)
    number = st.one_of(st.integers(-5, 400).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str), texts)
    return {
        "write": [("--slot", slot), ("--slot", slot), ("--pin", None), ("--reward", number), ("--key", texts)],
        "recall": [("-k", number), ("--slot", slot), ("--json", None)],
        "pin": [("--unpin", None)],
        "verify": [("--only-namespace", st.one_of(st.just("fz"), texts))],
        "stats": [("--only-namespace", st.one_of(st.just("fz"), texts))],
        "evict": [("--only-namespace", st.one_of(st.just("fz"), texts))],
    }.get(cmd, [])


def _call(argv: list[str]) -> tuple[int, str, str, BaseException | None]:
    """Exit status, stdout, stderr and any exception that escaped ``main`` (a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    escaped: BaseException | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as exit_:
            if isinstance(exit_.code, str):  # what the interpreter would do with sys.exit("message")
                print(exit_.code, file=err)
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Exception as exc:  # noqa: BLE001 - whatever escapes main() is the finding
            escaped, code = exc, 1
    return code, out.getvalue(), err.getvalue(), escaped


def _error_shape(stderr: str) -> str | None:
    """Why ``stderr`` is not one error line (argparse's usage lines above it allowed); None when it is."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "no error message"
    if "Traceback (most recent call last)" in stderr:
        return "traceback on stderr"
    errors = [i for i, ln in enumerate(lines) if "error:" in ln]
    if errors != [len(lines) - 1]:
        return f"{len(errors)} error lines, last line {lines[-1][:80]!r}"
    if len(lines) > 1 and not lines[0].startswith("usage:"):
        return f"{len(lines)} lines, not argparse usage + error"
    return None


def run_cli(examples: int, *, seed: int = 0, per_store: int = 300) -> SuiteResult:
    """Fuzz ``hei-nw`` with ``examples`` generated command lines."""
    tally = Tally("cli")
    t0 = time.perf_counter()
    reserved = set(_subcommands())
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="hei-fuzz-cli-") as tmp, \
            mock.patch.object(memory_module, "embedder_from_settings", lambda *_, **__: HashingEmbedder(dim=64)):
        os.chdir(tmp)
        try:
            state: dict[str, Any] = {"n": 0, "dir": _fresh_store(Path(tmp) / "s0" / "data"), "ids": []}

            def body(data: st.DataObject) -> None:
                data_dir: Path = state["dir"]
                argv = _argv(data, data_dir, state["ids"], reserved)
                before = snapshot(data_dir / "traces.db", data_dir / "keys.json")
                code, out, err, escaped = _call(argv)
                cmd = next((a for a in argv[2:] if a in reserved), "<none>")
                tally.case(f"exit {code}", rejected=code != 0)
                if escaped is not None:
                    tally.fail("traceback", cmd, f"{type(escaped).__name__}: {escaped}", argv)
                elif code not in (0, 1, 2):
                    tally.fail("exit_status", cmd, f"exit status {code}", argv)
                elif code == 1 and "--store-url" not in argv:
                    tally.fail("exit_status", cmd, f"exit 1 (runtime fault) for a caller error: {err.strip()[:200]}", argv)
                elif code != 0 and (why := _error_shape(err)) is not None:
                    tally.fail("error_message", cmd, f"exit {code}: {why}: {err.strip()[-300:]}", argv)
                if code != 0:
                    after = snapshot(data_dir / "traces.db", data_dir / "keys.json")
                    if after != before:
                        tally.fail("changed_on_reject", cmd, f"exit {code} but {changed_tables(before, after)} changed", argv)
                elif cmd == "write" and "--store-url" not in argv:
                    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                        tid = json.loads(out).get("trace_id")
                        if tid:
                            state["ids"].append(tid)
                state["n"] += 1
                if state["n"] % 100 == 0:
                    _verify(data_dir, tally)
                if state["n"] % per_store == 0:
                    state["dir"], state["ids"] = _fresh_store(Path(tmp) / f"s{state['n']}" / "data"), []

            drive(body, st.data(), examples, seed)
            _verify(state["dir"], tally)
        finally:
            os.chdir(cwd)
    return tally.finish(time.perf_counter() - t0)


def _subcommands() -> list[str]:
    import argparse

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def _fresh_store(data_dir: Path) -> Path:
    """Create the store first: the property is about stored data, and opening a store that does not
    exist yet creates it (schema, chain head, key file) whatever the command then does."""
    memory_module.HEIMemory(HeiNwSettings.build(store={"data_dir": data_dir})).close()
    return data_dir


def _verify(data_dir: Path, tally: Tally) -> None:
    if not (data_dir / "traces.db").exists():
        return
    try:
        with memory_module.HEIMemory(HeiNwSettings.build(store={"data_dir": data_dir}), persist_index=False) as mem:
            report = mem.verify()
    except Exception as err:  # noqa: BLE001 - a verify that raises is a finding too
        tally.fail("integrity", "verify", f"{type(err).__name__}: {err}", str(data_dir))
        return
    if not report.ok:
        tally.fail("integrity", "verify", f"{len(report.problems)} problems: {report.problems[:3]}", str(data_dir))
