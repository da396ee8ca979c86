"""Configuration from the environment: the upload limits an operator sets, and clear errors for bad values."""
import pytest

from engine.config import Config
from engine.files import megabytes


def test_upload_limits_come_from_the_environment_in_megabytes(tmp_path):
    default = Config.from_env({"EMFLOW_INSTANCE_PATH": str(tmp_path)})
    assert (default.max_upload_bytes, default.max_request_bytes) == (20 * 2**20, 100 * 2**20)
    set_ = Config.from_env({"EMFLOW_INSTANCE_PATH": str(tmp_path), "EMFLOW_MAX_UPLOAD_MB": "50",
                            "EMFLOW_MAX_REQUEST_MB": "300"})
    assert (set_.max_upload_bytes, set_.max_request_bytes) == (50 * 2**20, 300 * 2**20)


@pytest.mark.parametrize("value", ["0", "-5", "20MB", "1.5", " "])
def test_a_bad_limit_is_refused_with_the_variable_named(tmp_path, value):
    env = {"EMFLOW_INSTANCE_PATH": str(tmp_path), "EMFLOW_MAX_UPLOAD_MB": value}
    if not value.strip():
        assert Config.from_env(env).max_upload_bytes == 20 * 2**20  # blank is unset
        return
    with pytest.raises(ValueError, match=f"EMFLOW_MAX_UPLOAD_MB must be a whole number of megabytes.*'{value}'"):
        Config.from_env(env)


def test_megabytes_reads_as_people_write_it():
    assert (megabytes(20 * 2**20), megabytes(600 * 1024), megabytes(2**20 + 1)) == ("20", "0.6", "1")
