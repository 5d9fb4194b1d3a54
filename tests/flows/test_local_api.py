"""The temporary local Prefect API a run starts first (flows/local_api.py)."""
from flows import local_api


def test_one_server_per_process_reached_through_the_run_settings(prefect_home):
    api = local_api.start()
    assert api is not None and local_api.start() is api  # started once, reused by later runs
    api = local_api.ready(api)
    assert api.ready()

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    with api.settings():
        assert PREFECT_API_URL.value() == api.url and not PREFECT_UI_URL.value()
        with get_client(sync_client=True) as c:
            assert c.api_url.host == "127.0.0.1" and c.api_url.port == api.port
            assert c.api_healthcheck() is None  # None: healthy
    assert PREFECT_API_URL.value() != api.url  # only inside the run


def test_stop_ends_the_server_and_a_stopped_one_is_replaced(prefect_home, monkeypatch):
    # a server of its own: the process-wide one stays up for the other tests' flows (their Prefect
    # log and event senders keep its address until the process exits)
    port = local_api._free_port()
    own = local_api.ready(local_api.LocalAPI(*local_api._launch(port)))
    own.stop()
    assert own.process.poll() is not None and not own.ready()
    monkeypatch.setattr(local_api, "_current", own)
    fresh = local_api.start()
    try:
        assert fresh is not own and fresh.process.poll() is None
    finally:
        fresh.stop()


def test_a_configured_api_url_starts_nothing():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert local_api.start() is None


def test_a_port_taken_before_the_server_binds_gets_one_retry(prefect_home, monkeypatch):
    import socket

    monkeypatch.setattr(local_api, "_current", None)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        first = local_api.LocalAPI(*local_api._launch(taken))  # uvicorn cannot bind: exits 3
        api = local_api.ready(first)
        try:
            assert first.process.poll() == local_api.PORT_IN_USE
            assert api is not first and api.port != taken and api.ready()
            assert local_api._current is api  # later runs of the process use the replacement
        finally:
            api.stop()
