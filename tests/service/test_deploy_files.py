"""The deployment files are accepted by the tools that read them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_config_is_valid():
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose (Debian package) is installed by ./run test"
    result = subprocess.run([tool, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_runs_postgis_api_and_worker_with_health_checks():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert services["db"]["image"].startswith("postgis/postgis:")
    assert {"db", "api", "worker"} <= set(services)
    assert "healthcheck" in services["db"] and "healthcheck" in services["api"]
    assert services["api"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["db"]["condition"] == "service_healthy"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./run test" in readme.split("\n## ")[0]
    assert "exec ./run test\n" in ci


def test_compose_api_and_workers_share_the_s3_tile_store():
    from service.core.settings import Settings

    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    store = services["seaweedfs"]
    assert store["image"].startswith("chrislusf/seaweedfs:") and "mini" in store["command"]
    for name in ("api", "worker"):
        env = {k: str(v).replace("${TWINBASE_S3_SECRET:-change-me-too}", "change-me-too")
               for k, v in services[name]["environment"].items() if k.startswith("TWINBASE_")}
        settings = Settings(**{k.removeprefix("TWINBASE_").lower(): v for k, v in env.items()})
        assert settings.tile_store == "s3" and settings.s3_bucket == "tiles"
        assert settings.s3_endpoint == "http://seaweedfs:8333"
        assert f"-bucket={settings.s3_bucket}" in store["command"]
        assert settings.s3_access_key == store["environment"]["AWS_ACCESS_KEY_ID"]
