"""Baseline grid: ReviewKD and CRD settings derived from the models' feature shapes."""
import pytest
import yaml

from mdistiller_ext.methods.feature_shapes import crd_settings, reviewkd_settings
from mdistiller_ext.recipes import CIFAR100_PAIRS, IMAGENET_PAIRS

from .conftest import ROOT


def load(rel):
    return yaml.safe_load((ROOT / "configs" / rel).read_text())


@pytest.mark.parametrize("pair", sorted(CIFAR100_PAIRS))
def test_reviewkd_cifar_settings_match_host_feature_shapes(pair, cifar_facts):
    p = CIFAR100_PAIRS[pair]
    s, t = cifar_facts[p.student]["forward"]["feats"], cifar_facts[p.teacher]["forward"]["feats"]
    expected = reviewkd_settings(s, t, stu_preact=False)
    got = load(f"cifar100/reviewkd/{pair}.yaml")["REVIEWKD"]
    for key, value in expected.items():
        assert got[key] == value, key
    # every level pairs a student map with a teacher map, from the pooled feature (1x1) upwards
    assert len(got["IN_CHANNELS"]) == len(got["OUT_CHANNELS"]) == len(got["SHAPES"]) == len(got["OUT_SHAPES"])
    assert got["SHAPES"][0] == got["OUT_SHAPES"][0] == 1
    assert got["IN_CHANNELS"][-1] == s["pooled_feat"][1] and got["OUT_CHANNELS"][-1] == t["pooled_feat"][1]
    assert load(f"cifar100/crd/{pair}.yaml")["CRD"]["FEAT"] == crd_settings(s, t)


def test_reviewkd_reproduces_the_hosts_own_settings(cifar_facts, imagenet_facts):
    # mdistiller's defaults are for res32x4 -> res8x4; its ImageNet configs give the other two
    got = load("cifar100/reviewkd/res32x4_res8x4.yaml")["REVIEWKD"]
    assert (got["SHAPES"], got["OUT_SHAPES"], got["IN_CHANNELS"], got["OUT_CHANNELS"]) == \
        ([1, 8, 16, 32], [1, 8, 16, 32], [64, 128, 256, 256], [64, 128, 256, 256])
    r18 = load("imagenet/r34_r18/reviewkd.yaml")["REVIEWKD"]
    assert (r18["SHAPES"], r18["IN_CHANNELS"], r18["OUT_CHANNELS"], r18["STU_PREACT"]) == \
        ([1, 7, 14, 28, 56], [64, 128, 256, 512, 512], [64, 128, 256, 512, 512], True)
    mv1 = load("imagenet/r50_mv1/reviewkd.yaml")["REVIEWKD"]
    assert (mv1["IN_CHANNELS"], mv1["OUT_CHANNELS"], mv1["MAX_MID_CHANNEL"], mv1["REVIEWKD_WEIGHT"]) == \
        ([128, 256, 512, 1024, 1024], [256, 512, 1024, 2048, 2048], 256, 8.0)
    for pair, p in IMAGENET_PAIRS.items():
        s, t = imagenet_facts[p.student]["forward"]["feats"], imagenet_facts[p.teacher]["forward"]["feats"]
        got = load(f"imagenet/{pair}/reviewkd.yaml")["REVIEWKD"]
        assert {k: got[k] for k in ("IN_CHANNELS", "SHAPES", "OUT_CHANNELS", "OUT_SHAPES")} == \
            {k: v for k, v in reviewkd_settings(s, t, True).items() if k != "STU_PREACT"}


def test_student_without_preact_features_falls_back():
    s = {"feats": [[2, 8, 16, 16], [2, 16, 8, 8]], "pooled_feat": [2, 32]}
    t = {"feats": [[2, 8, 16, 16], [2, 16, 8, 8]], "preact_feats": [[2, 8, 16, 16], [2, 16, 8, 8]], "pooled_feat": [2, 64]}
    out = reviewkd_settings(s, t, stu_preact=True)
    assert out["STU_PREACT"] is False and out["IN_CHANNELS"] == [16, 32] and out["OUT_SHAPES"] == [1, 8]
    with pytest.raises(ValueError):
        reviewkd_settings({"feats": [], "pooled_feat": [2, 4]}, t, False)
