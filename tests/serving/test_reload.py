"""Hot reload under traffic, failed loads, version policies and labels from the config file."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from serving.client import ClientSettings, ModelRef, PredictionClient
from serving.errors import Code, ServingError
from serving.server import ModelServer
from tests.serving.conftest import (
    MODEL,
    Served,
    install_version,
    server_settings,
    wait_for,
)


def states(client: PredictionClient) -> dict[int, tuple[str, str]]:
    return {
        s["version"]: (s["state"], s["error_code"]) for s in client.model_status(ModelRef(MODEL))
    }


def test_hot_reload_under_traffic(
    serve_model: Callable[..., Served], model_library: dict[int, str], examples: list[bytes]
) -> None:
    running = serve_model()
    client, base = running.client, running.base
    served: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                served.append(client.predict(ModelRef(MODEL), examples[:2]).version or -1)
            except ServingError as e:
                failures.append(f"{e.code.name}: {e.message}")

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(served) > 20)
        install_version(model_library, 2, base, 2)
        wait_for(lambda: served[-1:] == [2] and states(client).get(1, ("END",))[0] == "END")
        shutil.rmtree(os.path.join(base, "1"))  # the old version leaves the disk
        count = len(served)
        wait_for(lambda: len(served) > count + 20)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    switch = served.index(2)
    assert set(served[:switch]) == {1}, Counter(served)
    # Threads append concurrently: a reply from v1 may land just after the first from v2.
    assert served[switch:].count(1) <= len(threads) and set(served[switch + 10 :]) == {2}
    # Unloaded and gone, v1 stays END: TF Serving's ServableStateMonitor forgets no version
    # (tensorflow_serving/core/servable_state_monitor.cc).
    wait_for(lambda: states(client) == {1: ("END", "OK"), 2: ("AVAILABLE", "OK")})


def test_corrupt_version_keeps_the_old_one_serving(
    tmp_path: Path,
    serve_model: Callable[..., Served],
    model_library: dict[int, str],
    examples: list[bytes],
) -> None:
    # No retries: END at the first failure (with retries it is LOADING until the last one,
    # tests/serving/test_parity.py).
    running = serve_model(max_num_load_retries=0)
    client, base = running.client, running.base
    bad = tmp_path / "staging"
    shutil.copytree(model_library[2], bad)
    pb = bad / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])  # truncated saved_model.pb
    os.rename(bad, os.path.join(base, "2"))
    wait_for(lambda: states(client).get(2, ("", ""))[0] == "END")
    status = {s["version"]: s for s in client.model_status(ModelRef(MODEL))}
    assert status[1]["state"] == "AVAILABLE"
    assert status[2]["error_code"] != "OK" and "saved_model.pb" in status[2]["error_message"]
    assert client.predict(ModelRef(MODEL), examples).version == 1
    time.sleep(1.0)  # several polls later: not retried while unchanged, v1 still serves
    assert client.predict(ModelRef(MODEL), examples).version == 1
    # Fixing the files (as a Pusher finishing its copy would) makes it load.
    shutil.copy(
        os.path.join(model_library[2], "saved_model.pb"),
        os.path.join(base, "2", "saved_model.pb"),
    )
    wait_for(lambda: states(client).get(2) == ("AVAILABLE", "OK"))
    assert client.predict(ModelRef(MODEL), examples).version == 2


def test_config_file_policy_and_labels_reload(
    tmp_path: Path, model_library: dict[int, str], examples: list[bytes]
) -> None:
    base = str(tmp_path / MODEL)
    install_version(model_library, 1, base, 1)
    install_version(model_library, 2, base, 2)
    config = tmp_path / "models.config"

    def write(policy: str, labels: str) -> None:
        text = (
            f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
            f'model_platform: "tensorflow" model_version_policy {{ {policy} }} {labels} }} }}'
        )
        tmp = tmp_path / "models.config.tmp"
        tmp.write_text(text)
        os.replace(tmp, config)

    write("specific { versions: 1 }", 'version_labels { key: "stable" value: 1 }')
    settings = server_settings(
        model_config_file=str(config), model_config_file_poll_s=0.2, rest_port=None
    )
    with ModelServer(settings) as server:
        server.manager.wait_until_available(MODEL, 1, 60)
        client = PredictionClient(ClientSettings(f"127.0.0.1:{server.grpc_port}", max_retries=0))
        assert client.predict(ModelRef(MODEL), examples).version == 1  # rollback pin
        assert client.predict(ModelRef(MODEL, label="stable"), examples).version == 1
        with pytest.raises(ServingError) as info:
            client.predict(ModelRef(MODEL, label="canary"), examples)
        # server_core.cc GetModelVersionForLabel: an unknown label is INVALID_ARGUMENT.
        assert info.value.code == Code.INVALID_ARGUMENT
        time.sleep(0.05)
        write(
            "all {}",
            'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }',
        )
        wait_for(lambda: states(client).get(2) == ("AVAILABLE", "OK"))
        wait_for(lambda: client.predict(ModelRef(MODEL, label="canary"), examples).version == 2)
        assert client.predict(ModelRef(MODEL, label="stable"), examples).version == 1
        assert client.predict(ModelRef(MODEL), examples).version == 2
        write("latest { num_versions: 1 }", "")
        wait_for(lambda: states(client).get(1, ("END",))[0] == "END")
        with pytest.raises(ServingError) as info:
            client.predict(ModelRef(MODEL, version=1), examples)
        assert info.value.code == Code.NOT_FOUND
        client.close()
