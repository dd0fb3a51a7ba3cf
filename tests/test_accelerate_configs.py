"""configs/accelerate/*.yaml, read by accelerate's own loader and checked against its launcher and plugin dataclasses
(DeepSpeed is not installed here: its configs are checked as accelerate reads them, not run)."""

from __future__ import annotations

import dataclasses

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

from ftcourse.configs import TrainingSettings, load_settings
from ftcourse.paths import configs_dir

CONFIGS = sorted((configs_dir() / "accelerate").glob("*.yaml"))
LAUNCH_OPTIONS = {action.dest for action in launch_command_parser()._actions}
KINDS = {"ddp": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP, "zero": DistributedType.DEEPSPEED}


def _deprecated(plugin: type, key: str, prefix: str = "") -> bool:
    """Whether the plugin's field for ``key`` (the launcher's name, e.g. ``fsdp_sharding_strategy``) says it is deprecated."""
    field = next((f for f in dataclasses.fields(plugin) if f.name == key.removeprefix(prefix)), None)
    return field is not None and "deprecated" in field.metadata.get("help", "").lower()


def test_every_setup_has_a_config():
    assert [p.stem for p in CONFIGS] == ["ddp", "fsdp", "fsdp_qlora", "zero2", "zero3", "zero3_qlora"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_reads_the_config(path):
    """Loaded by ``load_config_from_file`` (unknown top-level keys would raise); the type matches the file's name; the
    first comment line says when to use it; every FSDP/DeepSpeed key is a launcher option and not deprecated."""
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig) and config.num_processes >= 2 and not config.use_cpu
    assert config.distributed_type == next(kind for prefix, kind in KINDS.items() if path.stem.startswith(prefix))
    assert path.read_text(encoding="utf-8").startswith("# ")
    keys = {**(config.fsdp_config or {}), **(config.deepspeed_config or {})}
    assert set(keys) <= LAUNCH_OPTIONS, f"accelerate launch ignores these keys silently: {sorted(set(keys) - LAUNCH_OPTIONS)}"
    deprecated = [k for k in config.fsdp_config or {} if _deprecated(FullyShardedDataParallelPlugin, k, "fsdp_")]
    deprecated += [k for k in config.deepspeed_config or {} if _deprecated(DeepSpeedPlugin, k)]
    assert deprecated == []


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem.startswith("zero")], ids=lambda p: p.name)
def test_deepspeed_takes_the_training_configs_accumulation(path):
    """A ZeRO config's gradient accumulation is the Trainer's ('auto': the script's --gradient_accumulation_steps, whose
    default is configs/training_config.json's) or equal to it, as accelerate's DeepSpeedPlugin builds its config."""
    training = load_settings(TrainingSettings, configs_dir() / "training_config.json")
    deepspeed = load_config_from_file(str(path)).deepspeed_config
    fields = {f.name for f in dataclasses.fields(DeepSpeedPlugin)}
    plugin = DeepSpeedPlugin(**{k: v for k, v in deepspeed.items() if k in fields})
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == int(path.stem[len("zero")])
    assert plugin.deepspeed_config["gradient_accumulation_steps"] in ("auto", training.gradient_accumulation_steps)


def test_deprecated_keys_are_found():
    """The check above is not vacuous: accelerate 1.x deprecates FSDP's sharding strategy, and an unknown key is caught."""
    assert _deprecated(FullyShardedDataParallelPlugin, "fsdp_sharding_strategy", "fsdp_")
    assert not _deprecated(FullyShardedDataParallelPlugin, "fsdp_reshard_after_forward", "fsdp_")
    assert "fsdp_reshard_after_forward" in LAUNCH_OPTIONS and "fsdp_sharding_stratgy" not in LAUNCH_OPTIONS
