"""Measure the two speed claims of secretsync and print the ratios.

1. A no-op run over 100 jobs that are in sync, against starting the interpreter with the
   modules secretsync imports (the floor any run pays).
2. 500 changed keys in a 10,000-line target: one secretsync run, against a loop of
   python-dotenv's ``set_key`` (one call per key, as a shell script around it would do). The
   files the run opens are counted with strace: the target is read once and written once.

Run as root with Debian's interpreter: ``make bench`` (or ``/usr/bin/python3 bench/bench_sync.py``).
Times are the median of several runs, in milliseconds.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"


def _median_ms(argv: list[str], runs: int, prepare=None) -> float:
    times = []
    for _ in range(runs):
        if prepare:
            prepare()
        start = time.perf_counter()
        subprocess.run(argv, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _secretsync(config: str, scratch: str) -> list[str]:
    return [PYTHON, "-m", "secretsync", "-q", "-c", config, "--lock-file",
            os.path.join(scratch, "lock")]


def noop_100_jobs(scratch: str, runs: int) -> None:
    source = os.path.join(scratch, "shared.env")
    with open(source, "w") as f:
        f.writelines(f"API_KEY_{i}=value-{i}\n" for i in range(20))
    os.chmod(source, 0o600)
    config = os.path.join(scratch, "noop.conf")
    with open(config, "w") as f:
        f.write(f"[DEFAULT]\nsource = {source}\nsync = API_*\nbackup_dir = {scratch}/bk\n")
        for job in range(100):
            target = os.path.join(scratch, f"app{job}.env")
            with open(target, "w") as t:
                t.write("DB_DSN=postgresql://db/app\n")
                t.writelines(f"API_KEY_{i}=value-{i}\n" for i in range(20))
            f.write(f"[app{job}]\ntarget = {target}\n")

    argv = _secretsync(config, scratch)
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(os.path.join(scratch, "bk")), "a no-op run made a backup"

    floor = _median_ms([PYTHON, "-c", "import secretsync.cli, secretsync.runner"], runs)
    run = _median_ms(argv, runs)
    print("1. no-op run over 100 jobs in sync")
    print(f"   interpreter + imports       {floor:8.1f} ms")
    print(f"   secretsync, 100 jobs        {run:8.1f} ms")
    print(f"   ratio                       {run / floor:8.2f}x "
          f"({(run - floor) / 100:.2f} ms per job above the floor)")


def changes_500(scratch: str, runs: int) -> None:
    source = os.path.join(scratch, "big-source.env")
    with open(source, "w") as f:
        f.writelines(f"SHARED_{i}=new-value-{i}\n" for i in range(500))
    os.chmod(source, 0o600)
    original = os.path.join(scratch, "big-original.env")
    with open(original, "w") as f:
        for line in range(10_000):
            if line % 20 == 0:
                f.write(f"SHARED_{line // 20}=old-value-{line // 20}\n")
            elif line % 7 == 0:
                f.write(f"# comment line {line}\n")
            else:
                f.write(f"APP_SETTING_{line}=app-value-{line}\n")
    target = os.path.join(scratch, "big.env")
    config = os.path.join(scratch, "big.conf")
    with open(config, "w") as f:
        f.write(f"[big]\nsource = {source}\ntarget = {target}\nsync = SHARED_*\n"
                f"backup_dir = {scratch}/bk\nkeep_backups = 2\n")

    def fresh() -> None:
        shutil.copyfile(original, target)

    argv = _secretsync(config, scratch)
    ours = _median_ms(argv, runs, fresh)

    set_key_script = (
        "import sys, dotenv\n"
        "values = dotenv.dotenv_values(sys.argv[1], interpolate=False)\n"
        "for key, value in values.items():\n"
        "    dotenv.set_key(sys.argv[2], key, value, quote_mode='never')\n"
    )
    # One run: the loop takes a minute or more, and its spread is small beside the ratio.
    theirs = _median_ms([PYTHON, "-c", set_key_script, source, target], 1, fresh)

    fresh()
    trace = os.path.join(scratch, "strace.out")
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,rename,renameat,renameat2",
                    "-o", trace] + argv, check=True, cwd=REPO, stderr=subprocess.DEVNULL)
    with open(trace) as f:
        calls = f.read().splitlines()
    # The target is opened once by name (O_PATH, not following symlinks) and read through
    # that descriptor (/proc/self/fd/N); the new content goes to one temp file, renamed over.
    opens = sum(1 for c in calls if "openat(" in c and '"big.env"' in c)
    reads = sum(1 for c in calls if "openat(" in c and "/proc/self/fd/" in c)
    writes = sum(1 for c in calls if "openat(" in c and ".big.env.secretsync-" in c)
    renames = sum(1 for c in calls if "rename" in c and '"big.env"' in c)

    print("2. 500 changed keys in a 10,000-line target")
    print(f"   secretsync, one run         {ours:8.1f} ms")
    print(f"   500 x dotenv.set_key        {theirs:8.1f} ms")
    print(f"   ratio                       {theirs / ours:8.1f}x faster")
    print(f"   target opened by name {opens}, reopened to read {reads}, "
          f"temp files written {writes}, renames onto the target {renames}")


def main() -> int:
    if os.geteuid() != 0:
        print("run as root (secretsync is a root tool)", file=sys.stderr)
        return 1
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    with tempfile.TemporaryDirectory() as scratch:
        noop_100_jobs(scratch, runs)
        changes_500(scratch, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
