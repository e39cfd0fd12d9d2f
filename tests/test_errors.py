"""Mistakes a user can make end in one line naming the problem, exit status 2, nothing written, before any
work: bad numbers, unwritable outputs, files of the wrong kind, workflow profiles with bad names."""

import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import pytest

from blockswap import cli
from blockswap.core.counting import analytic
from blockswap.core.genotype import Genotype

from conftest import ROOT, python_for, write_fashion


def refused(capsys, *argv) -> str:
    """Run the CLI in-process; assert exit 2 and a one-line message; return it."""
    with pytest.raises(SystemExit) as exit_:
        code = cli.main(list(argv))
        raise SystemExit(code)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def candidates(tmp_path) -> Path:
    path = tmp_path / "c.jsonl"
    assert cli.main(["sample", "--model", "wrn-16-1", "--budget", "40000", "--samples", "3", "--in-channels", "1",
                     "--image-size", "28", "-o", str(path)]) == 0
    return path


@pytest.mark.parametrize("argv, message", [
    (["sample", "--model", "wrn-16-1", "--budget", "nan"], "--budget: expected a positive number such as 40000, "
                                                           "40K or 2M, got 'nan'"),
    (["sample", "--model", "wrn-16-1", "--budget", "-5"], "--budget: expected a positive number"),
    (["sample", "--model", "wrn-16-1", "--budget", "10X"], "--budget: expected a positive number"),
    (["sample", "--model", "wrn-16-1", "--budget", "4e4", "--seed", "-1"], "--seed: must be ≥ 0, got -1"),
    (["sample", "--model", "wrn-16-1", "--budget", "4e4", "--tolerance", "1.5"], "--tolerance: must be between 0"),
    (["sample", "--model", "wrn-16-1", "--budget", "4e4", "--samples", "0"], "--samples: must be ≥ 1, got 0"),
    (["score", "c.jsonl", "--dataset", "fashion-mnist", "--threads", "-3"], "--threads: must be ≥ 1, got -3"),
    (["score", "c.jsonl", "--dataset", "fashion-mnist", "--threads", "0"], "--threads: must be ≥ 1, got 0"),
    (["score", "c.jsonl", "--dataset", "fashion-mnist", "--workers", "-3"], "--workers: must be ≥ 1, got -3"),
    (["score", "c.jsonl", "--dataset", "fashion-mnist", "--minibatches", "x"], "--minibatches: expected an integer"),
    (["select", "c.jsonl", "s.csv", "--first", "0"], "--first: must be ≥ 1, got 0"),
])
def test_bad_numbers(capsys, argv, message):
    err = refused(capsys, *argv)
    assert message in err and "(see blockswap" in err


def command_paths(parser, path=()):
    """Every command's argv prefix: the top level, each subcommand, each of theirs (nested), in order."""
    import argparse

    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*path, name))


def test_every_commands_help_exits_0(capsys):
    """--help of the top level, every command and every subcommand: exit 0 and a usage, never a traceback
    (argparse %-formats help texts: a "95% interval" broke it)."""
    paths = list(command_paths(cli.build_parser()))
    assert ("compress-table",) in paths and ("report", "correlation") in paths and len(paths) > 30
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            cli.main([*path, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and out.startswith("usage: blockswap"), path


@pytest.mark.parametrize("argv", [["sample", "--model", "wrn-16-1", "--in-channels", "1", "--image-size", "28",
                                   "--samples", "1"], ["compress", "--teacher", "t.pt", "--data", "d", "-o", "o"]])
def test_budgets_read_the_same_everywhere(argv):
    parser = cli.build_parser()
    for text, value in (("40K", 40_000), ("2M", 2_000_000), ("2.8m", 2_800_000), ("40000", 40_000)):
        assert parser.parse_args([*argv, "--budget", text]).budget == value


def test_outputs_checked_before_any_work(capsys, tmp_path, candidates):
    a_file = tmp_path / "plain-file"
    a_file.write_text("")
    err = refused(capsys, "count", str(candidates), "--index", "0", "-o", str(tmp_path))
    assert err.endswith(f"--output {tmp_path} is a directory; name a file inside it")
    err = refused(capsys, "sample", "--model", "wrn-16-1", "--budget", "4e4", "-o", str(a_file / "c.jsonl"))
    assert f"{a_file} is a file, not a folder" in err
    # score fails on its output before it looks for data (there is none at this path)
    err = refused(capsys, "score", str(candidates), "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "none"),
                  "--best", str(tmp_path))
    assert "--best" in err and "is a directory" in err
    err = refused(capsys, "report", "results", "--metrics", "m.json", "--out-dir", str(a_file))
    assert "is a file, not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "plain-file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder: see the test below")
def test_read_only_folder_is_refused(capsys, tmp_path, candidates):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    err = refused(capsys, "count", str(candidates), "--index", "0", "-o", str(locked / "sub" / "c.json"))
    assert f"cannot write into {locked}" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root only, to switch to an ordinary user (the test above "
                                              "covers a non-root run)")
def test_read_only_folder_is_refused_for_an_ordinary_user():
    """The check every command runs on its outputs before any work, as a user without root."""
    user, python = "nobody", python_for("nobody")
    assert python, "no Python ≥ 3.11 that user nobody may run"
    top = Path(tempfile.mkdtemp(prefix="blockswap-user-"))
    try:
        top.chmod(0o755)
        shutil.copytree(ROOT / "src" / "blockswap", top / "src" / "blockswap",
                        ignore=shutil.ignore_patterns("__pycache__"))  # files.py needs the standard library only
        locked = top / "locked"
        locked.mkdir(mode=0o555)
        code = ("import sys\nfrom blockswap.core.errors import BlockswapError\n"
                "from blockswap.core.files import check_output\n"
                "try:\n    check_output(sys.argv[1], '--output')\nexcept BlockswapError as e:\n"
                "    print(e)\n    sys.exit(2)")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(top / "src")}
        done = subprocess.run(["runuser", "-u", user, "--", python, "-c", code, str(locked / "sub" / "c.json")],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stdout.strip().startswith(f"--output {locked / 'sub' / 'c.json'}: cannot write into {locked}")
        assert sorted(p.name for p in locked.iterdir()) == []
    finally:
        shutil.rmtree(top)


def test_a_jsonl_needs_an_index_that_count_has(capsys, candidates):
    err = refused(capsys, "count", str(candidates))
    assert "holds 3 genotypes: say which one with --index I (0–2)" in err
    assert cli.main(["count", str(candidates), "--index", "2"]) == 0
    record = json.loads(candidates.read_text().splitlines()[2])
    assert json.loads(capsys.readouterr().out) == analytic(Genotype.from_dict(record)).to_dict()


def test_pretty_printed_genotype_is_one_candidate(capsys, tmp_path, candidates):
    record = json.loads(candidates.read_text().splitlines()[1])
    pretty = tmp_path / "g.json"
    pretty.write_text(json.dumps(record, indent=2))
    scores = tmp_path / "s.csv"
    scores.write_text(f"id,fisher\n{record['id']},1.5\n")
    out = tmp_path / "best.json"
    assert cli.main(["select", str(pretty), str(scores), "--first", "1", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["blocks"] == record["blocks"]
    from blockswap.core.genotype import load

    assert load(pretty, 0).blocks == tuple(record["blocks"])


def test_select_names_an_unknown_proxy(capsys, tmp_path, candidates):
    err = refused(capsys, "select", str(candidates), str(tmp_path / "s.csv"), "--first", "1", "--proxy", "fishr")
    assert "unknown proxy 'fishr'. Did you mean 'fisher'?" in err


def test_ctrl_c_on_score_stops_cleanly(tmp_path, candidates):
    """SIGINT reaches the worker processes too (one process group): only the parent may speak."""
    write_fashion(tmp_path, n_train=256, n_test=10)
    many = tmp_path / "many.jsonl"
    assert cli.main(["sample", "--model", "wrn-16-1", "--budget", "40000", "--samples", "2000", "--in-channels", "1",
                     "--image-size", "28", "-o", str(many)]) == 0
    out = tmp_path / "scores.csv"
    terminal, stderr = pty.openpty()  # stderr a terminal, as where Ctrl-C is typed: the bar is drawn there
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns: room for a bar
    proc = subprocess.Popen([sys.executable, "-m", "blockswap", "score", str(many), "--dataset", "fashion-mnist",
                             "--data-dir", str(tmp_path), "--batch-size", "32", "--workers", "2", "--threads", "2",
                             "-o", str(out)], stderr=stderr, start_new_session=True,
                            # a background job may inherit SIGINT ignored; a terminal's program does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(stderr)

    def read() -> bytes:
        try:
            return os.read(terminal, 4096)
        except OSError:  # the terminal's other end closed: the process has exited
            return b""

    seen = b""
    while not re.search(rb"\| *[1-9]\d*/2000", seen):  # the workers have scored some
        chunk = read()
        assert chunk, (proc.poll(), seen.decode())
        seen += chunk
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the whole group
    proc.wait(timeout=60)
    rest = b""
    while chunk := read():
        rest += chunk
    os.close(terminal)
    err = rest.decode().replace("\r\n", "\n")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert err.strip().splitlines()[-1] == "blockswap score: interrupted; no output written"
    assert not out.exists()


BAD_PROFILES = [
    ("search: {proxy: fishr}", "search.proxy: unknown proxy 'fishr'. Did you mean 'fisher'?"),
    ("ablations: {proxies: [fisher, bogus]}", "ablations.proxies: unknown proxy 'bogus'"),
    ("dataset: {name: mnist}", "dataset.name: unknown dataset 'mnist'. Did you mean 'fashion-mnist'?"),
    ("dataset: {in_channels: 3}", "dataset.in_channels: fashion-mnist has in_channels 1, the profile says 3"),
    ("teacher: {model: wrn-16-3x}", "teacher.model: unknown model 'wrn-16-3x'"),
    ("baselines: {scaled: [resnet43]}", "baselines.scaled: unknown model 'resnet43'"),
    ("baselines: {moonshine_blocks: [ConvB3]}", "baselines.moonshine_blocks: unknown block type 'ConvB3'"),
    ("search: {budgets: [1000]}", "search.budgets: budget 1,000 is outside the feasible range"),
    ("searchh: {}", "top level: Additional properties are not allowed ('searchh' was unexpected)"),
    ("search: {samples: 0}", "search.samples: 0 is less than the minimum of 1"),
]


@pytest.mark.parametrize("profile, message", BAD_PROFILES, ids=[m.split(":")[0] for _, m in BAD_PROFILES])
def test_bad_profile_stops_the_workflow_before_any_job(tmp_path, profile, message):
    config = tmp_path / "bad.yaml"
    config.write_text(f"name: bad\nresults_dir: {tmp_path / 'results'}\n{profile}\n")
    done = subprocess.run([Path(sys.executable).parent / "snakemake", "-n", "--cores", "1", "--configfile",
                           str(config)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert lines == [f"blockswap workflow: invalid configuration: {lines[0].split(': ', 2)[2]}"]
    assert message in lines[0]
    assert not (tmp_path / "results").exists()


def test_missing_data_stops_a_real_run_before_any_job_but_not_a_dry_run(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    config = tmp_path / "profile.yaml"
    config.write_text(f"name: nodata\nresults_dir: {tmp_path / 'results'}\ndataset: {{data_dir: {empty}}}\n")
    snakemake = [Path(sys.executable).parent / "snakemake", "--cores", "1", "--configfile", str(config)]
    for dry in (["-n"], ["--lint"]):  # showing or linting the DAG needs no data
        assert subprocess.run(snakemake + dry, cwd=ROOT, capture_output=True, text=True, timeout=120).returncode == 0
    done = subprocess.run(snakemake, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"blockswap workflow: invalid configuration: dataset: Fashion-MNIST file {empty}")
    assert not (tmp_path / "results").exists()
