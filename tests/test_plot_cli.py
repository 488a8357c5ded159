"""``flruntime plot``: PNG files of a simulator workspace and of a downloaded federation job, checked through the
figures before saving, the PNG header and the ``flruntime`` text chunk each PNG carries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flruntime.cli.main import main
from flruntime.plot_job import MEAN_LABEL, job_plots, read_job_results
from flruntime.plots import png_info, png_size, png_text
from flruntime.runtime.simulator import simulate
from flruntime.templates import create_job

SITES = ["site-1", "site-2"]
FEDAVG_TAGS = {
    "val_acc_global_model",
    "val_acc_local_model",
    "train_loss",
    "learning_rate",
    "diff_norm",
    "global_round",
    "global_epoch",
}


def run_plot(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    code = main(["plot", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def assert_png(path: Path) -> dict:
    assert path.is_file() and path.stat().st_size > 0
    width, height = png_size(path)
    assert width > 100 and height > 100
    return png_info(path)


@pytest.fixture(scope="module")
def sim_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plot_sim")
    job = create_job("fedavg_pt", root / "job", overrides={"num_rounds": 2, "num_sites": 2})
    result = simulate(job, n_clients=2, workspace=root / "ws", progress=None)
    assert result.ok, result.error
    return root / "ws"


@pytest.mark.slow
def test_a_simulator_workspace_from_its_mlflow_store(sim_ws: Path, tmp_path: Path, capsys):
    code, out, err = run_plot([str(sim_ws), "-o", str(tmp_path / "plots")], capsys)
    assert code == 0, err
    expected = sorted(f"curve_{tag}.png" for tag in FEDAVG_TAGS) + ["cross_site_validation.png"]
    assert sorted(Path(line).name for line in out) == sorted(expected)
    assert all(Path(line).parent == tmp_path / "plots" for line in out)

    results = read_job_results(sim_ws)
    assert results.sources == ["server/mlflow.db", "server/cross_site_val/cross_val_results.json"]
    figures = {p.name: p.figure for p in job_plots(results)}
    for tag in FEDAVG_TAGS:
        name = f"curve_{tag}.png"
        ax = figures[name].axes[0]
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (tag, "step", tag)
        assert [line.get_label() for line in ax.get_lines()] == SITES
        assert [list(line.get_xdata()) for line in ax.get_lines()] == [[0.0, 1.0], [0.0, 1.0]]
        info = assert_png(tmp_path / "plots" / name)
        assert png_size(tmp_path / "plots" / name) == (700, 450)
        assert info["title"] == tag and png_text(tmp_path / "plots" / name)["Title"] == tag
        assert info["axes"] == [
            {"title": tag, "xlabel": "step", "ylabel": tag, "lines": {"site-1": 2, "site-2": 2}, "texts": []}
        ]

    matrix = json.loads((sim_ws / "server/cross_site_val/cross_val_results.json").read_text())
    heatmap = tmp_path / "plots" / "cross_site_validation.png"
    info = assert_png(heatmap)
    width, height = figures["cross_site_validation.png"].get_size_inches() * 100
    assert png_size(heatmap) == (round(width), round(height))
    [axes] = info["axes"]
    assert (axes["title"], axes["xlabel"], axes["ylabel"]) == ("val_acc", "model", "data site")
    assert axes["texts"] == [
        f"{matrix[site][model]['val_acc']:.4g}" for site in sorted(matrix) for model in sorted(matrix[site])
    ]
    assert len(axes["texts"]) == 2 * 4  # 2 data sites x (2 site models + 2 server models)


@pytest.mark.slow
def test_a_simulator_workspace_without_mlflow_uses_results_json(sim_ws: Path, tmp_path: Path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(sim_ws / "results.json", ws / "results.json")
    code, out, err = run_plot([str(ws)], capsys)
    assert code == 0, err
    assert out == [str(ws / "plots" / "curve_val_acc.png")]
    rounds = json.loads((ws / "results.json").read_text())["round_metrics"]
    info = png_info(ws / "plots" / "curve_val_acc.png")
    assert info["axes"][0]["lines"] == {MEAN_LABEL: len(rounds)} and info["axes"][0]["xlabel"] == "step"


def write_federation_download(root: Path, *, stats: bool = True) -> Path:
    """A job folder as `flruntime job download` writes it, with 3 rounds of metrics for two sites."""
    root.mkdir(parents=True)
    (root / "log.txt").write_text("2026-01-01 00:00:00 INFO job: round 0 started\n")
    lines = []
    t0 = 1_700_000_000.0
    for step in range(3):
        for k, site in enumerate(SITES, start=1):
            t = t0 + 10 * step + k
            lines.append({"site": site, "tag": "train_loss", "value": 1.0 / (step + k), "step": step, "time": t})
            lines.append({"site": site, "tag": "val/acc", "value": 0.5 + 0.1 * step, "step": step, "time": t})
    for step in range(4):  # system metrics as the server turns them into tracking records
        for site in SITES:
            t = t0 + 5 * step
            lines.append({"site": site, "tag": "system/cpu_percent", "value": 20.0 + step, "step": step, "time": t})
            lines.append({"site": site, "tag": "system/rss_mib", "value": 300.0 + step, "step": step, "time": t})
    (root / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"cut sho')
    if stats:
        for n, site in enumerate(SITES, start=2):
            folder = root / "sites" / site
            folder.mkdir(parents=True)
            samples = [
                {"time": t0 + i, "cpu_percent": 10.0 * i, "rss_mib": 200.0 + i, "mem_percent": 40.0} for i in range(n)
            ]
            (folder / "stats.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
            (folder / "log.txt").write_text("a site's log\n")
    matrix = {
        site: {model: {"val_acc": 0.25 * (i + 1) + 0.1 * j} for j, model in enumerate([*SITES, "SRV_FL_global_model"])}
        for i, site in enumerate(SITES)
    }
    (root / "cross_site_val").mkdir()
    (root / "cross_site_val" / "cross_val_results.json").write_text(json.dumps(matrix))
    return root


def test_a_downloaded_federation_job(tmp_path: Path, capsys):
    job = write_federation_download(tmp_path / "job")
    code, out, err = run_plot([str(job), "-o", str(tmp_path / "out")], capsys)
    assert code == 0, err
    names = ["curve_train_loss.png", "curve_val_acc.png", "system_metrics.png", "cross_site_validation.png"]
    assert out == [str(tmp_path / "out" / name) for name in names]

    for name, tag in (("curve_train_loss.png", "train_loss"), ("curve_val_acc.png", "val/acc")):
        info = assert_png(tmp_path / "out" / name)
        assert png_size(tmp_path / "out" / name) == (700, 450)
        assert info["axes"] == [
            {"title": tag, "xlabel": "step", "ylabel": tag, "lines": {"site-1": 3, "site-2": 3}, "texts": []}
        ]

    system = assert_png(tmp_path / "out" / "system_metrics.png")
    assert png_size(tmp_path / "out" / "system_metrics.png") == (800, 640)  # 8 x (1.2 + 2.6 per panel) inches
    assert system["title"] == "system metrics per site"
    assert [(a["ylabel"], a["lines"]) for a in system["axes"]] == [
        ("CPU %", {"site-1": 2, "site-2": 3}),  # from sites/<site>/stats.jsonl: 2 and 3 samples
        ("RSS MiB", {"site-1": 2, "site-2": 3}),
    ]
    assert system["axes"][-1]["xlabel"] == "seconds since the first sample"

    heat = assert_png(tmp_path / "out" / "cross_site_validation.png")
    [axes] = heat["axes"]
    assert (axes["title"], axes["xlabel"], axes["ylabel"]) == ("val_acc", "model", "data site")
    assert axes["texts"] == ["0.45", "0.25", "0.35", "0.7", "0.5", "0.6"]  # columns sorted: SRV_..., site-1, site-2

    results = read_job_results(job)
    assert results.sources == [
        "metrics.jsonl",
        "sites/site-1/stats.jsonl",
        "sites/site-2/stats.jsonl",
        "cross_site_val/cross_val_results.json",
    ]
    assert results.system["cpu_percent"]["site-2"] == [(0.0, 0.0), (1.0, 10.0), (2.0, 20.0)]
    fig = {p.name: p.figure for p in job_plots(results)}["curve_val_acc.png"]
    assert [list(line.get_ydata()) for line in fig.axes[0].get_lines()] == [[0.5, 0.6, 0.7]] * 2


def test_system_metrics_from_the_metrics_file_when_the_sites_folder_is_missing(tmp_path: Path, capsys):
    job = write_federation_download(tmp_path / "job", stats=False)
    code, out, err = run_plot([str(job)], capsys)
    assert code == 0, err
    info = png_info(job / "plots" / "system_metrics.png")
    assert [(a["ylabel"], a["lines"]) for a in info["axes"]] == [
        ("CPU %", {"site-1": 4, "site-2": 4}),
        ("RSS MiB", {"site-1": 4, "site-2": 4}),
    ]
    results = read_job_results(job)
    assert results.system["rss_mib"]["site-1"] == [(0.0, 300.0), (5.0, 301.0), (10.0, 302.0), (15.0, 303.0)]


def test_a_folder_with_nothing_to_plot_exits_1_and_a_missing_one_2(tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "log.txt").write_text("nothing here\n")
    (empty / "cross_site_val").mkdir()
    (empty / "cross_site_val" / "cross_val_results.json").write_text("{}")
    code, out, err = run_plot([str(empty)], capsys)
    assert (code, out) == (1, [])
    assert err == [
        f"flruntime: error: {empty}: nothing to plot (no metrics.jsonl, MLflow store or results.json with metrics, "
        "no sites/*/stats.jsonl, no cross_site_val/cross_val_results.json)"
    ]
    assert not (empty / "plots").exists()

    code, out, err = run_plot([str(tmp_path / "missing")], capsys)
    assert (code, out, err) == (2, [], [f"flruntime: error: {tmp_path / 'missing'}: no such folder"])
