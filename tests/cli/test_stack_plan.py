from pathlib import Path

import pytest
from omost_cli.dotenv import read_dotenv
from omost_cli.stack_plan import CPU_DEFAULTS, GPU_DEFAULTS, plan_stack


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
