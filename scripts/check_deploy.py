"""Parses the deployment files (CI cannot run `terraform validate`: providers are not
downloadable there). Checks that they parse and that the facts the docs promise hold."""
import pathlib
import sys

import hcl2
import yaml

root = pathlib.Path(__file__).resolve().parent.parent
errors = []

service = yaml.safe_load((root / "deploy/cloudrun/service.yaml").read_text())
container = service["spec"]["template"]["spec"]["containers"][0]
env = {e["name"]: e for e in container["env"]}
if container["startupProbe"]["httpGet"]["path"] != "/health":
    errors.append("service.yaml: startup probe is not /health")
if container["readinessProbe"]["httpGet"]["path"] != "/ready":
    errors.append("service.yaml: readiness probe is not /ready")
for secret in ("JWT_SECRET", "SMTP_PASSWORD"):
    if "secretKeyRef" not in env.get(secret, {}).get("valueFrom", {}):
        errors.append(f"service.yaml: {secret} is not read from Secret Manager")
if "DATABASE_URL" in env or "GCP_PROJECT_ID" not in env:
    errors.append("service.yaml: Firestore must be selected by GCP_PROJECT_ID alone")

tf = {}
for f in sorted((root / "deploy/terraform").glob("*.tf")):
    with f.open() as fh:
        parsed = hcl2.load(fh)
    for key, value in parsed.items():
        tf.setdefault(key, []).extend(value)
resources = {}
for block in tf.get("resource", []):
    for kind, named in block.items():
        for name, body in named.items():
            resources[(kind.strip('"'), name.strip('"'))] = body
for needed in [
    ("google_cloud_run_v2_service", "api"),
    ("google_firestore_database", "default"),
    ("google_service_account", "api"),
    ("google_secret_manager_secret", "jwt"),
]:
    if needed not in resources:
        errors.append(f"terraform: missing resource {needed}")
roles = sorted(
    str(body.get("role")).strip('"')
    for (kind, _), body in resources.items()
    if kind.endswith("iam_member")
)
allowed = {"roles/datastore.user", "roles/logging.logWriter",
           "roles/secretmanager.secretAccessor", "roles/run.invoker"}
for role in roles:
    if role not in allowed:
        errors.append(f"terraform: role {role} is more than the server needs")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"deploy files parse: service.yaml ({len(env)} env vars), "
      f"terraform ({len(resources)} resources, roles {sorted(set(roles))})")
