"""``report_to``: TensorBoard, Weights & Biases (offline here: nothing leaves the computer), or none."""

import json
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides

from nrt import ConfigError, load_config, train
from nrt.runlog import RunLog


def wandb_records(path: Path) -> list:
    """The records of an offline run's ``.wandb`` file: a LevelDB-style log (a 7-byte file header, 32 KiB
    blocks of chunks, each with a 7-byte header: checksum, little-endian length, kind) of protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def offline_run(folder: Path) -> tuple[object, dict, list[dict]]:
    """The run header, config and history of the one offline wandb run under ``folder/wandb``."""
    import wandb

    wandb.teardown()  # finish() may return before wandb's service has written the run's file; this waits for it
    (log,) = (folder / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(log)
    (header,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in header.config.update}
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    return header, config, history


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """wandb writes to tmp_path alone and sends nothing."""
    pytest.importorskip("wandb")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)


def test_wandb_offline_run_in_the_run_folder_holds_the_metrics(wandb_offline, tiny_model_dir, qa_file, tmp_path):
    run = tmp_path / "run"
    cfg = load_config("nrt-ws", tiny_overrides(tiny_model_dir, qa_file, run, report_to="wandb", steps=1))
    metrics = train(cfg).metrics
    header, config, history = offline_run(run)
    assert (header.project, header.display_name) == ("nrt", "run")  # the default name: the run folder's
    assert config["aggregation"] == "weighted_sum_log_prob" and config["report_to"] == ["wandb"]
    assert [h["_step"] for h in history] == [m["step"] for m in metrics] == [1]
    for logged, written in zip(history, metrics, strict=True):
        assert {key: logged[key] for key in written if key != "step"} == pytest.approx(
            {key: value for key, value in written.items() if key != "step"})
    assert not (run / "tensorboard").exists()  # report_to lists wandb alone


def test_wandb_dir_and_run_name_are_followed(wandb_offline, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    cfg = load_config("nrt-ws", {"output_dir": str(tmp_path / "run"), "report_to": ["wandb"], "run_name": "tiny",
                                 "wandb_project": "mine", "progress": False})
    runlog = RunLog(cfg, start_step=0)
    runlog.log(1, {"loss": 0.5}, [])
    runlog.close()
    header, _, history = offline_run(tmp_path / "elsewhere")
    assert (header.project, header.display_name) == ("mine", "tiny")
    assert [(h["_step"], h["loss"]) for h in history] == [(1, 0.5)]
    assert not (tmp_path / "run" / "wandb").exists()


def test_wandb_not_installed_is_a_config_error_at_start(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what importlib sees when the package is absent
    with pytest.raises(ConfigError, match=r"report_to: wandb is not installed; pip install wandb"):
        load_config("nrt-ws", ["report_to=[tensorboard, wandb]"])
    assert load_config("nrt-ws", ["report_to=[tensorboard]"]).report_to == ["tensorboard"]  # not needed, not checked


@pytest.mark.parametrize(("overrides", "message"), [
    (["report_to=[comet]"], r"report_to: got \['comet'\]; give each of \['tensorboard', 'wandb'\] at most once"),
    (["report_to=[tensorboard, tensorboard]"], r"report_to: got \['tensorboard', 'tensorboard'\]"),
    (["report_to=7"], "report_to: expected list"),
    (["tensorboard=false"], r"tensorboard: replaced \(from command line\); use report_to: \[tensorboard\]"),
])
def test_bad_report_to_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("nrt-ws", overrides)


def test_report_to_defaults_to_tensorboard_and_takes_a_bare_name_or_none():
    assert load_config("nrt-ws").report_to == ["tensorboard"]
    assert load_config("nrt-ws", ["report_to=tensorboard"]).report_to == ["tensorboard"]
    assert load_config("nrt-ws", ["report_to=[]"]).report_to == []
