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
  - no credential in a literal env value or in the ConfigMap (no password
    key, no password in a URL, no PEM private key);
  - Kafka security, from each Deployment's effective configuration: every
    file bus.tls and bus.sasl name is mounted read-only from a Secret (the
    CA and certificate may come from a ConfigMap) with mode 0400 or 0440;
    with SASL, every Deployment has a username of its own (one principal
    per role) and a password of its own, a mounted file or an env variable
    from a Secret;
  - the config volume names the rendered ConfigMap, the blobs volume a
    rendered claim (or the one given as existingClaim); with storage.blobs
    on S3 no pod mounts a blobs volume and no blobs claim is rendered, with
    file:// every pod mounts one at the path the URL names;
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
The loader checks that the files bus.tls and bus.sasl name exist: each file
a Secret volume mounts becomes a stand-in under a temporary directory, and
paths into those mounts are rewritten to point there (so a configured file
no volume provides still fails).

Usage: check_manifests.py RENDERED.yaml [--roles r1,r2,...] [--existing-claim NAME]
                          [--opptak-bin PATH]
Exit 0 when every check passes, 1 otherwise (each failure on its own line).
"""

import argparse
import json
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
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# The files of [bus.tls] / [bus.sasl]; True: it must come from a Secret.
KAFKA_FILES = [
    ("tls", "ca_file", False),
    ("tls", "cert_file", False),
    ("tls", "key_file", True),
    ("tls", "key_password_file", True),
    ("sasl", "password_file", True),
]


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


def chart_toml(text):
    """The chart's opptak.toml as nested dicts. The chart writes `[a]` and
    `[a.b]` headers and `key = value` lines whose values are JSON
    (opptak.tomlValue), so this reads them without a TOML library; the real
    loader checks the file itself (--opptak-bin)."""
    out, table = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            table = out
            for name in line[1:-1].split("."):
                table = table.setdefault(name.strip(), {})
            continue
        key, sep, value = line.partition("=")
        if not sep or table is None:
            raise ValueError(f"line {n}: not a key = value line of a table: {line!r}")
        table[key.strip()] = json.loads(value.strip())
    return out


def config_text(ck, d, c):
    """(OPPTAK_CONFIG, the ConfigMap text it names or None) of a container."""
    configmaps = {m["metadata"]["name"]: m for m in ck.of_kind("ConfigMap")}
    pod = d["spec"]["template"]["spec"]
    path = next((e.get("value") for e in c.get("env", []) if e["name"] == "OPPTAK_CONFIG"), None)
    data = {}
    for v in pod.get("volumes", []):
        if "configMap" in v:
            data.update((configmaps.get(v["configMap"]["name"]) or {}).get("data") or {})
    return path, data.get(os.path.basename(path or ""))


def effective_config(ck, d, c):
    """The container's configuration as opptak sees it: its opptak.toml with
    its OPPTAK__SECTION__KEY variables over it (from a Secret: "<secret>")."""
    _, text = config_text(ck, d, c)
    cfg = chart_toml(text or "")
    for e in c.get("env", []):
        if e["name"].startswith("OPPTAK__"):
            *sections, key = e["name"][len("OPPTAK__"):].lower().split("__")
            table = cfg
            for s in sections:
                table = table.setdefault(s, {})
            table[key] = e.get("value", "<secret>")
    return cfg


def mounted_files(pod, c):
    """Files a container gets from Secret and ConfigMap volumes: path ->
    (kind, object name, key, mode, read-only). A volume without items
    gives `<mountPath>/*` (any key)."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for m in c.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        if "secret" in v:
            sources, default = [{"secret": dict(v["secret"], name=v["secret"].get("secretName"))}], v["secret"].get("defaultMode")
        elif "configMap" in v:
            sources, default = [{"configMap": v["configMap"]}], v["configMap"].get("defaultMode")
        elif "projected" in v:
            sources, default = v["projected"].get("sources", []), v["projected"].get("defaultMode")
        else:
            continue
        # Kubernetes' default for Secret and ConfigMap files: 0644.
        default = 0o644 if default is None else default
        for src in sources:
            kind = next((k for k in ("secret", "configMap") if k in src), None)
            if kind is None:
                continue
            s = src[kind]
            items = s.get("items")
            if items is None:
                out[f"{m['mountPath']}/*"] = (kind, s.get("name"), "*", default, bool(m.get("readOnly")))
            for i in items or []:
                path = f"{m['mountPath'].rstrip('/')}/{i['path']}"
                out[path] = (kind, s.get("name"), i["key"], i.get("mode", default), bool(m.get("readOnly")))
    return out


def mounted_file(files, path):
    return files.get(path) or files.get(f"{os.path.dirname(path)}/*")


def check_kafka_security(ck, deployments):
    """[bus.tls] / [bus.sasl] files mounted from Secrets; one principal per role."""
    users, passwords = {}, {}
    for d in deployments:
        what = ck.name(d)
        pod = d["spec"]["template"]["spec"]
        for c in pod.get("containers", []):
            try:
                bus = effective_config(ck, d, c).get("bus", {})
            except ValueError as e:
                ck.fail(what, f"container {c['name']}: its opptak.toml: {e}")
                continue
            files = mounted_files(pod, c)
            tls, sasl = bus.get("tls", {}), bus.get("sasl", {})
            sources = {}
            for section, key, secret in KAFKA_FILES:
                if section == "tls" and tls.get("enabled") is not True:
                    continue
                path = str(bus.get(section, {}).get(key) or "")
                if not path:
                    continue
                name = f"bus.{section}.{key}"
                f = mounted_file(files, path)
                if f is None:
                    ck.fail(what, f"container {c['name']}: {name} = {path}: no Secret or ConfigMap volume mounts it")
                    continue
                kind, obj, item, mode, read_only = f
                if secret and kind != "secret":
                    ck.fail(what, f"container {c['name']}: {name} = {path} comes from {kind} {obj}, not from a Secret")
                if not read_only:
                    ck.fail(what, f"container {c['name']}: {name} = {path} is on a mount that is not readOnly")
                if mode & ~0o440:
                    ck.fail(what, f"container {c['name']}: {name} = {path} has mode {mode:04o}, expected 0400 or 0440")
                sources[key] = (obj, item)
            if not str(sasl.get("mechanism") or ""):
                continue
            user = str(sasl.get("username") or "")
            if not user:
                ck.fail(what, f"container {c['name']}: SASL on ({sasl['mechanism']}) and no bus.sasl.username")
            else:
                users.setdefault(user, []).append(what)
            if "password_file" in sources:
                passwords.setdefault(sources["password_file"], []).append(what)
            elif sasl.get("password_env"):
                env = next((e for e in c.get("env", []) if e["name"] == sasl["password_env"]), None)
                ref = ((env or {}).get("valueFrom") or {}).get("secretKeyRef")
                if ref is None:
                    ck.fail(what, f"container {c['name']}: bus.sasl.password_env = {sasl['password_env']} is not set from a Secret")
                else:
                    passwords.setdefault((ref.get("name"), ref.get("key")), []).append(what)
            elif not sasl.get("password_file"):
                ck.fail(what, f"container {c['name']}: SASL on and neither bus.sasl.password_file nor password_env")
    for user, whats in users.items():
        if len(whats) > 1:
            ck.fail(f"Kafka principal User:{user}", f"shared by {', '.join(whats)}: one principal per role (docs/security.md)")
    for (obj, item), whats in passwords.items():
        if len(whats) > 1:
            ck.fail(f"Kafka password {obj}/{item}", f"shared by {', '.join(whats)}: each principal has its own")


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


def check_blob_store(ck, deployments, claims):
    """storage.blobs and the blobs volume agree: on S3 none, on file:// one."""
    for d in deployments:
        what = ck.name(d)
        pod = d["spec"]["template"]["spec"]
        has_volume = any(v["name"] == "blobs" for v in pod.get("volumes", []))
        for c in pod.get("containers", []):
            try:
                blobs = effective_config(ck, d, c).get("storage", {}).get("blobs", "")
            except ValueError as e:
                ck.fail(what, f"container {c['name']}: its opptak.toml: {e}")
                continue
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
            if blobs.startswith("s3://"):
                if has_volume or "blobs" in mounts:
                    ck.fail(what, f"container {c['name']}: storage.blobs is {blobs} yet a blobs volume is mounted")
            elif blobs.startswith("file://"):
                if mounts.get("blobs") != blobs[len("file://"):]:
                    ck.fail(what, f"container {c['name']}: storage.blobs {blobs} is not where the blobs volume is mounted")
            else:
                ck.fail(what, f"container {c['name']}: storage.blobs {blobs!r} is neither s3:// nor file://")
    s3 = any(
        effective_config(ck, d, c).get("storage", {}).get("blobs", "").startswith("s3://")
        for d in deployments
        for c in d["spec"]["template"]["spec"].get("containers", [])
    )
    if s3 and any(n.endswith("-blobs") for n in claims):
        ck.fail("PersistentVolumeClaim", "a blobs claim is rendered although storage.blobs is on S3")


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
            if PRIVATE_KEY.search(text or ""):
                ck.fail(f"ConfigMap/{name}", f"{key} holds a private key")
    check_kafka_security(ck, deployments)
    check_blob_store(ck, deployments, {d["metadata"]["name"] for d in ck.of_kind("PersistentVolumeClaim")})

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


def stand_ins(root, files):
    """Creates each mounted Secret file under root (a placeholder, its mode);
    returns (mount prefix, its stand-in) pairs for rewriting paths."""
    prefixes = set()
    for path, (kind, _, item, mode, _) in files.items():
        if kind != "secret":
            continue
        prefixes.add(os.path.dirname(path))
        if item == "*":
            continue
        local = root + path
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as out:
            out.write("stand-in for a file from a Secret\n")
        os.chmod(local, mode | 0o400)
    # Longest first, so /a/b is rewritten before /a.
    return [(p, root + p) for p in sorted(prefixes, key=len, reverse=True)]


def rewrite(value, prefixes):
    """A path into a Secret mount -> its stand-in; anything else unchanged."""
    for p, local in prefixes:
        if value.startswith(p + "/"):
            return local + value[len(p):]
    return value


def check_config(ck, opptak_bin):
    """The real config loader on each Deployment's effective configuration."""
    configmaps = {d["metadata"]["name"]: d for d in ck.of_kind("ConfigMap")}
    with tempfile.TemporaryDirectory() as tmp:
        for d in ck.of_kind("Deployment"):
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"]:
                prefixes = stand_ins(os.path.join(tmp, d["metadata"]["name"]), mounted_files(pod, c))
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                for e in c.get("env", []):
                    if e["name"].startswith("OPPTAK__"):
                        # From a Secret: any non-empty value (the PIN check wants one).
                        env[e["name"]] = rewrite(e.get("value", "placeholder-from-secret"), prefixes)
                config_path, text = config_text(ck, d, c)
                if text is None:
                    ck.fail(ck.name(d), f"OPPTAK_CONFIG={config_path} is not a key of its ConfigMap")
                    continue
                # The chart writes paths as JSON strings: "/run/opptak/kafka/ca.crt".
                for p, local in prefixes:
                    text = text.replace(f'"{p}/', f'"{local}/')
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
