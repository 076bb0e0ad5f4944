"""Who may scrape /metrics on a running `kairos serve`, and on which address.

The main address is public (every visitor's browser reaches it), so /metrics
there needs the admin token; `--metrics-port` opens a second address that
serves /metrics alone, without a token, for a Prometheus on a private network.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port
from kairos.settings import Settings


def families(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


def test_metrics_on_the_main_address_need_the_admin_token(serve):
    server = serve("memory")
    r = httpx.get(f"{server.base}/metrics", timeout=5)
    assert r.status_code == 401 and "kairos_" not in r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{server.base}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    r = httpx.get(f"{server.base}/metrics", headers=server.auth, timeout=5)
    assert r.status_code == 200 and "kairos_events" in families(r.text)


def test_the_metrics_address_serves_metrics_alone_and_without_a_token(serve):
    port = free_port()
    server = serve("memory", extra=["--metrics-port", str(port)])
    metrics_base = f"http://127.0.0.1:{port}"
    r = httpx.get(f"{metrics_base}/metrics", timeout=5)
    assert r.status_code == 200 and "kairos_events" in families(r.text)
    # Nothing else is there: not the store, the dashboard, its API or the snippet.
    for path in ("/healthz", "/demo/", "/dashboard", "/api/sessions", "/k.js", "/metrics/x"):
        assert (path, httpx.get(f"{metrics_base}{path}", headers=server.auth, timeout=5).status_code) == (path, 404)
    assert httpx.post(f"{metrics_base}/b", content=b"x", timeout=5).status_code == 404
    # The main address still serves everything else, and /metrics only to the token.
    assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{server.base}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{server.base}/metrics", headers=server.auth, timeout=5).status_code == 200
    assert f"metrics:    http://127.0.0.1:{port}/metrics" in server.output()


def test_a_metrics_port_equal_to_the_main_port_is_refused_at_start():
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "kairos", "serve", "--port", str(port), "--metrics-port", str(port),
                           "--admin-token", "t" * 32], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--metrics-port must differ from --port" in done.stderr


def test_the_metrics_address_is_configured_like_everything_else():
    settings = Settings.load({"KAIROS_METRICS_PORT": "9100", "KAIROS_METRICS_HOST": "10.0.0.5"})
    assert (settings.metrics_host, settings.metrics_port) == ("10.0.0.5", 9100)
    assert Settings.load({"KAIROS_METRICS_PORT": "9100"}, metrics_port=9200).metrics_port == 9200
    assert (Settings().metrics_host, Settings().metrics_port) == ("127.0.0.1", 0)
