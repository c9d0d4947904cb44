"""The CIFAR-10 study's configs are the shipped ones with only the documented changes."""
import pytest
import yaml

from mdistiller_ext.cli import sweep
from mdistiller_ext.config import flat_config
from mdistiller_ext.runs.naming import load_config

from .conftest import ROOT

STUDY = ROOT / "docs" / "cifar10_study"
COMMON = {"SOLVER.EPOCHS", "SOLVER.LR_DECAY_STAGES", "EXT.CHANNELS_LAST", "EXT.DATA_ROOT", "LOG.PREFIX",
          "EXPERIMENT.PROJECT", "EXPERIMENT.TAG"}
STUDENT = COMMON | {"EXT.GRAD_PROBE_EVERY", "EXT.TEACHER_CKPT"}
OLD_AEKT = {"AEKT.W_MAX", "AEKT.RATIO_NORM"}  # AEKT's defaults before the selection on validation
CONFIGS = {  # study config -> (shipped config, keys it may change)
    "teacher_resnet20": ("vanilla/resnet20", COMMON | {"EXT.EXPORT_TEACHER"}),
    "vanilla_resnet8": ("vanilla/resnet20", COMMON | {"EXT.GRAD_PROBE_EVERY", "EXT.EXPORT_TEACHER", "DISTILLER.STUDENT"}),
    "kd": ("kd/res20_res8", STUDENT),
    "dkd": ("dkd/res20_res8", STUDENT | {"DKD.WARMUP"}),
    "dhkd": ("dhkd/res20_res8", STUDENT),
    "aekt": ("aekt/res20_res8", STUDENT | {"AEKT.WARMUP"}),
    "dhkd_one_head_bkl": ("dhkd/res20_res8", STUDENT | {"DHKD.HEAD", "DHKD.LOSS"}),
    "dhkd_align": ("dhkd/res20_res8", STUDENT | {"SOLVER.TRAINER"}),
    # the first round without a warm-up (runs_no_warmup/), run with AEKT's defaults of then (W_MAX 10, clip)
    "no_warmup/dkd": ("dkd/res20_res8", STUDENT | {"DKD.WARMUP"}),
    "no_warmup/aekt": ("aekt/res20_res8", STUDENT | {"AEKT.WARMUP"} | OLD_AEKT),
    "no_warmup/aekt_ratio_none": ("aekt/res20_res8", STUDENT | {"AEKT.WARMUP", "AEKT.RATIO_MODE"} | OLD_AEKT),
    "no_warmup/aekt_serial_none": ("aekt/res20_res8", STUDENT | {"AEKT.WARMUP", "AEKT.SERIAL"} | OLD_AEKT),
}
WARMUP = {"dkd": 1.25, "aekt": 1.25, "no_warmup/dkd": 1, "no_warmup/aekt": 1}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_study_config_changes_only_documented_keys(name):
    shipped, allowed = CONFIGS[name]
    ours = flat_config(load_config(str(STUDY / "configs" / f"{name}.yaml"), []))
    base = flat_config(load_config(str(ROOT / "configs" / "cifar10" / f"{shipped}.yaml"), []))
    changed = {k for k in ours if ours[k] != base[k]}
    assert changed <= allowed, changed - allowed
    assert ours["SOLVER.EPOCHS"] == (30 if name == "teacher_resnet20" else 15)
    assert ours["SOLVER.LR"] == 0.05 and ours["SOLVER.BATCH_SIZE"] == 64
    if name in WARMUP:  # 20/240 of 15 epochs, ramped per step (the first round's 1 was no warm-up at all)
        assert ours[("AEKT" if "aekt" in name else "DKD") + ".WARMUP"] == WARMUP[name]
    assert ours["EXPERIMENT.PROJECT"] == ("runs_no_warmup" if name.startswith("no_warmup/") else "runs")


def test_study_sweep_plans_the_teacher_first_then_seed_by_seed():
    spec = yaml.safe_load((STUDY / "sweep.yaml").read_text())
    runs = sweep.plan_configs(spec["runs"])
    assert len(runs) == 1 + 5 * 5 + 2 * 3
    assert runs[0].name == "teacher,resnet20" and runs[0].seed == 0
    assert [r.seed for r in runs[1:8]] == [0] * 7 and [r.seed for r in runs[8:15]] == [1] * 7
    assert [r.seed for r in runs[-10:]] == [3] * 5 + [4] * 5  # the five-seed arms only
    # the first round's runs without a warm-up are planned apart, into their own folder, all finished
    old = sweep.plan_configs(yaml.safe_load((STUDY / "sweep_no_warmup.yaml").read_text())["runs"])
    assert len(old) == 8 and all("runs_no_warmup" in r.run_dir and sweep.status(r) == "finished" for r in old)
    teacher = load_config(str(STUDY / "configs" / "kd.yaml"), []).EXT.TEACHER_CKPT
    assert teacher == f"{runs[0].run_dir}/student_best"


@pytest.fixture(scope="module")
def claims():
    """docs/cifar10_study/claims.py, a script outside the package, loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_claims", STUDY / "claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_planned_study_run_is_committed_and_claims_md_is_what_claims_py_writes(claims):
    # the study's verdicts rest on these runs: a fresh clone has all of them, finished, and regenerates the same page
    planned = sweep.plan_configs(yaml.safe_load((STUDY / "sweep.yaml").read_text())["runs"])
    assert [r.run_dir for r in planned if sweep.status(r) != "finished"] == []
    page = claims.report()
    assert page == (STUDY / "claims.md").read_text()
    assert "not run yet" not in page


def test_holm_adjustment_and_the_verdicts_follow_the_adjusted_p():
    from mdistiller_ext.reporting.claims import Claim, assess
    from mdistiller_ext.reporting.stats import holm

    # m = 4: sorted 0.01, 0.02, 0.03, 0.2 -> 0.04, 0.06, 0.06 (monotone), 0.2; a missing test stays out of the family
    assert holm([0.03, 0.01, None, 0.2, 0.02]) == pytest.approx([0.06, 0.04, None, 0.2, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []
    values = {"a": [71.0, 72.0, 73.0], "b": [70.0, 70.5, 71.0], "far": [80.0, 80.5, 81.0], "one": [70.0]}
    got = assess(values, [Claim("1", "", "a", "b", 1), Claim("2", "", "far", "b", 1), Claim("3", "", "b", "far", 0),
                          Claim("4", "", "far", "b", -1), Claim("5", "", "one", "none", 1)])
    # a vs b: d = 1.5, Welch SE = 0.645, df 2.94: p = 0.10 raw, not resolved even before adjustment
    assert got[0].p == pytest.approx(0.1045, abs=1e-3) and got[0].verdict == "not resolved"
    assert got[0].interval[0] < 0 < got[0].interval[1]
    # five comparisons in the family: the one not run yet counts too (as p = 1)
    assert got[1].verdict == "supported" and got[1].p <= got[1].p_holm <= 5 * got[1].p
    assert got[2].verdict == "contradicted (it hurts)" and got[3].verdict == "contradicted"
    assert got[4].missing == "not run yet" and got[4].verdict == "-"
    # one run of an arm is no test, however tight the other arm's seeds (they had decided claims before)
    tight = {"one": [49.39], "pair": [48.45, 48.47], "far": [80.0, 80.5, 81.0], "b": [70.0, 70.5, 71.0]}
    lone, other = assess(tight, [Claim("3b", "", "one", "pair", -1), Claim("2", "", "far", "b", 1)])
    assert lone.p is None and lone.missing == "an arm with one run" and lone.verdict == "not resolved"
    assert lone.d == pytest.approx(49.39 - 48.46)
    # the untested comparison still counts in the family written down (as p = 1): two comparisons, not one
    assert other.p_holm == pytest.approx(min(1.0, 2 * other.p))
    # diagnostics are a family of their own: adding one does not weaken the claims
    alone = assess(values, [Claim("2", "", "far", "b", 1)])[0].p_holm
    beside = assess(values, [Claim("2", "", "far", "b", 1), Claim("d", "", "a", "b", 1, "diagnostics")])[0].p_holm
    assert alone == beside


def test_probe_summary_counts_conflicting_measurements(tmp_path, claims):
    from mdistiller_ext.reporting import aggregate
    from mdistiller_ext.runs.worklog import best_line, epoch_block

    runs = []
    for seed, rows in enumerate([[(1, 0.5), (1, -0.25), (2, 0.25)], [(1, 0.75), (2, float("nan")), (2, -0.5)]]):
        d = tmp_path / f"kd{seed}"
        d.mkdir()
        (d / "worklog.txt").write_text(epoch_block(1, 0.05, {"test_acc": 50.0}) + epoch_block(2, 0.05, {"test_acc": 60.0})
                                       + best_line(60.0))
        (d / "grad_probe.csv").write_text("epoch,step,global_step,cos,norm_ratio\n" +
                                          "".join(f"{e},0,0,{c},1.0\n" for e, c in rows))
        runs.append(aggregate.read_run(str(d)))
    lines = claims.probe_lines({"KD": runs})
    # epoch 1: 0.5, -0.25, 0.75 (mean 0.33); epoch 2: 0.25, -0.5 (NaN dropped; mean -0.12); 2 of 5 below 0
    assert "| KD | 5 | 0.33 | -0.12 | 2 (40.0%) | -0.50 |" in lines
    assert lines[-1].startswith("All arms together: 5 distinct measurements") and lines[-1].endswith("2 with cos < 0.")
    # another arm's run of seed 0 measuring the same first state: its measurement counts once across arms
    d = tmp_path / "same_state"
    d.mkdir()
    (d / "worklog.txt").write_text(epoch_block(1, 0.05, {"test_acc": 50.0}) + best_line(50.0))
    (d / "grad_probe.csv").write_text("epoch,step,global_step,cos,norm_ratio\n1,0,0,-0.25,1.0\n")
    lines = claims.probe_lines({"KD": runs, "KD + alignment": [aggregate.read_run(str(d))]})
    assert "| KD + alignment | 1 | -0.25 | -0.25 | 1 (100.0%) | -0.25 |" in lines
    assert lines[-1].startswith("All arms together: 5 distinct measurements") and lines[-1].endswith("2 with cos < 0.")


def test_run_table_sums_cost_segments_and_names_missing_epochs(tmp_path, claims):
    import json

    from mdistiller_ext.reporting import aggregate
    from mdistiller_ext.runs import provenance
    from mdistiller_ext.runs.worklog import best_line, epoch_block

    runs = {}
    for name, segments, resumed in (
            ("whole", [{"epochs": [1, 1], "wall_s": 60.0, "cpu_s": 54.0}, {"epochs": [2, 3], "wall_s": 126.0, "cpu_s": 120.0}],
             [{"mdistiller_ext_commit": "bbbbbbbbbbbb"}]),
            ("part", [{"epochs": [3, 3], "wall_s": 30.0, "cpu_s": 30.0}], [])):
        d = tmp_path / name
        d.mkdir()
        # "whole" read the teacher from the cache (filled during epoch 1), "part" had no teacher-logit cache
        hits = {1: 10.0, 2: 100.0, 3: 100.0} if name == "whole" else {}
        (d / "worklog.txt").write_text("".join(epoch_block(e, 0.05, {"test_acc": a, **({"teacher_cache_hit": hits[e]}
                                                                                        if hits else {})})
                                               for e, a in ((1, 50.0), (2, 61.0), (3, 60.5))) + best_line(61.0))
        (d / "runtime.json").write_text(json.dumps({"cost": segments, "cpu_threads": 1, "resumed": resumed,
                                                    "mdistiller_ext_commit": "aaaaaaaaaaaa"}))
        runs[name] = [aggregate.read_run(str(d))]
    assert provenance.cost_of(provenance.read(str(tmp_path / "whole"))) == {"cpu_s": 174.0, "wall_s": 186.0,
                                                                             "epochs": {1, 2, 3}}
    assert provenance.cost_of({}) is None
    lines = claims.run_lines(runs)
    assert "| part | None | 61.00 (2) | 60.50 | - | 0.5 (2 of 3 epochs not recorded) |" in lines[-2]
    assert lines[-1] == "| whole | None | 61.00 (2) | 60.50 | 70.0% | 2.9 | 3.1 | 1 | aaaaaaa, bbbbbbb |"


STUDY100 = ROOT / "docs" / "cifar100_study"


def _study100(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"study100_{name}", STUDY100 / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar100_study_configs_are_what_make_configs_writes_and_change_only_documented_keys():
    make = _study100("make_configs")
    common = COMMON | {"EXT.GRAD_PROBE_EVERY", "EXT.TEACHER_CKPT"}
    allowed = {"vanilla_resnet8": COMMON | {"DISTILLER.STUDENT", "EXT.EXPORT_TEACHER", "EXT.GRAD_PROBE_EVERY"},
               "kd": common, "dhkd": common, "dkd": common | {"DKD.WARMUP"}, "aekt": common | {"AEKT.WARMUP"},
               "dhkd_one_head_bkl": common | {"DHKD.HEAD", "DHKD.LOSS"},
               "dhkd_one_head_bkl_norm": common | {"DHKD.HEAD", "DHKD.LOSS"},
               "dhkd_align": common | {"SOLVER.TRAINER"}, "reviewkd": common | {"REVIEWKD.WARMUP_EPOCHS"},
               "crd": common, "dist": common, "ttm": common,
               "kd_logit_stand": common | {"KD.LOGIT_STAND", "KD.TEMPERATURE", "KD.LOSS.KD_WEIGHT"}}
    assert set(make.CONFIGS) == set(allowed)
    for name, (shipped, _, _) in make.CONFIGS.items():
        path = STUDY100 / "configs" / f"{name}.yaml"
        assert path.read_text() == make.render(name), f"{name}: run docs/cifar100_study/make_configs.py"
        ours = flat_config(load_config(str(path), []))
        base = flat_config(load_config(str(ROOT / "configs" / "cifar100" / f"{shipped}.yaml"), []))
        changed = {k for k in ours if ours[k] != base[k]}
        assert changed <= allowed[name], (name, changed - allowed[name])
        assert ours["SOLVER.EPOCHS"] == 15 and ours["SOLVER.LR_DECAY_STAGES"] == [9, 11, 13]
        assert ours["SOLVER.LR"] == 0.05 and ours["SOLVER.BATCH_SIZE"] == 64 and ours["DATASET.TYPE"] == "cifar100"
        assert ours["DISTILLER.STUDENT"] == "resnet8"
        if name != "vanilla_resnet8":
            assert ours["EXT.TEACHER_CKPT"] == "../shared/teachers/cifar100/resnet20.pth"
    assert flat_config(load_config(str(STUDY100 / "configs/dkd.yaml"), []))["DKD.BETA"] == 2.0


def test_cifar100_study_sweep_plans_seed_by_seed_and_its_claims_page_is_what_the_script_writes():
    spec = yaml.safe_load((STUDY100 / "sweep.yaml").read_text())
    runs = sweep.plan_configs(spec["runs"])
    assert len(runs) == 5 * 5 + 4 * 3
    assert [r.seed for r in runs[:9]] == [0] * 9 and [r.seed for r in runs[-10:]] == [3] * 5 + [4] * 5
    assert all(r.run_dir.startswith("docs/cifar100_study/runs/") for r in runs)
    baselines = sweep.plan_configs(yaml.safe_load((STUDY100 / "sweep_baselines.yaml").read_text())["runs"])
    assert [r.name for r in baselines] == ["crd,resnet20,resnet8", "kd_logit_stand,resnet20,resnet8",
                                           "dist,resnet20,resnet8", "ttm,resnet20,resnet8"]
    claims = _study100("claims")
    assert claims.report() == (STUDY100 / "claims.md").read_text()
    # every claim names arms the sweep runs
    arms = set(claims.ARMS.values())
    assert all(c.a in arms and c.b in arms for c in claims.CLAIMS)


def test_claims_figure_draws_every_claim_that_has_runs_with_its_interval(tmp_path):
    from PIL import Image

    from mdistiller_ext.reporting.claims import Claim, assess, plot_claims

    best = {"a": [71.0, 72.0, 73.0], "b": [70.0, 70.5, 71.0], "one": [69.0]}
    last = {"a": [70.8, 71.9, 72.7], "b": [69.9, 70.5, 70.8], "one": [68.7]}
    claims = [Claim("1", "", "a", "b", 1), Claim("2", "", "one", "b", -1), Claim("3", "", "a", "absent", 1)]
    path = tmp_path / "claims.png"
    drawn = plot_claims(best, last, claims, str(path), "a study")
    with Image.open(path) as im:
        assert im.size[0] == 1300 and im.size[1] > 300
    # the claim not run yet is not drawn; the one-run arm is drawn without an interval; the drawn intervals are
    # the page's (assessed on each epoch on its own)
    assert [(c, e) for c, e, _, _ in drawn] == [("2", "best"), ("2", "last"), ("1", "best"), ("1", "last")]
    by = {(c, e): (d, ci) for c, e, d, ci in drawn}
    assert by[("2", "best")] == (pytest.approx(69.0 - 70.5), None)
    for epoch, values in (("best", best), ("last", last)):
        expected = assess(values, claims)[0]
        assert by[("1", epoch)][0] == pytest.approx(expected.d)
        assert by[("1", epoch)][1] == pytest.approx(expected.interval)


def test_cifar100_side_by_side_gains_and_their_figure(tmp_path):
    """The side-by-side table's gains and cifar10_vs_cifar100.png: each shared arm's mean minus its own study's
    CE-only mean, with Welch's interval; an arm with one run gets its difference and no interval."""
    from PIL import Image

    from mdistiller_ext.reporting.claims import Claim, assess

    claims = _study100("claims")
    c10 = ({"CE-only student": [78.0, 78.5, 79.0], "KD": [80.0, 81.0, 80.5], "DKD": [81.0]},
           {"CE-only student": [77.9, 78.4, 78.8], "KD": [79.8, 80.9, 80.4], "DKD": [80.9]})
    c100 = ({"CE-only student": [48.0, 49.0], "KD": [50.5, 51.0, 50.0], "DKD": [53.0, 54.0], "ReviewKD": [55.0]},
            {"CE-only student": [47.9, 48.8], "KD": [50.4, 50.9, 49.7], "DKD": [52.8, 53.9], "ReviewKD": [54.9]})
    g = claims.gains(c100[0])
    expected = assess(c100[0], [Claim("x", "", "KD", "CE-only student", 1)])[0]
    assert g["KD"].d == pytest.approx(50.5 - 48.5) and g["KD"].interval == pytest.approx(expected.interval)
    assert claims.gain_text(g["ReviewKD"]) == "+6.50 (one run)" and claims.gain_text(None) == "-"
    lo, hi = expected.interval
    assert claims.gain_text(g["KD"]) == f"+2.00 [{lo:+.2f}, {hi:+.2f}]"
    path = tmp_path / "side.png"
    drawn = claims.plot_side_by_side(c100, c10, str(path))
    with Image.open(path) as im:
        assert im.size[0] == 1100
    # only the arms both studies ran (not ReviewKD), in the page's order, both datasets on both epochs
    assert [(a, d, e) for a, d, e, _, _ in drawn] == [(a, d, e) for e in ("best", "last") for d in ("CIFAR-10", "CIFAR-100")
                                                      for a in ("KD", "DKD")]
    by = {(a, d, e): (x, ci) for a, d, e, x, ci in drawn}
    assert by[("DKD", "CIFAR-10", "best")] == (pytest.approx(81.0 - 78.5), None)
    assert by[("DKD", "CIFAR-100", "last")][0] == pytest.approx((52.8 + 53.9) / 2 - (47.9 + 48.8) / 2)
    assert by[("KD", "CIFAR-100", "best")][1] == pytest.approx(expected.interval)
    # a study without its CE-only runs has no gains to draw (and no error)
    no_base = tuple({k: v for k, v in epoch.items() if k != "CE-only student"} for epoch in c100)
    assert claims.plot_side_by_side(no_base, c10, str(tmp_path / "none.png")) == []


def test_cifar100_baseline_rows_set_beside_the_same_seed_runs_and_the_arms_seed_ranges():
    """A baseline's single-seed row: its difference from KD's and DKD's run of its own seed on both epochs, and
    the study arms (two runs or more) whose best-epoch min-max range holds its best top-1."""
    from mdistiller_ext.reporting import aggregate

    claims = _study100("claims")

    def run(seed, best, last, epoch=15):
        return aggregate.RunResult(path="-", dataset="cifar100", method="m", pair="p", seed=seed, status="finished",
                                   best_epoch=epoch, best_top1=best, last_top1=last)

    runs = {"KD": [run(0, 50.7, 50.5), run(1, 50.9, 50.8)], "DKD": [run(1, 53.9, 53.6), run(0, 53.4, 53.2)],
            "AEKT": [run(0, 52.0, 51.9), run(1, 53.0, 52.7)], "ReviewKD": [run(0, 52.1, 52.0)]}
    assert claims.baseline_lines({}, runs)[-1] == "No baseline run has finished yet (CRD, KD + LS, DIST, TTM: queued)."
    lines = claims.baseline_lines({"DIST": [run(0, 52.5, 52.1, 14)], "CRD": [run(2, 50.8, 50.0)]}, runs)
    # in BASELINES' order; a seed the reference arms lack gets no difference; one-run arms give no range
    assert lines[-6].startswith("| baseline | seed | best top-1 (epoch) | last top-1 | minus KD, same seed | minus DKD")
    assert lines[-4] == "| CRD | 2 | 50.80 (15) | 50.00 | - | - | KD |"
    assert lines[-3] == "| DIST | 0 | 52.50 (14) | 52.10 | +1.80 / +1.60 | -0.90 / -1.10 | AEKT |"
    assert lines[-1] == "Not finished yet: KD + LS, TTM."
    assert claims.baseline_lines({"TTM": [run(0, 40.0, 39.0)]}, runs)[-3].endswith("| none |")


def _arm_tables(text: str):
    """Every table of a page whose header starts '| arm | best epoch | last epoch | seeds', as lists of
    (label, best, last, seeds) rows."""
    import re

    tables, rows = [], None
    for line in text.splitlines():
        if line.startswith("| arm | best epoch | last epoch | seeds"):
            rows = []
            tables.append(rows)
        elif rows is not None and line.startswith("|") and not line.startswith("|---"):
            m = re.match(r"\| (.+?) \| ([\d.]+ ± [\d.]+) \| ([\d.]+ ± [\d.]+) \| (\d+) \|", line)
            assert m, f"unreadable row: {line}"
            rows.append(m.groups())
        elif not line.startswith("|"):
            rows = None
    return tables


def _claims_arms(path):
    """(best, last, seeds) of every arm with more than one run on a generated claims page."""
    import re

    return {(m.group(1), m.group(3), m.group(2)) for m in
            (re.match(r"\| .+? \| ([\d.]+ ± [\d.]+) \(n=(\d+)\) \| ([\d.]+ ± [\d.]+) \(n=\d+\) \| [+-][\d.]+ \|$", line)
             for line in path.read_text().splitlines()) if m}


def test_the_readmes_arm_tables_are_the_claims_pages_numbers():
    """The hand-written tables of the README and of both study pages quote their claims.md (generated from the
    committed runs) exactly: an arm's best and last epoch and its number of seeds."""
    c10 = _claims_arms(ROOT / "docs" / "cifar10_study" / "claims.md")
    c100 = _claims_arms(STUDY100 / "claims.md")
    assert len(c10) >= 7 and len(c100) == 9
    pages = [(ROOT / "README.md", [c10, c100]), (ROOT / "docs" / "cifar10_study" / "README.md", [c10]),
             (STUDY100 / "README.md", [c100])]
    for page, claims in pages:
        tables = _arm_tables(page.read_text())
        assert len(tables) == len(claims), page
        for rows, arms in zip(tables, claims):
            for label, best, last, seeds in rows:
                assert (best, last, seeds) in arms, f"{page.name}: {label} {best} / {last} (n={seeds}) is not in claims.md"


def test_the_study_readme_quotes_the_side_by_side_table_of_its_claims_page():
    """The CIFAR-10 / CIFAR-100 table in the study's README is claims.md's, row for row."""
    readme = (STUDY100 / "README.md").read_text().splitlines()
    claims = (STUDY100 / "claims.md").read_text().splitlines()

    def table(lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("| arm | CIFAR-10 best"))
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
        return lines[start:end]

    assert len(table(claims)) >= 4 and table(readme) == table(claims)
