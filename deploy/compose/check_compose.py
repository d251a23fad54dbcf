#!/usr/bin/env python3
"""Checks of deploy/compose/compose.yaml beyond the Compose specification
(deploy/validate.sh runs it on the model compose-go loaded, as JSON).

compose-go validates the file against the specification's schema and
resolves it as Docker Compose would; it does not fail on a service naming
a secret nobody defined, and knows nothing of opptak. This checks:

  - every service has a healthcheck, except one-shot services
    (restart "no"), which others wait for with service_completed_successfully;
  - depends_on names defined services; service_healthy only on services
    with a healthcheck;
  - secrets, configs and named volumes used by a service are defined;
  - no credential as a literal environment value (PASSWORD, SECRET, PIN,
    TOKEN, API_KEY, ACCESS_KEY; *_FILE pointing at a secret is fine);
  - every opptak role runs in exactly one service (`run --roles <role>`),
    as uid 10001 with a read-only root filesystem and all capabilities
    dropped, with the keyring, database and S3 secrets;
  - with --opptak-bin: each opptak service's configuration (the mounted
    opptak.toml plus its OPPTAK__* variables) is accepted by the real
    config loader (`opptak --config FILE config`).

Usage: check_compose.py MODEL.json COMPOSE_DIR [--opptak-bin PATH]
"""

import argparse
import json
import os
import re
import subprocess
import sys

ROLES = ["recorder", "transcriber", "summarizer", "sweeper", "review"]
SECRETISH = re.compile(r"(PASSWORD|SECRET|PIN|TOKEN|API_KEY|ACCESS_KEY)$", re.I)
OPPTAK_SECRETS = {"pg_password", "s3_access_key", "s3_secret_key", "opptak_keyring"}


def one_line(text):
    """opptak's error and its causes on one line."""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("compose_dir")
    ap.add_argument("--opptak-bin", default="")
    a = ap.parse_args()
    with open(a.model) as f:
        m = json.load(f)
    failures = []

    def fail(what, msg):
        failures.append(f"{what}: {msg}")

    services = m.get("services", {})
    defined = {k: set(m.get(k) or {}) for k in ("secrets", "configs", "volumes")}
    roles = {}
    for name, s in sorted(services.items()):
        what = f"service {name}"
        one_shot = s.get("restart") == "no"
        hc = s.get("healthcheck")
        if not one_shot and (not hc or hc.get("disable") or not hc.get("test")):
            fail(what, "no healthcheck")
        for dep, cond in (s.get("depends_on") or {}).items():
            if dep not in services:
                fail(what, f"depends on undefined service {dep}")
                continue
            c = cond.get("condition")
            if c == "service_healthy" and not (services[dep].get("healthcheck") or {}).get("test"):
                fail(what, f"waits for {dep} to be healthy, which has no healthcheck")
            if services[dep].get("restart") == "no" and c != "service_completed_successfully":
                fail(what, f"{dep} is a one-shot service: wait for service_completed_successfully")
        for kind in ("secrets", "configs"):
            for ref in s.get(kind) or []:
                if ref.get("source") not in defined[kind]:
                    fail(what, f"{kind[:-1]} {ref.get('source')} is not defined")
        for v in s.get("volumes") or []:
            if v.get("type") == "volume" and v.get("source") not in defined["volumes"]:
                fail(what, f"volume {v.get('source')} is not defined")
        for k, v in (s.get("environment") or {}).items():
            if SECRETISH.search(k) and v:
                fail(what, f"{k} has a literal value (use a secret)")
        cmd = s.get("command") or []
        if cmd[:2] == ["run", "--roles"]:
            role = cmd[2] if len(cmd) == 3 else "?"
            roles.setdefault(role, []).append(name)
            if s.get("user") != "10001:10001":
                fail(what, f"runs as {s.get('user')!r}, expected 10001:10001 (the image's opptak user)")
            if not s.get("read_only"):
                fail(what, "root filesystem is not read-only")
            if "ALL" not in (s.get("cap_drop") or []):
                fail(what, "capabilities are not all dropped")
            missing = OPPTAK_SECRETS - {r.get("source") for r in s.get("secrets") or []}
            if missing:
                fail(what, f"missing secrets {sorted(missing)}")
    for role in ROLES:
        if len(roles.get(role, [])) != 1:
            fail(f"role {role}", f"runs in {len(roles.get(role, []))} services, expected 1")
    for role in set(roles) - set(ROLES):
        fail(f"role {role}", "unknown role")

    if a.opptak_bin:
        configs = m.get("configs") or {}
        for name in sorted(n for ns in roles.values() for n in ns):
            s = services[name]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            env.update({k: v for k, v in (s.get("environment") or {}).items() if k.startswith("OPPTAK__") and v is not None})
            target = (s.get("environment") or {}).get("OPPTAK_CONFIG")
            src = [c.get("source") for c in s.get("configs") or [] if c.get("target") == target]
            if not src or src[0] not in configs:
                fail(f"service {name}", f"OPPTAK_CONFIG={target} is not a mounted config")
                continue
            path = configs[src[0]].get("file", "")
            if not os.path.isabs(path):
                path = os.path.join(a.compose_dir, path)
            r = subprocess.run([a.opptak_bin, "--config", path, "config"], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"service {name}", "opptak refuses its configuration: " + one_line(r.stderr or r.stdout))

    for msg in failures:
        print(f"  {msg}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
