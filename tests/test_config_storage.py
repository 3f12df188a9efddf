"""Settings from the environment and storage URL handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.config import ConfigError, Settings
from stratus.lakehouse.storage import Storage, StorageError


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.home) == ("127.0.0.1", 8080, Path(".stratus"))
    assert s.lakehouse_url == str((Path(".stratus") / "lakehouse").resolve())


def test_environment_overrides_and_errors_name_the_variable() -> None:
    s = Settings.from_env(
        {"STRATUS_HOME": "/srv/x", "STRATUS_PORT": "9000", "STRATUS_LOG_LEVEL": "debug"}
    )
    assert (s.home, s.port, s.log_level) == (Path("/srv/x"), 9000, "DEBUG")
    with pytest.raises(ConfigError, match="STRATUS_PORT"):
        Settings.from_env({"STRATUS_PORT": "70000"})
    with pytest.raises(ConfigError, match="STRATUS_LOG_LEVEL"):
        Settings.from_env({"STRATUS_LOG_LEVEL": "LOUD"})


def test_azure_urls_and_credentials_stay_out_of_repr() -> None:
    env = {
        "STRATUS_STORAGE_URL": "az://weather/lake/",
        "AZURE_STORAGE_ACCOUNT_NAME": "acct",
        "AZURE_STORAGE_ACCOUNT_KEY": "c2VjcmV0LWtleQ==",
    }
    settings = Settings.from_env(env)
    storage = Storage.from_settings(settings)
    assert (storage.root, storage.container, storage.account) == (
        "az://weather/lake",
        "weather",
        "acct",
    )
    assert storage.options == {
        "account_name": "acct",
        "account_key": "c2VjcmV0LWtleQ==",
        "max_retries": "3",
        "retry_timeout": "15s",
        "timeout": "15s",  # per request: a hung store answers 503 too
    }
    assert storage.table_url("main/weather/hourly") == "az://weather/lake/main/weather/hourly"
    assert "c2VjcmV0" not in repr(settings) and "c2VjcmV0" not in repr(storage)


def test_abfss_and_connection_string() -> None:
    settings = Settings(
        storage_url="abfss://data@myacct.dfs.core.windows.net/stratus",
        azure_connection_string=(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        ),
    )
    storage = Storage.from_settings(settings)
    assert storage.container == "data"
    assert storage.options is not None
    assert storage.options["account_name"] == "devstoreaccount1"
    assert storage.options["allow_http"] == "true"
    assert storage.endpoint == "http://127.0.0.1:10000/devstoreaccount1"


def test_bad_storage_urls_are_explained() -> None:
    with pytest.raises(StorageError, match="unsupported"):
        Storage.from_settings(Settings(storage_url="s3://bucket/x"))
    with pytest.raises(StorageError, match="AZURE_STORAGE_ACCOUNT_NAME"):
        Storage.from_settings(Settings(storage_url="az://c/x"))


def test_unreachable_azure_is_a_storage_error(tmp_path: Path) -> None:
    from tests.conftest import AZURITE_KEY, free_port

    settings = Settings(
        home=tmp_path,
        storage_url="az://c/x",
        azure_account_name="devstoreaccount1",
        azure_account_key=AZURITE_KEY,
        azure_endpoint=f"http://127.0.0.1:{free_port()}/devstoreaccount1",
    )
    with pytest.raises(StorageError, match="not reachable") as info:
        Storage.from_settings(settings).prepare()
    assert AZURITE_KEY not in str(info.value)
