"""The GPU suite's code paths in smoke mode (tiny pipelines on the CPU), and its docs section."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omost_renderer.pipelines.flux2.encoding import KLEIN_LAYERS
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer

from benchmarks import bench_gpu, gpu_models
from benchmarks.gpu_measure import MAX_CONCURRENCY, throughput
from benchmarks.gpu_report import HEADING, Row, Suite, replace_section, section


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_smoke_run_measures_every_section_and_writes_docs_only_when_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n{HEADING}\n\nold\n")
    monkeypatch.setattr(bench_gpu, "DOCS", docs)
    assert bench_gpu.main(["--smoke", "--write-docs"]) == 0
    printed = capsys.readouterr().out
    written = docs.read_text()
    assert "old" not in written
    assert "run in progress" not in written  # the last write is the finished table
    for measure in (
        "ours / plain",
        "Omost's passes / ours",
        "jobs 4: stepped together / one at a time",
        "4 jobs stepped together: p95 latency / lone render",
        "OMOST_RENDERER_CHANNELS_LAST: off / on",
        "OMOST_RENDERER_FUSE_QKV: off / on",
        "FLUX.1 2 steps: regional / stock",
        "FLUX.2 klein 2 steps: regional / stock",
        "FLUX.1 OMOST_RENDERER_FUSE_QKV: off / on",
        "FLUX.2 klein OMOST_RENDERER_FUSE_QKV: off / on",
    ):
        row = next(line for line in printed.splitlines() if line.startswith(f"| {measure}"))
        assert "not measured" not in row, row
        assert row in written
    # Device memory and syncs have nothing to count on the CPU: said, not invented.
    memory = next(line for line in printed.splitlines() if "peak device memory" in line)
    assert "not measured" in memory


def test_smoke_run_without_the_flag_leaves_the_docs_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n{HEADING}\n\nold\n")
    monkeypatch.setattr(bench_gpu, "DOCS", docs)

    def measured(scale: gpu_models.SuiteScale, budget_s: float, progress: object) -> Suite:
        suite = Suite(scale, budget_s)
        suite.add(Row("x", "1.000 s"))
        assert callable(progress)
        progress(suite)  # as a section would
        return suite

    monkeypatch.setattr(bench_gpu, "run", measured)
    assert bench_gpu.main(["--smoke"]) == 0
    assert docs.read_text() == f"# Benchmarks\n\n{HEADING}\n\nold\n"


def test_a_failing_section_is_recorded_and_the_next_runs() -> None:
    suite = Suite(gpu_models.SMOKE, 60.0)

    def out_of_memory() -> None:
        raise RuntimeError("CUDA out of memory")

    assert not suite.attempt("FLUX.1", out_of_memory)
    assert suite.attempt("FLUX.2 klein", lambda: suite.add(Row("y", "2.000 s")))
    assert suite.failures == ["FLUX.1: failed with RuntimeError: CUDA out of memory"]
    assert [row.measure for row in suite.rows] == ["y"]


def test_throughput_counts_every_job_once(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = build_tiny_renderer()
    params = gpu_models.SMOKE
    canvas = gpu_models.suite_canvas()
    render = RenderParams(width=params.sdxl_size[1], height=params.sdxl_size[0], steps=2)
    seeds: list[int] = []
    render_steps = renderer.render_steps

    def recording(canvas: object, params: RenderParams, *args: object, **kw: object) -> object:
        seeds.append(params.seed)
        return render_steps(canvas, params, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(renderer, "render_steps", recording)
    together = throughput(renderer, canvas, render, 3, batched=True)
    # Every job is rendered once, with its own seed.
    first = [render.seed + i for i in range(3)]
    assert seeds == first
    alone = throughput(renderer, canvas, render, 3, batched=False)
    assert seeds == first * 2
    for result in (together, alone):
        assert result.jobs == 3
        assert 0 < result.p50_s <= result.p95_s
        assert result.images_per_minute > 0
    # One at a time, the last job waits for the two before it.
    assert alone.p95_s > alone.p50_s
    with pytest.raises(ValueError, match="jobs must be within"):
        throughput(renderer, canvas, render, MAX_CONCURRENCY + 1, batched=True)


def test_section_is_replaced_in_place_and_appended_when_absent(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n## A\n\na\n\n{HEADING}\n\nold\n\n## B\n\nb\n")
    replace_section(docs, section([Row("x", "1.00 s")], "a GPU", ["a note"]))
    text = docs.read_text()
    assert "old" not in text
    assert (
        text.index("## A") < text.index(HEADING) < text.index("| x | 1.00 s |") < text.index("## B")
    )
    assert text.count(HEADING) == 1
    replace_section(docs, section([Row("y", None)], "a GPU", []))
    assert "| y | not measured |" in docs.read_text()
    assert "| x |" not in docs.read_text()
    bare = tmp_path / "bare.md"
    bare.write_text("# Benchmarks\n")
    replace_section(bare, section([], "a GPU", []))
    assert bare.read_text().startswith("# Benchmarks\n\n" + HEADING)


def test_budget_is_bounded() -> None:
    with pytest.raises(SystemExit):
        bench_gpu.main(["--smoke", "--budget-s", str(bench_gpu.MAX_BUDGET_S + 1)])


@pytest.mark.filterwarnings("ignore:There are modules in UNet2DConditionModel:UserWarning")
def test_full_size_models_have_the_published_shapes_and_fit_together() -> None:
    # Built on the meta device: shapes and parameter counts without memory or compute.
    sdxl = gpu_models.full_sdxl("meta", torch.float16)
    assert 2.5e9 < sum(p.numel() for p in sdxl.unet.parameters()) < 2.6e9
    encoders = sdxl.encoders
    ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    with torch.inference_mode():
        first = encoders.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        second = encoders.text_encoder_2(ids, output_hidden_states=True)
        text = torch.cat([first, second.hidden_states[-2]], dim=-1).repeat(2, 1, 1)
        added = {
            "text_embeds": second.text_embeds.repeat(2, 1),
            "time_ids": torch.zeros(2, 6, device="meta", dtype=torch.float16),
        }
        latents = torch.zeros(2, 4, 144, 112, device="meta", dtype=torch.float16)
        timestep = torch.zeros(2, device="meta")
        eps = sdxl.unet(latents, timestep, text, added_cond_kwargs=added).sample
    assert eps.shape == latents.shape
    flux = gpu_models.full_flux("meta", torch.bfloat16, regional=True)
    assert 11.8e9 < sum(p.numel() for p in flux.transformer.parameters()) < 12.0e9
    t5 = flux.encoders.text_encoder_2
    assert t5.config.d_model == flux.transformer.config.joint_attention_dim
    clip = flux.encoders.text_encoder
    assert clip.config.hidden_size == flux.transformer.config.pooled_projection_dim
    transformer, qwen, vae = gpu_models.flux2_klein_modules("meta", torch.bfloat16)
    assert 3.8e9 < sum(p.numel() for p in transformer.parameters()) < 4.0e9
    stacked = qwen.config.hidden_size * len(KLEIN_LAYERS)
    assert stacked == transformer.config.joint_attention_dim
    # 2x2 patches of the VAE's latent channels are the transformer's input features.
    assert vae.config.latent_channels * 4 == transformer.config.in_channels
