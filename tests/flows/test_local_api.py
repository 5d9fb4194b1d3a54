"""The temporary local Prefect API a run starts first (flows/local_api.py)."""
from flows import local_api


def test_one_server_per_process_reached_through_the_run_settings(prefect_home):
    api = local_api.start()
    assert api is not None and local_api.start() is api  # started once, reused by later runs
    api = local_api.wait_ready(api)
    assert api.ready()

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    with api.settings():
        assert PREFECT_API_URL.value() == api.url and not PREFECT_UI_URL.value()
        with get_client(sync_client=True) as c:
            assert c.api_url.host == "127.0.0.1" and c.api_url.port == api.port
            assert c.api_healthcheck() is None  # None: healthy
    assert PREFECT_API_URL.value() != api.url  # only inside the run

    api.stop()
    assert api.process.poll() is not None and not api.ready()
    again = local_api.start()  # a stopped server is replaced, not reused
    assert again is not api
    again.stop()


def test_a_configured_api_url_starts_nothing():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert local_api.start() is None
