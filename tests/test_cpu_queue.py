"""docs/cpu_queue.sh: the CPU queue's sweeps, their pinned worktrees, and what sync and status read."""
import os
import re
import shutil
import subprocess

import pytest
import yaml

from mdistiller_ext.cli import sweep

from .conftest import ROOT

SCRIPT = ROOT / "docs" / "cpu_queue.sh"


def queue():
    text = SCRIPT.read_text()
    body = re.search(r"QUEUE=\(\n(.*?)\n\)", text, re.S).group(1)
    return [tuple(line.strip().strip('"').split()) for line in body.splitlines()]


def test_queue_order_and_every_sweep_lands_where_the_script_looks():
    entries = queue()
    assert [e[0] for e in entries] == ["study100", "baselines100", "distcheck100", "res56_res20"]  # the issues' order
    assert [e[4] for e in entries] == ["finished", "finished", "finished", "every"]  # only the long runs' progress is copied
    assert [e[5] for e in entries] == ["wait", "beside", "beside", "wait"]  # CRD's long run does not hold the 240-epoch runs back
    for name, commit, sweep_file, runs, _, _ in entries:
        spec = yaml.safe_load((ROOT / sweep_file).read_text())
        planned = sweep.plan_configs(spec["runs"])
        assert planned and all(os.path.normpath(r.run_dir).startswith(runs + os.sep) for r in planned), name


def test_pinned_commits_exist_and_hold_their_sweeps():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"], capture_output=True,
                      text=True).stdout.strip() == "true":
        pytest.skip("a shallow clone lacks the pinned commits")
    for name, commit, sweep_file, _, _, _ in queue():
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{sweep_file}"], capture_output=True, text=True)
        assert shown.returncode == 0, f"{name}: {commit} has no {sweep_file}: {shown.stderr}"


def fake_layout(tmp_path):
    """A checkout beside a study100 worktree: one finished run, one half-way, one finished in both places."""
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "docs" / "cpu_queue.sh")
    runs = tmp_path / "study100" / "docs" / "cifar100_study" / "runs"
    for name, epochs, done in (("kd,seed0", 15, True), ("dkd,seed1", 3, False), ("old", 15, True), ("crd,seed0", 0, False)):
        (runs / name).mkdir(parents=True)
        log = "# runtime: x\n" + "".join(f"-------------------------\nepoch: {e}\ntest_acc: 50.0\n"
                                          for e in range(1, epochs + 1))
        (runs / name / "worklog.txt").write_text(log + ("best_acc\t51.25\n" if done else ""))
        (runs / name / "config.yaml").write_text(f"name: {name}\n")
        (runs / name / "latest").write_text("a checkpoint, never copied")
    long_run = tmp_path / "res56_res20" / "docs" / "cifar100_res56_res20" / "cifar100_dhkd" / "dhkd,seed0"
    long_run.mkdir(parents=True)
    (long_run / "worklog.txt").write_text("-------------------------\nepoch: 1\ntest_acc: 30.0\n")
    (long_run / "runtime.json").write_text("{}")
    (long_run / "latest").write_text("a checkpoint, never copied")
    (long_run.parent.parent / "HALTED.txt").write_text("the sweep halted after dhkd: it failed\nnot started: kd\n")
    kept = repo / "docs" / "cifar100_study" / "runs" / "old"
    kept.mkdir(parents=True)
    (kept / "worklog.txt").write_text("best_acc\t49.00\n")
    return repo, kept


def test_status_and_sync_on_a_fake_worktree(tmp_path):
    repo, kept = fake_layout(tmp_path)
    script = str(repo / "docs" / "cpu_queue.sh")
    status = subprocess.run(["bash", script, "status"], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "kd,seed0: finished (best_acc 51.25)" in status.stdout and "dkd,seed1: 3 epochs done" in status.stdout
    assert "crd,seed0: 0 epochs done" in status.stdout  # a run before its first epoch does not stop the listing
    assert "baselines100" in status.stdout and "not started" in status.stdout
    assert "  HALTED: the sweep halted after dhkd: it failed\n  HALTED: not started: kd\n" in status.stdout
    # PYTHON stands in: the claims page's regeneration is the study's own test and carrying checkpoints
    # test_carry.py's; here the copying, and which folders the carry is asked to pack (from the checkout)
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "fake_python"
    fake.write_text(f'#!/bin/bash\necho "$PWD $*" >> {calls}\n')
    fake.chmod(0o755)
    synced = subprocess.run(["bash", script, "sync"], capture_output=True, text=True, env=dict(os.environ, PYTHON=str(fake)))
    assert synced.returncode == 0, synced.stderr
    long_runs = "docs/cifar100_res56_res20"
    assert f"{repo} -m mdistiller_ext.runs.carry pack {tmp_path}/res56_res20/{long_runs} {repo}/{long_runs}" \
        in calls.read_text().splitlines()
    assert sum("runs.carry" in line for line in calls.read_text().splitlines()) == 1  # the long runs' folder only
    copied = repo / "docs" / "cifar100_study" / "runs" / "kd,seed0"
    assert sorted(p.name for p in copied.iterdir()) == ["config.yaml", "worklog.txt"]  # no checkpoint
    assert not (repo / "docs" / "cifar100_study" / "runs" / "dkd,seed1").exists()  # unfinished: not copied
    assert kept.joinpath("worklog.txt").read_text() == "best_acc\t49.00\n"  # finished here already: untouched
    assert "kd,seed0" in synced.stdout and "old" not in synced.stdout.split()
    # a 240-epoch run half-way: its worklog and runtime record come along, its checkpoint does not
    copied_long = repo / "docs" / "cifar100_res56_res20" / "cifar100_dhkd" / "dhkd,seed0"
    assert sorted(p.name for p in copied_long.iterdir()) == ["runtime.json", "worklog.txt"]


def test_unknown_command_says_how_to_use_it():
    out = subprocess.run(["bash", str(SCRIPT), "go"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage: bash docs/cpu_queue.sh run | sync | status" in out.stderr


def queue_repo(tmp_path, modes, unfinished=(), seconds=None):
    """A git repository holding cpu_queue.sh with one queue entry per (name, mode[, what sync copies]), and an interpreter standing in
    for the sweeps: a dry run lists a run "not run yet" for the sweeps named in ``unfinished`` (then a long tail,
    as a real plan has: a reader that stops early breaks the pipe); a real one records
    its worktree (or "repo": a call from the checkout), commit, where its data cache resolves to, OMP_NUM_THREADS,
    when it started and ended, and its arguments."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "docs" / "cpu_queue.sh").write_text(SCRIPT.read_text())
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    text = SCRIPT.read_text()
    entries = "\n".join(f'  "{n} {commit} sweep_{n}.yaml runs/{n} {(rest or ["finished"])[0]} {mode}"'
                        for n, mode, *rest in modes)
    (repo / "docs" / "cpu_queue.sh").write_text(re.sub(r"QUEUE=\(\n.*?\n\)", f"QUEUE=(\n{entries}\n)", text, flags=re.S))
    record = tmp_path / "record.txt"
    fake = tmp_path / "fake_python"
    naps = " ".join(f"{n}) sleep {t};;" for n, t in (seconds or {}).items())
    fake.write_text(
        "#!/bin/bash\nname=$(basename \"$PWD\")\n"
        f"if [[ \" $* \" == *\" --dry-run \"* ]]; then case \" {' '.join(unfinished)} \" in *\" $name \"*) "
        "echo 'not run yet  a run';; *) echo 'finished     a run';; esac; seq 100000 || exit 1; exit 0; fi\n"
        "start=$(date +%s.%N)\n"
        f"case $name in {naps} *) ;; esac\n"
        f'echo "$name $(git rev-parse --short HEAD) data=$(cd data 2>/dev/null && pwd -P) omp=${{OMP_NUM_THREADS:-}} '
        f'$start $(date +%s.%N) $*" >> {record}\n')
    fake.chmod(0o755)
    ran = subprocess.run(["bash", str(repo / "docs" / "cpu_queue.sh"), "run"], capture_output=True, text=True,
                         env={k: v for k, v in dict(os.environ, PYTHON=str(fake)).items() if k != "OMP_NUM_THREADS"})
    assert ran.returncode == 0, ran.stderr
    runs = {line.split()[0]: line.split() for line in record.read_text().splitlines()}
    return commit, runs, ran.stdout


def test_run_pins_each_worktree_and_later_ones_share_the_first_ones_data_cache(tmp_path):
    """`run` on a real git repository: each sweep runs in a worktree at its pinned commit, and the worktrees made
    after the first link ./data to the first one's, so the decoded data and the teacher logits are made once."""
    commit, runs, _ = queue_repo(tmp_path, [("first", "wait"), ("second", "wait"), ("third", "wait")])
    first_data = str((tmp_path / "first" / "data").resolve())
    assert runs["first"][:2] == ["first", commit]
    assert [runs[n][:3] for n in ("second", "third")] == [["second", commit, f"data={first_data}"],
                                                          ["third", commit, f"data={first_data}"]]
    assert (tmp_path / "second" / "data").is_symlink() and not (tmp_path / "first" / "data").is_symlink()
    assert {runs[n][3] for n in runs} == {"omp="}  # one after the other: each sweep shares the cores out itself


def test_a_sweep_marked_beside_goes_on_in_the_background_while_the_next_runs_on_one_thread(tmp_path):
    """The baselines' sweep (CRD's run holds a core for hours) is marked "beside": with runs left it goes on while
    the next sweep starts, and from then on every sweep's runs get one thread; with none left it is a quick
    pass and the next sweep takes the cores as before. `run` returns only when the sweep beside has ended."""
    _, runs, out = queue_repo(tmp_path, [("first", "wait"), ("second", "beside"), ("third", "wait")],
                              unfinished=("second",), seconds={"second": 2})
    second_start, second_end = map(float, runs["second"][4:6])
    third_start = float(runs["third"][4])
    assert second_start < third_start < second_end  # side by side
    assert runs["third"][3] == "omp=1" and runs["first"][3] == "omp="
    assert "it goes on beside the next sweep" in out
    _, runs, out = queue_repo(tmp_path / "done", [("first", "wait"), ("second", "beside"), ("third", "wait")],
                              seconds={"second": 1})
    assert float(runs["third"][4]) >= float(runs["second"][5]) and runs["third"][3] == "omp="
    assert "beside the next sweep" not in out


def test_run_restores_the_long_runs_carried_checkpoints_from_the_checkout_before_their_sweep(tmp_path):
    """A fresh machine has no checkpoint of a half-done 240-epoch run but the one committed: `run` asks the carry
    (from the checkout, whose package has it) to restore the sweep's runs into its worktree before the sweep."""
    _, runs, _ = queue_repo(tmp_path, [("short", "wait"), ("long", "wait", "every")])
    repo = tmp_path / "repo"
    assert runs["repo"][6:] == ["-m", "mdistiller_ext.runs.carry", "restore", f"{repo}/runs/long", f"{tmp_path}/long/runs/long"]
    assert float(runs["repo"][5]) <= float(runs["long"][4])  # before the sweep starts
    assert "short" in runs and len(runs) == 3  # the short sweep's runs: nothing carried
