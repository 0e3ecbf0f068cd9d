"""Concurrency and readers: runs started at once, and a reader that never sees a torn file."""

import json
import os
import subprocess
import sys
import textwrap
import time

from robustlib import (
    LOCK_MESSAGE, PYTHON, Scenario, Tally, binding_keys, command, failure_report, popen, scaled,
    temp_leftovers, values,
)

TARGET = "# shared settings\nLOCAL_ONLY=keep me\n" + "".join(
    f"SETTING_{i:04d}=local-{i}\n" for i in range(2000)
) + "export API_TOKEN=old\n"


def source_version(tag):
    return "".join(f"SETTING_{i:04d}=v{tag}-{i}\n" for i in range(0, 2000, 7)) + (
        f"API_TOKEN=token-{tag}\nADDED_KEY=added-{tag}\n")


def test_twenty_runs_started_at_once_change_the_target_once(base):
    scenario = Scenario(base, source_text=source_version(0), target_text=TARGET)
    hook_log = base / "hook.log"
    scenario.write_config(
        sync="SETTING_* API_TOKEN ADDED_KEY",
        on_change=f"/bin/sh -c 'echo \"$SECRETSYNC_JOB\" >> {hook_log}'",
    )
    tally = Tally()
    lock_refusals = 0
    for round_ in range(scaled(3)):
        scenario.write_source(source_version(round_ + 1))
        procs = []
        for index in range(20):
            # Output goes to files: a pipe drained only later would hold up the lock holder.
            wait = ["--wait", "120"] if index % 2 == 0 else []
            err_path = base / f"run{index}.err"
            with open(err_path, "w") as err_file:
                proc = popen(command(scenario.config, scenario.lock, *wait),
                             stdout=subprocess.DEVNULL, stderr=err_file)
            procs.append((wait, proc, err_path))
        for wait, proc, err_path in procs:
            proc.wait(timeout=180)
            err = err_path.read_text()
            with tally.attempt(f"round {round_} run {'waiting' if wait else 'not waiting'}"):
                if proc.returncode != 0 or wait:
                    assert proc.returncode == 0 or (
                        not wait and proc.returncode == 1 and LOCK_MESSAGE in err
                    ), f"exit {proc.returncode}: {err}"
                lock_refusals += proc.returncode == 1
                assert "Traceback" not in err, err
        with tally.attempt(f"round {round_} result"):
            text = scenario.target.read_text()
            keys = binding_keys(text)
            assert len(keys) == len(set(keys)), "a key is doubled"
            assert len(keys) == 2003, f"{len(keys)} keys, want 2003"
            src = values(scenario.source)
            got = values(scenario.target)
            assert all(got[k] == v for k, v in src.items()), "final file wrong"
            assert got["LOCAL_ONLY"] == "keep me"
            assert len(scenario.backups()) == round_ + 1, "want one backup per real change"
            assert hook_log.read_text().splitlines() == ["app"] * (round_ + 1), "hook count"
            assert temp_leftovers(scenario.appdir) == []
    tally.finish("concurrency-20-at-once", f"{scaled(3)} rounds of 20 runs, "
                                           f"{lock_refusals} refused by the lock")


READER = textwrap.dedent(
    """
    import io, json, os, sys
    from dotenv import dotenv_values
    target, allowed_dir, stop, report = sys.argv[1:5]
    allowed = [open(os.path.join(allowed_dir, n), "rb").read()
               for n in sorted(os.listdir(allowed_dir))]
    meanings = [dotenv_values(stream=io.StringIO(a.decode()), interpolate=False)
                for a in allowed]
    reads = bad = 0
    problems = []
    while not os.path.exists(stop):
        reads += 1
        try:
            with open(target, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            bad += 1
            problems.append("missing")
            continue
        if data not in allowed:
            bad += 1
            problems.append(f"unexpected {len(data)} bytes")
        if reads % 10 == 0:
            got = dotenv_values(target, interpolate=False)
            if got not in meanings:
                bad += 1
                problems.append(f"dotenv read {len(got)} keys")
    json.dump({"reads": reads, "bad": bad, "problems": problems[:20]}, open(report, "w"))
    """
)


def test_reader_never_sees_a_partial_empty_or_missing_file(base):
    sources = [source_version("a"), source_version("b")]
    allowed = base / "allowed"
    allowed.mkdir()

    # The three files a reader may see: before, after version a, after version b.
    reference = Scenario(base / "reference", source_text=sources[0], target_text=TARGET)
    (allowed / "0").write_bytes(reference.target.read_bytes())
    for index in (1, 2, 3):
        reference.write_source(sources[(index - 1) % 2])
        assert reference.run().returncode == 0
        if index < 3:
            (allowed / str(index)).write_bytes(reference.target.read_bytes())
    assert reference.target.read_bytes() == (allowed / "1").read_bytes()

    scenario = Scenario(base / "live", source_text=sources[0], target_text=TARGET)
    stop, report = base / "stop", base / "report.json"
    reader = subprocess.Popen([PYTHON, "-c", READER, str(scenario.target), str(allowed),
                               str(stop), str(report)])
    tally = Tally()
    syncs = scaled(200)
    try:
        time.sleep(0.3)
        for index in range(syncs):
            scenario.write_source(sources[index % 2])
            result = scenario.forked()
            with tally.attempt(f"sync {index}"):
                assert result.returncode == 0, failure_report(result)
    finally:
        stop.touch()
        reader.wait(timeout=60)
    seen = json.loads(report.read_text())
    assert seen["reads"] > syncs, seen
    with tally.attempt("reader"):
        assert seen["bad"] == 0, seen["problems"]
    tally.finish("readers", f"{syncs} syncs, {seen['reads']} reads, {seen['bad']} bad reads")
    assert len(scenario.backups()) == min(syncs, 1000)  # the scenario keeps 1000
