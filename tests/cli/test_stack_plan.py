import os
from pathlib import Path

import pytest
from omost_cli.dotenv import read_dotenv
from omost_cli.local_stack import build_processes
from omost_cli.stack_plan import CPU_DEFAULTS, GPU_DEFAULTS, StackPlan, plan_stack


def test_plan_without_gpu_uses_cpu_models_and_says_so() -> None:
    plan = plan_stack({}, {}, gpus=0)
    for name, value in CPU_DEFAULTS.items():
        assert plan.env[name] == value
    assert plan.uses_cpu_defaults
    assert plan.redis_url is None
    assert plan.env["OMOST_RENDERER_LLM_URL"] == "http://127.0.0.1:8000"


def test_plan_with_gpu_uses_real_models() -> None:
    plan = plan_stack({}, {}, gpus=2)
    assert plan.env["OMOST_RENDERER_MODEL"] == GPU_DEFAULTS["OMOST_RENDERER_MODEL"]
    assert plan.env["OMOST_LLM_MODEL"] == GPU_DEFAULTS["OMOST_LLM_MODEL"]
    assert not plan.uses_cpu_defaults
    assert plan.gpus == 2


def test_environment_wins_over_dotenv_which_wins_over_defaults() -> None:
    plan = plan_stack(
        {"OMOST_LLM_MODEL": "from-env"},
        {"OMOST_LLM_MODEL": "from-file", "OMOST_RENDERER_PORT": "9100"},
        gpus=0,
    )
    assert plan.env["OMOST_LLM_MODEL"] == "from-env"
    assert plan.renderer_port == 9100
    assert plan.renderer_url == "http://127.0.0.1:9100"
    # A model chosen by hand is not the CPU default, so no warning banner claims it is.
    assert not plan.uses_cpu_defaults


def test_configured_redis_is_used_instead_of_a_private_one() -> None:
    plan = plan_stack({"OMOST_REDIS_URL": "redis://example:6379/2"}, {}, gpus=0)
    assert plan.redis_url == "redis://example:6379/2"


@pytest.mark.parametrize("port", ["eighty", "0", "70000"])
def test_bad_port_is_refused_with_its_setting_name(port: str) -> None:
    with pytest.raises(ValueError, match="OMOST_LLM_PORT"):
        plan_stack({"OMOST_LLM_PORT": port}, {}, gpus=0)


def test_dotenv_reads_comments_quotes_and_export(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "# settings\n\nOMOST_A=1\nexport OMOST_B='two words'\nOMOST_C=\"x=y\"\n", encoding="utf-8"
    )
    assert read_dotenv(path) == {"OMOST_A": "1", "OMOST_B": "two words", "OMOST_C": "x=y"}


def test_dotenv_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_dotenv(tmp_path / "absent.env") == {}


def test_dotenv_bad_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OMOST_A=1\nnot a setting\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        read_dotenv(path)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5"])
def test_binding_beyond_loopback_needs_api_keys(host: str) -> None:
    with pytest.raises(ValueError, match="OMOST_LLM_API_KEYS and OMOST_RENDERER_API_KEYS"):
        plan_stack({"OMOST_HOST": host}, {}, gpus=0)
    keys = {"OMOST_LLM_API_KEYS": "a=0123456789abcdefgh", "OMOST_RENDERER_API_KEYS": "b=x" * 8}
    assert plan_stack({"OMOST_HOST": host, **keys}, {}, gpus=0).host == host
    assert plan_stack({"OMOST_HOST": "127.0.0.1"}, {}, gpus=0).host == "127.0.0.1"


def _workers(plan: StackPlan) -> dict[str, dict[str, str]]:
    processes = build_processes(plan, "redis://127.0.0.1:6379/0")
    return {p.name: p.env for p in processes if p.name.startswith("worker")}


def test_cpu_serves_the_tiny_sdxl_and_flux_side_by_side_with_sdxl_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_stack({}, {}, gpus=0)
    assert plan.models == ("tiny", "tiny-flux")
    assert plan.env["OMOST_RENDERER_DEFAULT_MODEL"] == "tiny"
    workers = _workers(plan)
    assert {name: env["OMOST_RENDERER_MODEL"] for name, env in workers.items()} == {
        "worker-tiny": "tiny",
        "worker-tiny-flux": "tiny-flux",
    }
    # The LLM and the two workers share the cores.
    assert {env["OMP_NUM_THREADS"] for env in workers.values()} == {
        str(max(1, (os.cpu_count() or 1) // 3))
    }


def test_a_model_chosen_alone_is_served_alone_without_the_pairs_default() -> None:
    plan = plan_stack({}, {"OMOST_RENDERER_MODEL": "tiny-flux2"}, gpus=0)
    assert plan.models == ("tiny-flux2",)
    assert "OMOST_RENDERER_DEFAULT_MODEL" not in plan.env
    assert list(_workers(plan)) == ["worker"]
    assert _workers(plan)["worker"]["OMOST_RENDERER_MODEL"] == "tiny-flux2"


def test_models_listed_by_hand_are_deduplicated_and_bounded() -> None:
    plan = plan_stack({"OMOST_RENDERER_MODELS": "tiny, tiny-flux2,tiny"}, {}, gpus=0)
    assert plan.models == ("tiny", "tiny-flux2")
    with pytest.raises(ValueError, match="at most 4"):
        plan_stack({"OMOST_RENDERER_MODELS": "a,b,c,d,e"}, {}, gpus=0)


def test_gpus_take_the_listed_models_in_turn_and_each_model_needs_one() -> None:
    models = {"OMOST_RENDERER_MODELS": "sdxl-model,flux-model"}
    plan = plan_stack(models, {}, gpus=3)
    workers = _workers(plan)
    assert {name: (env["CUDA_VISIBLE_DEVICES"], env["OMOST_RENDERER_MODEL"])
            for name, env in workers.items()} == {
        "worker-gpu0-sdxl-model": ("0", "sdxl-model"),
        "worker-gpu1-flux-model": ("1", "flux-model"),
        "worker-gpu2-sdxl-model": ("2", "sdxl-model"),
    }  # fmt: skip
    with pytest.raises(ValueError, match="2 models but there are 1 GPUs"):
        plan_stack(models, {}, gpus=1)
    assert list(_workers(plan_stack({}, {}, gpus=1))) == ["worker-gpu0"]
