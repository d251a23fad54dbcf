#!/usr/bin/env python3
"""Cross-object checks of a rendered opptak chart (deploy/validate.sh).

kubernetes-validate checks each object against the Kubernetes schemas; it
cannot see that a Service selects no pod, a probe names a port no container
has, or a PodDisruptionBudget guards nothing. This does, for the chart's
own contract:

  - one Deployment per enabled role, running `opptak run --roles <role>`;
  - every container: liveness GET /healthz and readiness GET /readyz on a
    named port it declares, CPU and memory requests and limits, non-root,
    read-only root filesystem, no privilege escalation, all capabilities
    dropped; the pod non-root and without a service-account token;
  - no credential in a literal env value or in the ConfigMap;
  - the config volume names the rendered ConfigMap, the blobs volume a
    rendered claim (or the one given as existingClaim);
  - every Service selects at least one Deployment's pods and its named
    target ports exist there; every role has a metrics Service;
  - every PodDisruptionBudget selects a Deployment with more than one
    replica, and every Deployment with more than one replica has one;
  - a ServiceMonitor selects metrics Services whose port it names;
  - an Ingress points at a rendered Service and port.

With --opptak-bin, each Deployment's effective configuration (the
ConfigMap's opptak.toml plus the container's literal OPPTAK__* variables;
values from Secrets replaced by a placeholder) is loaded by the real opptak
config loader (`opptak --config FILE config`), which refuses unknown keys
and bad values; a rendered retention policy goes through `opptak policy check`.

Usage: check_manifests.py RENDERED.yaml [--roles r1,r2,...] [--existing-claim NAME]
                          [--opptak-bin PATH]
Exit 0 when every check passes, 1 otherwise (each failure on its own line).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROLES = ["recorder", "transcriber", "summarizer", "sweeper", "review"]
SECRETISH = re.compile(r"(PASSWORD|SECRET|PIN|TOKEN|API_KEY|ACCESS_KEY)$", re.I)
# A credential in the rendered TOML: `password`-like keys, or a URL with user:password@.
TOML_SECRET = re.compile(r"^\s*[a-z_]*(password|secret|pin|token)\s*=|://[^/@\s:]+:[^/@\s]+@", re.I | re.M)


class Checker:
    def __init__(self, docs):
        self.docs = docs
        self.failures = []

    def fail(self, what, msg):
        self.failures.append(f"{what}: {msg}")

    def of_kind(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    @staticmethod
    def name(d):
        return f"{d['kind']}/{d['metadata']['name']}"


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_container(c, ck, what, pod_ports):
    names = {p.get("name") for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        p = c.get(probe)
        if not p or "httpGet" not in p:
            ck.fail(what, f"container {c['name']}: no HTTP {probe}")
            continue
        g = p["httpGet"]
        if g.get("path") != path:
            ck.fail(what, f"container {c['name']}: {probe} GET {g.get('path')}, expected {path}")
        if g.get("port") not in names:
            ck.fail(what, f"container {c['name']}: {probe} port {g.get('port')!r} is not a named container port")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(part, {}):
                ck.fail(what, f"container {c['name']}: no {r} in resources.{part}")
    sc = c.get("securityContext", {})
    if sc.get("readOnlyRootFilesystem") is not True:
        ck.fail(what, f"container {c['name']}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        ck.fail(what, f"container {c['name']}: allowPrivilegeEscalation is not false")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        ck.fail(what, f"container {c['name']}: capabilities do not drop ALL")
    for e in c.get("env", []):
        if "value" in e and SECRETISH.search(e["name"]) and e["value"]:
            ck.fail(what, f"container {c['name']}: {e['name']} has a literal value (credentials come from Secrets)")
    pod_ports.update(names)


def check(docs, roles, existing_claim):
    ck = Checker(docs)
    deployments = ck.of_kind("Deployment")
    configmaps = {d["metadata"]["name"]: d for d in ck.of_kind("ConfigMap")}
    claims = {d["metadata"]["name"] for d in ck.of_kind("PersistentVolumeClaim")}
    if existing_claim:
        claims.add(existing_claim)
    pods = []  # (deployment, labels, replicas, port names)
    by_role = {}
    for d in deployments:
        what = ck.name(d)
        spec = d["spec"]
        tpl = spec["template"]
        labels = tpl["metadata"].get("labels", {})
        if not selects(spec["selector"]["matchLabels"], labels):
            ck.fail(what, "selector does not match the pod template's labels")
        pod = tpl["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            ck.fail(what, "pod securityContext.runAsNonRoot is not true")
        if pod.get("automountServiceAccountToken") is not False:
            ck.fail(what, "the pod mounts a service-account token (opptak calls no Kubernetes API)")
        ports = set()
        for c in pod.get("containers", []):
            check_container(c, ck, what, ports)
            args = c.get("args", [])
            if args[:2] == ["run", "--roles"] and len(args) == 3:
                by_role.setdefault(args[2], []).append(d)
        for c in pod.get("initContainers", []):
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True or "ALL" not in sc.get("capabilities", {}).get("drop", []):
                ck.fail(what, f"init container {c['name']}: not read-only with all capabilities dropped")
        for v in pod.get("volumes", []):
            if v["name"] == "config" and v.get("configMap", {}).get("name") not in configmaps:
                ck.fail(what, "volume config: its ConfigMap is not rendered")
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                if v["name"] == "blobs" and claim not in claims:
                    ck.fail(what, f"volume blobs: claim {claim} is neither rendered nor the existing claim")
        pods.append((d, labels, int(spec.get("replicas", 1)), ports))
    for role in roles:
        got = by_role.get(role, [])
        if len(got) != 1:
            ck.fail(f"role {role}", f"{len(got)} Deployments run `opptak run --roles {role}`, expected 1")
    for role in by_role:
        if role not in roles:
            ck.fail(f"role {role}", "a Deployment runs a role that is not enabled")

    for name, cm in configmaps.items():
        for key, text in (cm.get("data") or {}).items():
            if TOML_SECRET.search(text or ""):
                ck.fail(f"ConfigMap/{name}", f"{key} holds what looks like a credential")

    services = ck.of_kind("Service")
    for s in services:
        what = ck.name(s)
        sel = s["spec"].get("selector", {})
        matched = [p for p in pods if selects(sel, p[1])]
        if not matched:
            ck.fail(what, f"selector {sel} matches no Deployment's pods")
        for port in s["spec"].get("ports", []):
            t = port.get("targetPort")
            if isinstance(t, str) and any(t not in p[3] for p in matched):
                ck.fail(what, f"target port {t!r} is not declared by every selected pod")
    metrics_services = [s for s in services if s["metadata"].get("labels", {}).get("opptak/metrics") == "true"]
    for role in roles:
        if not any(s["spec"].get("selector", {}).get("app.kubernetes.io/component") == role for s in metrics_services):
            ck.fail(f"role {role}", "no metrics Service")

    pdb_roles = set()
    for b in ck.of_kind("PodDisruptionBudget"):
        what = ck.name(b)
        sel = b["spec"]["selector"]["matchLabels"]
        matched = [p for p in pods if selects(sel, p[1])]
        if not matched:
            ck.fail(what, "selects no Deployment")
        elif all(p[2] < 2 for p in matched):
            ck.fail(what, "guards a Deployment of one replica (it would block every drain)")
        pdb_roles.add(sel.get("app.kubernetes.io/component", ""))
    for d, labels, replicas, _ in pods:
        role = labels.get("app.kubernetes.io/component")
        if replicas > 1 and role not in pdb_roles:
            ck.fail(ck.name(d), f"{replicas} replicas and no PodDisruptionBudget")

    for m in ck.of_kind("ServiceMonitor"):
        what = ck.name(m)
        sel = m["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if selects(sel, s["metadata"].get("labels", {}))]
        if not matched:
            ck.fail(what, "selects no Service")
        for ep in m["spec"].get("endpoints", []):
            for s in matched:
                if ep.get("port") not in {p.get("name") for p in s["spec"]["ports"]}:
                    ck.fail(what, f"port {ep.get('port')!r} is not a port of {ck.name(s)}")
        if len(matched) != len(roles):
            ck.fail(what, f"selects {len(matched)} Services, expected one per role ({len(roles)})")

    for ing in ck.of_kind("Ingress"):
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                svc = path["backend"]["service"]
                target = [s for s in services if s["metadata"]["name"] == svc["name"]]
                if not target:
                    ck.fail(ck.name(ing), f"backend Service {svc['name']} is not rendered")
                elif svc["port"].get("name") not in {p.get("name") for p in target[0]["spec"]["ports"]}:
                    ck.fail(ck.name(ing), f"backend port {svc['port']} is not a port of {svc['name']}")
    return ck


def check_config(ck, opptak_bin):
    """The real config loader on each Deployment's effective configuration."""
    configmaps = {d["metadata"]["name"]: d for d in ck.of_kind("ConfigMap")}
    with tempfile.TemporaryDirectory() as tmp:
        for d in ck.of_kind("Deployment"):
            pod = d["spec"]["template"]["spec"]
            cms = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
            for c in pod["containers"]:
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                config_path = None
                for e in c.get("env", []):
                    if e["name"] == "OPPTAK_CONFIG":
                        config_path = e.get("value")
                    elif e["name"].startswith("OPPTAK__"):
                        # From a Secret: any non-empty value (the PIN check wants one).
                        env[e["name"]] = e.get("value", "placeholder-from-secret")
                data = {}
                for name in cms:
                    data.update((configmaps.get(name) or {}).get("data") or {})
                text = data.get(os.path.basename(config_path or ""))
                if text is None:
                    ck.fail(ck.name(d), f"OPPTAK_CONFIG={config_path} is not a key of its ConfigMap")
                    continue
                f = os.path.join(tmp, f"{d['metadata']['name']}.toml")
                with open(f, "w") as out:
                    out.write(text)
                r = subprocess.run([opptak_bin, "--config", f, "config"], env=env, capture_output=True, text=True)
                if r.returncode != 0:
                    ck.fail(ck.name(d), "opptak refuses its configuration: " + one_line(r.stderr or r.stdout))
        for name, cm in configmaps.items():
            policy = (cm.get("data") or {}).get("policy.toml")
            if policy is not None:
                f = os.path.join(tmp, "policy.toml")
                with open(f, "w") as out:
                    out.write(policy)
                r = subprocess.run([opptak_bin, "policy", "check", f], capture_output=True, text=True,
                                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
                if r.returncode != 0:
                    ck.fail(f"ConfigMap/{name}", "policy.toml: " + one_line(r.stderr or r.stdout))


def one_line(text):
    """opptak's error and its causes on one line."""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rendered")
    ap.add_argument("--roles", default=",".join(ROLES))
    ap.add_argument("--existing-claim", default="")
    ap.add_argument("--opptak-bin", default="")
    a = ap.parse_args()
    with open(a.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    roles = [r for r in a.roles.split(",") if r]
    ck = check(docs, roles, a.existing_claim)
    if a.opptak_bin:
        check_config(ck, a.opptak_bin)
    for msg in ck.failures:
        print(f"  {msg}", file=sys.stderr)
    return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
