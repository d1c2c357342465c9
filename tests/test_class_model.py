"""Class model visualisation (Section 2 of the paper): core maths, batching, runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from wsol_bench.data.synsets import default_synsets
from wsol_bench.figures.grid import save_grid, save_images
from wsol_bench.visualisation.class_model import (
    class_model_images,
    resolve_classes,
    to_rgb,
)

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
REPO = Path(__file__).resolve().parent.parent


def tiny_net(num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A small random ConvNet (eval mode) for 16x16 inputs, with logits sensitive to the input."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, num_classes),
    ).eval()
    nn.init.normal_(net[-1].weight, std=0.3)
    return net


def test_linear_model_converges_to_closed_form() -> None:
    """For S_c(I) = w_c.I + b_c the optimum of S_c - l2 ||I||^2 is I* = w_c / (2 l2)."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    l2 = 0.5
    res = class_model_images(lin, [1, 3], MEAN, STD, size=8, l2=l2, lr=0.5, steps=60)
    expected = lin[1].weight.detach()[[1, 3]].view(2, 3, 8, 8) / (2 * l2)
    torch.testing.assert_close(res.inputs, expected, atol=1e-5, rtol=1e-4)
    # the objective rises monotonically on this concave problem
    for _, h in res.history.groupby("k"):
        assert (h["objective"].diff().dropna() >= -1e-6).all()


def test_score_rises_and_l2_keeps_image_bounded() -> None:
    net = tiny_net()
    params = [p.detach().clone() for p in net.parameters()]
    net.train()  # the function must switch to eval (batch independence) and restore the mode
    runs = {l2: class_model_images(net, [0, 4, 7], MEAN, STD, size=16, l2=l2, lr=0.5, steps=40) for l2 in (0.01, 1.0)}
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))
    h = runs[0.01].history
    assert set(h.columns) >= {"step", "k", "class_index", "score", "objective", "l2_norm", "prob"}
    assert len(h) == 3 * 41
    first, last = h[h.step == 0].set_index("k"), h[h.step == 40].set_index("k")
    assert (last["score"] > first["score"] + 10.0).all()
    assert (last["prob"] > first["prob"]).all()
    assert (first["l2_norm"] == 0).all()  # starts from the zero image (the mean colour)
    scores = h.pivot(index="step", columns="k", values="score")
    assert (scores.diff().dropna() > 0).to_numpy().mean() > 0.9  # rises (almost) every step
    # a strong penalty keeps the image small: its norm settles instead of growing
    strong = runs[1.0].history.pivot(index="step", columns="k", values="l2_norm")
    assert (strong.loc[40] < 0.1 * last["l2_norm"]).all()
    torch.testing.assert_close(torch.tensor(strong.loc[40].to_numpy()), torch.tensor(strong.loc[30].to_numpy()),
                               atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="diverges"):
        class_model_images(net, [0], MEAN, STD, size=16, l2=1.0, lr=2.0, steps=1)


def test_deterministic_given_seed_and_batch_independent() -> None:
    net = tiny_net()
    kw = dict(size=16, l2=0.05, lr=1.0, steps=12, jitter=3, blur_every=4, blur_sigma=0.7)
    a = class_model_images(net, [2, 5, 9], MEAN, STD, seed=3, **kw)
    b = class_model_images(net, [2, 5, 9], MEAN, STD, seed=3, **kw)
    c = class_model_images(net, [2, 5, 9], MEAN, STD, seed=4, **kw)
    assert torch.equal(a.inputs, b.inputs)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert not torch.equal(a.inputs, c.inputs)  # the seed drives the jitter
    single = class_model_images(net, [5], MEAN, STD, seed=3, **kw)  # one class alone
    torch.testing.assert_close(single.inputs[0], a.inputs[1], atol=1e-4, rtol=1e-4)
    assert single.history["class_index"].unique().tolist() == [5]


def test_to_rgb_adds_the_mean_back() -> None:
    zero = torch.zeros(2, 3, 4, 4)
    torch.testing.assert_close(to_rgb(zero, MEAN, STD), torch.tensor(MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4))
    x = torch.randn(2, 3, 16, 16) * 5
    for mode in ("clip", "stretch"):
        y = to_rgb(x, MEAN, STD, mode)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError):
        to_rgb(x, MEAN, STD, "nope")


def test_resolve_classes_sorted_wnid_order() -> None:
    goose, husky, idx = resolve_classes(["n01855672", "n02110185", "5"])
    assert (goose.index, goose.name) == (99, "goose")
    assert (husky.index, husky.name) == (250, "Siberian husky")
    assert idx.index == 5 and idx.wnid == default_synsets().wnids[5]
    assert resolve_classes(["1234"])[0].name == "class 1234"
    with pytest.raises(KeyError):
        resolve_classes(["n99999999"])


def test_grid_and_images_are_written(tmp_path: Path) -> None:
    imgs = torch.rand(3, 3, 16, 16)
    paths = save_images(imgs, [tmp_path / f"{i}.png" for i in range(3)])
    assert all(p.is_file() for p in paths)
    grid = save_grid(imgs, ["a", "b", "c"], tmp_path / "grid.png", columns=2, suptitle="t")
    assert grid.stat().st_size > 1000


def test_runner_writes_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``task=class_model`` end to end through the Hydra config, with a tiny stand-in model."""
    from hydra import compose, initialize_config_dir

    from wsol_bench.config import register_configs
    from wsol_bench.tasks import class_model as runner

    monkeypatch.chdir(tmp_path)
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "task=class_model", "model=custom", "model.factory=tests.test_class_model:tiny_net", "model.device=cpu",
            "class_model.classes=[n01855672,n02110185]", "class_model.steps=5",
            "class_model.size=16", "class_model.lr=0.5",
        ])
    summary = runner.run(cfg)
    out = tmp_path / "outputs" / "class_model"
    assert summary["classes"] == 2
    assert sorted(p.name for p in (out / "class_model").iterdir()) == [
        "00_n01855672_goose.png", "01_n02110185_siberian_husky.png"]
    for name in ("class_model_grid.png", "class_model_grid_clip.png", "class_model_history.csv"):
        assert (out / name).is_file()
    hist = pd.read_csv(out / "class_model_history.csv")
    assert hist["name"].unique().tolist() == ["goose", "Siberian husky"]
    assert hist["step"].max() == 5
    saved = torch.load(out / "class_model_inputs.pt", weights_only=True)
    assert saved["inputs"].shape == (2, 3, 16, 16)


@pytest.mark.slow
def test_embedded_efficientnet_cli(tmp_path: Path) -> None:
    """The real CLI with the embedded EfficientNet-Lite0: the class score rises."""
    cmd = [sys.executable, "-m", "wsol_bench", "task=class_model", "model.device=cpu",
           "class_model.classes=[n01518878]", "class_model.steps=40", "class_model.size=128",
           f"hydra.run.dir={tmp_path}"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=300)
    hist = pd.read_csv(tmp_path / "class_model_history.csv")
    assert hist["score"].iloc[-1] > hist["score"].iloc[0] + 5.0
    assert (tmp_path / "class_model_grid.png").is_file()
