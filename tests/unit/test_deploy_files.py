"""The container deployment files, checked without a Docker engine (none runs here): docker-compose.yml
through Debian's docker-compose (`config` parses, interpolates and validates against the Compose schema),
the Dockerfile through hadolint, and the properties the README promises of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from contract.catalog import REPO_ROOT, load_catalog
from contract.manifest import Manifest
from gateway.settings import Settings
from modelops.dev.k8s import ManifestValidator, kserve_wheel
from modelops.local.compose import write_compose_secrets
from modelops.local.config import StackConfig
from modelops.local.torchserve import WORKER_ENV, write_config
from modelops.store.kserve import kserve_properties
from modelops.tools import bin_path

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"


def _compose_config(*files: str) -> dict:
    """Compose files as docker-compose resolves them (anchors merged, defaults interpolated, schema checked)."""
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose not found: `apt-get install docker-compose` (.ci/run installs it)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "UI_", "MODEL_", "COMPOSE_"))}
    finished = subprocess.run(
        [tool, *files, "config"], capture_output=True, text=True, check=False, env=env, cwd=REPO_ROOT
    )
    assert finished.returncode == 0, finished.stderr
    return yaml.safe_load(finished.stdout)


@pytest.fixture(scope="module")
def resolved() -> dict:
    return _compose_config("-f", str(COMPOSE))


def test_dockerfile_passes_hadolint() -> None:
    finished = subprocess.run([bin_path("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_images_run_as_an_unprivileged_user() -> None:
    stages = {stage.splitlines()[0].split(" AS ")[-1]: stage for stage in DOCKERFILE.read_text().split("\nFROM ")[1:]}
    assert {"gateway", "app", "torchserve"} <= set(stages)  # the images; `python` is their shared base
    for target in ("gateway", "app", "torchserve"):
        users = [line.split()[1] for line in stages[target].splitlines() if line.startswith("USER ")]
        assert users, f"{target} sets its user"
        assert users[-1].split(":")[0] not in ("0", "root"), target


def test_only_the_gateway_and_ui_are_published_on_loopback_by_default(resolved: dict) -> None:
    published = {name: svc["ports"] for name, svc in resolved["services"].items() if svc.get("ports")}
    assert set(published) == {"gateway", "ui"}
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), ports


def test_long_running_services_have_health_checks_that_work_with_token_auth(resolved: dict) -> None:
    services = resolved["services"]
    for name in ("s3", "torchserve", "gateway", "ui"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    for name, service in services.items():
        # Podman splits a health check's arguments at spaces: `python -c "import x; ..."` would run `import`
        assert not any(" " in arg for arg in service.get("healthcheck", {}).get("test", [])), name
    torchserve_check = services["torchserve"]["healthcheck"]["test"]
    assert "--key-file" in torchserve_check  # /ping needs a key: the check authenticates
    assert services["gateway"]["depends_on"]["torchserve"]["condition"] == "service_healthy"
    assert services["seed"]["restart"] == "no"
    assert services["sync"]["environment"]["TORCHSERVE_HOST"] == "torchserve"
    assert "--rotate-keys" in services["sync"]["command"]


def test_torchserve_ignores_ts_variables_and_containers_bind_through_stack_host(resolved: dict, tmp_path: Path) -> None:
    """`enable_envvars_config=false`: a `TS_DISABLE_TOKEN_AUTHORIZATION=true` in the JVM's environment cannot
    turn token authorization off. The containers' addresses come from `modelops torchserve` instead."""
    properties = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "config.properties").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert properties["enable_envvars_config"] == "false"
    assert properties["disable_token_authorization"] == "false"
    environment = resolved["services"]["torchserve"]["environment"]
    assert not [name for name in environment if name.startswith("TS_")]
    assert environment["STACK_HOST"] == "0.0.0.0"
    assert 'CMD ["python", "-m", "modelops", "torchserve"]' in DOCKERFILE.read_text()
    container = StackConfig(state_dir=tmp_path, model_store=tmp_path / "store", host="0.0.0.0")
    written = write_config(container).read_text()
    for api, port in (("inference", 8080), ("management", 8081), ("metrics", 8082)):
        assert f"\n{api}_address=http://0.0.0.0:{port}\n" in written
    assert "\nenable_envvars_config=false\n" in written


def test_replicas_profile_gives_each_torchserve_its_own_state_and_the_gateway_both() -> None:
    resolved = _compose_config("-f", str(COMPOSE), "-f", str(REPO_ROOT / "docker-compose.replicas.yml"))
    services = resolved["services"]
    assert services["torchserve-2"]["profiles"] == ["replicas"]
    assert services["sync-2"]["environment"]["TORCHSERVE_HOST"] == "torchserve-2"
    state = {name: set(services[name]["volumes"]) for name in ("torchserve", "torchserve-2")}
    assert not state["torchserve"] & state["torchserve-2"]  # own model store and key file
    upstreams = Settings(upstreams=json.loads(services["gateway"]["environment"]["GATEWAY_UPSTREAMS"])).upstreams
    assert [u.name for u in upstreams] == ["torchserve", "torchserve-2"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["gateway"]["volumes"]}
    for upstream, volume in zip(upstreams, ("torchserve-state", "torchserve-state-2"), strict=True):
        assert upstream.key_file is not None
        assert mounts[str(upstream.key_file.parent)] == volume  # reads that TorchServe's own key file


def test_s3_credentials_reach_containers_only_as_secrets(resolved: dict, tmp_path: Path) -> None:
    for name in ("seed", "sync", "gateway", "jobs"):
        environment = resolved["services"][name]["environment"]
        assert "AWS_SECRET_ACCESS_KEY" not in environment
        assert environment["AWS_SHARED_CREDENTIALS_FILE"] == "/run/secrets/aws_credentials"
    tmp_path.chmod(0o755)
    written = write_compose_secrets(tmp_path)
    assert {p.name for p in written} == {"s3-identities.json", "aws-credentials"}
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700  # no other host user reaches them
    for path in written:  # readable by the containers' uid 10001 through the bind mount
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    before = (tmp_path / "aws-credentials").read_text()
    assert write_compose_secrets(tmp_path) == []  # kept: regenerating would lock out existing S3 data
    assert (tmp_path / "aws-credentials").read_text() == before
    assert "aws_secret_access_key = " in before


EC2 = REPO_ROOT / "deploy" / "ec2"


def test_ec2_systemd_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the units, pointed at this checkout instead of /opt/multitask (it checks
    keys, sections and that every ExecStart binary exists and is executable)."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze not found (Debian's systemd package; .ci/run installs it)"
    units = sorted(EC2.glob("*.service"))
    assert {u.stem for u in units} == {f"multitask-{n}" for n in ("torchserve", "sync", "gateway", "ui")}
    for unit in units:
        text = unit.read_text().replace("/etc/multitask/multitask.env", str(EC2 / "multitask.env.example"))
        text = text.replace("/opt/multitask", str(REPO_ROOT)).replace("=multitask\n", "=root\n")
        (tmp_path / unit.name).write_text(text)
    finished = subprocess.run(
        [tool, "verify", *map(str, sorted(tmp_path.glob("*.service")))], capture_output=True, text=True, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_torchserve_runs_with_the_same_environment_locally_in_the_image_and_under_systemd() -> None:
    unit = (REPO_ROOT / "deploy" / "ec2" / "multitask-torchserve.service").read_text()
    lines = re.findall(r"^Environment=(.*)$", unit, re.M)
    unit_env = dict(pair.split("=", 1) for line in lines for pair in line.split())
    image = DOCKERFILE.read_text().split("FROM python AS app", 1)[1]
    image_env = dict(re.findall(r"^\s*([A-Z_]+)=(\S+?)(?: \\)?$", image.split("\n\n", 2)[1], re.M))
    for name, value in WORKER_ENV.items():
        assert unit_env.get(name) == value, f"the EC2 unit: {name}"
        assert image_env.get(name) == value, f"the app image: {name}"


def test_ec2_caddyfile_is_valid() -> None:
    tool = shutil.which("caddy")
    assert tool, "caddy not found (Debian's caddy package; .ci/run installs it)"
    finished = subprocess.run(
        [tool, "validate", "--config", str(EC2 / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]


def test_ec2_role_reads_only_the_model_prefix() -> None:
    policy = json.loads((EC2 / "iam-policy.json").read_text())
    actions = {s["Action"] for s in policy["Statement"]}
    assert actions == {"s3:ListBucket", "s3:GetObject"}  # read-only: publishing happens from the build side
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert all(s["Resource"].startswith("arn:aws:s3:::") for s in policy["Statement"])


K8S = REPO_ROOT / "deploy" / "k8s"
# created once per bulk job, outside the kustomization
BULK_JOB = K8S / "bulk-job.yaml"


@pytest.fixture(scope="module")
def manifests() -> ManifestValidator:
    return ManifestValidator(kserve_wheel())


def _documents() -> dict[str, dict]:
    """Every Kubernetes object in deploy/k8s, by kind/name."""
    paths = [p for p in sorted(K8S.glob("*.yaml")) if p.name not in ("kustomization.yaml", BULK_JOB.name)]
    docs = [d for path in paths for d in yaml.safe_load_all(path.read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_k8s_manifests_validate_offline(manifests: ManifestValidator) -> None:
    checked, findings = manifests.check_files([K8S / "kustomization.yaml"])
    assert checked == len(_documents())  # the kustomization lists every file
    assert [str(f) for f in findings] == []


def test_k8s_bulk_job_gives_each_index_its_own_shards(manifests: ManifestValidator) -> None:
    checked, findings = manifests.check_files([BULK_JOB])
    assert (checked, [str(f) for f in findings]) == (1, [])
    job = yaml.safe_load(
        BULK_JOB.read_text().replace("JOB_ID", "0190c3e5a1b2c3d4e5f6")  # as the file's own comment shows
    )
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--of") + 1] == str(spec["completions"]) == str(spec["parallelism"])
    assert args[args.index("--job") + 1] == "0190c3e5a1b2c3d4e5f6"
    assert re.fullmatch(r"[a-z0-9-]{1,63}", job["metadata"]["name"])  # a name a cluster takes


def test_k8s_validation_catches_what_a_cluster_would_refuse_or_drop(manifests: ManifestValidator) -> None:
    docs = _documents()
    isvc = json.loads(json.dumps(docs["InferenceService/multitask"]))
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    isvc["spec"]["predictor"]["minReplicas"] = "two"
    hpa = json.loads(json.dumps(docs["HorizontalPodAutoscaler/multitask-gateway"]))
    hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilisation"] = 70
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    messages = [f.message for doc in (isvc, hpa, unknown) for f in manifests.check(doc, "mutated")]
    assert any("'storageURI' was unexpected" in m for m in messages)
    assert any("'two' is not of type 'integer'" in m for m in messages)
    assert any("'averageUtilisation' was unexpected" in m for m in messages)
    assert any("no schema for example.com/v1 Widget" in m for m in messages)


def test_k8s_predictor_is_fenced_since_its_token_auth_is_off() -> None:
    docs = _documents()
    isvc = docs["InferenceService/multitask"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "pytorch"
    assert model["storageUri"].endswith("/kserve")  # the view modelops.store.kserve keeps current
    assert "ServingRuntime/" + model["runtime"] in docs
    properties = dict(
        line.split("=", 1) for line in kserve_properties(Manifest(), load_catalog()).splitlines() if "=" in line
    )
    assert properties["disable_token_authorization"] == "true"
    assert properties["management_address"].startswith("http://127.0.0.1:")
    assert properties["enable_model_api"] == "false"
    assert properties["enable_envvars_config"] == "false"  # KServe's TS_SERVICE_ENVELOPE=kserve is ignored
    policy = docs["NetworkPolicy/multitask-predictor-ingress"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    gateway_rule = policy["ingress"][0]
    assert gateway_rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "multitask-gateway"}
    assert gateway_rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    upstreams = Settings(upstreams=json.loads(docs["ConfigMap/multitask-gateway"]["data"]["GATEWAY_UPSTREAMS"]))
    (upstream,) = upstreams.upstreams
    assert upstream.inference_url.startswith(f"http://{isvc['metadata']['name']}-predictor.")
    assert upstream.key_file is None
    assert upstream.management_url is None
