#!/usr/bin/env python3
"""test_deploy.py — the deployment examples of scripts/deploy/, checked offline: nothing here
talks to a Kubernetes cluster, a PostgreSQL server or an S3 endpoint.

  * every file of scripts/deploy/ (and its subfolders) begins with a comment block whose first
    line is `# <file name> — <what it is>`; none holds a real-looking secret (an AWS access key
    ID, a private key, a password in a postgresql:// URI);
  * every Kubernetes manifest parses (PyYAML) and each document has apiVersion, kind and
    metadata.name; then the fields the fleet relies on, kind by kind:
      - the Secret: stringData placeholders only, the keys the pods read, a DSN without a
        password and with sslmode;
      - the worker Deployment: args `worker --catalog $(BATCHREP_CATALOG) --metrics-addr
        0.0.0.0:9400 --state-dir /scratch`, BATCHREP_CATALOG and every other variable from
        keys the Secret has, /scratch an emptyDir, readiness and liveness httpGet probes on
        /metrics at port 9400, terminationGracePeriodSeconds above the 60 s drain,
        requests and limits, runAsNonRoot, readOnlyRootFilesystem, no privilege escalation;
      - the CronJobs: concurrencyPolicy Forbid, the grace period, the create-job CronJob's
        ConfigMap, script and JOB_NAME from the label job-name;
      - the ConfigMap: job.json (a CreateJob document) and replication.json parse;
  * with kubectl on PATH, each document is decoded into Kubernetes' typed objects by
    `kubectl set env --local --dry-run=client -o json` (for a Deployment or CronJob; a Secret
    or ConfigMap must get as far as "not a pod", i.e. past decoding): a field of the wrong
    type fails, and a field that the typed objects do not have (a misspelt one) is missing
    from the output. `kubectl apply/create --dry-run=client` are NOT used: they ask a server
    for API discovery even with --validate=false (checked with kubectl 1.32: they dial
    localhost:8080 without a kubeconfig). kubectl runs with a throwaway HOME and a kubeconfig
    naming http://127.0.0.1:1, inside `unshare -n` (no network at all) when that works. A
    kubectl older than 1.27 (Debian 12's kubernetes-client is 1.20, without batch/v1
    CronJob) is not used: the checks above stand in for it, as when there is no kubectl;
  * create-job.sh (the ConfigMap's script the CronJob runs) runs for real with /bin/sh and a
    `batchrep` shim that drops --catalog and calls the real binary on a SQLite state
    directory: the day derived from the Job's name, exact day windows, the token that makes a
    retried or late run return the same job, the next day a new job, and a Job name without
    the minutes refused with the command to use;
  * systemd units: `systemd-analyze verify` in a scratch root (a copy of
    /usr/lib/systemd/system, a stub /usr/local/bin/batchrep) must print nothing, and
    `systemd-analyze security --offline=yes` must rate each service at most 2.0; without
    systemd-analyze, and always, a parse of the sections and keys the units need (SIGTERM,
    TimeoutStopSec equal to the Deployment's grace period, Restart=on-failure for the fleet,
    the hardening options, the EnvironmentFile);
  * docs/fleet.md names every fleet file.
"""
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

try:
    import yaml
except ImportError:  # Debian's python3-yaml, for a python3 that is not Debian's
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import yaml
    except ImportError:
        yaml = None

DEPLOY = os.path.join(h.REPO_ROOT, "scripts", "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
FLEET_DOC = os.path.join(h.REPO_ROOT, "docs", "fleet.md")
DRAIN_S = 60            # the drain's bound (request deadlines), as the files explain it
METRICS_PORT = 9400
MIN_KUBECTL = (1, 27)   # CronJob spec.timeZone is GA from Kubernetes 1.27


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def deploy_files():
    out = []
    for root, dirs, files in os.walk(DEPLOY):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files)]
    return out


def rel(path):
    return os.path.relpath(path, h.REPO_ROOT)


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def get(obj, *path, default=None):
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and 0 <= p < len(obj):
            obj = obj[p]
        else:
            return default
    return obj


def pod_spec(doc):
    kind = doc.get("kind")
    if kind == "Deployment":
        return get(doc, "spec", "template", "spec", default={})
    if kind == "CronJob":
        return get(doc, "spec", "jobTemplate", "spec", "template", "spec", default={})
    return None


def leaves(obj, prefix=()):
    """(path, value) of every scalar in obj."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, prefix + (i,))
    else:
        yield prefix, obj


def arg_after(args, name):
    for i, a in enumerate(args[:-1]):
        if a == name:
            return args[i + 1]
    return None


def probe_port(container, probe):
    port = get(container, probe, "httpGet", "port")
    if isinstance(port, str):
        for p in container.get("ports", []):
            if p.get("name") == port:
                return p.get("containerPort")
    return port


def parse_unit(path):
    """A systemd unit file as {section: [(key, value)]}; continuation lines joined. Raises
    ValueError on a line that is neither a comment, a section, nor key=value."""
    sections, cur = {}, None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        m = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if m:
            cur = sections.setdefault(m.group(1), [])
            continue
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)", line)
        if not m or cur is None:
            raise ValueError(f"{rel(path)}: not a unit line: {line!r}")
        cur.append((m.group(1), m.group(2)))
    return sections


def unit_get(sections, section, key):
    vals = [v for k, v in sections.get(section, []) if k == key]
    return vals[-1] if vals else None


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------

def check_headers(t):
    files = deploy_files()
    t.ok(len(files) >= 9, f"scripts/deploy/ has its files ({len(files)})")
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        name = os.path.basename(path)
        first = lines[0] if lines else ""
        block = 0
        for line in lines:
            if not line.startswith("#"):
                break
            block += 1
        t.ok(first.startswith(f"# {name} — ") and len(first) > len(name) + 12 and block >= 3,
             f"{rel(path)} begins with a comment that explains it ({block} lines)")


def check_no_secrets(t):
    bad = []
    pats = [re.compile(r"\bA[KS]IA[0-9A-Z]{16}\b"),
            re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
            re.compile(r"postgres(?:ql)?://[A-Za-z0-9._%-]+:[^@/\s\[\]\"']+@")]
    for path in deploy_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for p in pats:
            for m in p.finditer(text):
                bad.append(f"{rel(path)}: {m.group(0)}")
    t.eq(bad, [], "no real-looking secret in scripts/deploy/ (access key, private key, "
                  "password in a URI)")


def check_manifests(t):
    """Parses every manifest; returns {kind/name: (path, doc)}."""
    objs = {}
    yamls = [p for p in deploy_files() if p.endswith((".yaml", ".yml"))]
    t.ok(len(yamls) >= 5, f"Kubernetes manifests found ({len(yamls)})")
    for path in yamls:
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            t.ok(False, f"{rel(path)} parses as YAML: {e}")
            continue
        good = bool(docs)
        for d in docs:
            good &= isinstance(d, dict) and bool(d.get("apiVersion")) and bool(d.get("kind")) \
                and bool(get(d, "metadata", "name"))
            if isinstance(d, dict) and d.get("kind"):
                objs[f"{d['kind']}/{get(d, 'metadata', 'name')}"] = (path, d)
        t.ok(good, f"{rel(path)}: {len(docs)} document(s), each with apiVersion, kind, "
                   f"metadata.name")
    return objs


def check_secret(t, objs):
    path, s = objs.get("Secret/batchrep", (None, None))
    if not t.ok(s is not None, "kubernetes/secret.yaml defines the Secret batchrep"):
        return {}
    sd = s.get("stringData") or {}
    t.ok("data" not in s and sd, "the Secret template uses stringData only (readable "
                                 "placeholders)")
    want = {"BATCHREP_CATALOG", "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    t.eq(sorted(want - set(sd)), [], "the Secret has the DSN, its password and the S3 keys")
    t.ok(all(("REPLACE-ME" in str(v)) or ("example" in str(v)) or k == "AWS_REGION"
             for k, v in sd.items()),
         "every Secret value is a placeholder (REPLACE-ME or an example host)")
    dsn = str(sd.get("BATCHREP_CATALOG", ""))
    t.ok(re.match(r"postgresql://[^:@/]+@[^/]+/\w+\?", dsn) and "sslmode=" in dsn,
         f"the DSN is a postgresql:// URI without a password, with sslmode ({dsn})")
    return sd


def env_refs(container):
    """{name: (secret, key, optional) | ('value', v) | ('field', path)}"""
    out = {}
    for e in container.get("env", []):
        ref = get(e, "valueFrom", "secretKeyRef")
        if ref:
            out[e["name"]] = (ref.get("name"), ref.get("key"), bool(ref.get("optional")))
        elif get(e, "valueFrom", "fieldRef"):
            out[e["name"]] = ("field", get(e, "valueFrom", "fieldRef", "fieldPath"))
        else:
            out[e["name"]] = ("value", e.get("value"))
    return out


def check_pod_common(t, what, spec, container, secret_keys, objs):
    """Security context, env from the Secret's keys, volumes and mounts."""
    psc, csc = spec.get("securityContext", {}), container.get("securityContext", {})
    t.ok(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True,
         f"{what}: runAsNonRoot")
    t.ok(csc.get("readOnlyRootFilesystem") is True, f"{what}: readOnlyRootFilesystem")
    t.ok(csc.get("allowPrivilegeEscalation") is False and
         "ALL" in (get(csc, "capabilities", "drop") or []),
         f"{what}: no privilege escalation, every capability dropped")
    refs = env_refs(container)
    bad = [f"{n}: {r}" for n, r in refs.items()
           if len(r) == 3 and (r[0] != "batchrep" or r[1] not in secret_keys)]
    t.eq(bad, [], f"{what}: every secretKeyRef names a key of the Secret batchrep")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    t.eq(sorted(m["name"] for m in mounts if m["name"] not in vols), [],
         f"{what}: every volumeMount names a volume")
    bad = []
    for v in vols.values():
        if "secret" in v:
            sv = v["secret"]
            if sv.get("secretName") != "batchrep" or any(
                    i["key"] not in secret_keys for i in sv.get("items", [])):
                bad.append(v["name"])
        if "configMap" in v and f"ConfigMap/{v['configMap'].get('name')}" not in objs:
            bad.append(v["name"])
    t.eq(bad, [], f"{what}: secret and configMap volumes name objects and keys that exist")
    tmp = [m for m in mounts if m["mountPath"] == "/tmp"]
    t.ok(tmp and "emptyDir" in vols.get(tmp[0]["name"], {}),
         f"{what}: /tmp is a writable emptyDir (the root filesystem is read-only)")
    return refs, vols


def check_deployment(t, objs, secret_keys):
    path, d = objs.get("Deployment/batchrep-worker", (None, None))
    if not t.ok(d is not None, "kubernetes/worker-deployment.yaml defines the Deployment "
                               "batchrep-worker"):
        return None
    spec = pod_spec(d)
    t.ok(isinstance(get(d, "spec", "replicas"), int) and d["spec"]["replicas"] >= 1,
         f"replicas N ({get(d, 'spec', 'replicas')})")
    sel = get(d, "spec", "selector", "matchLabels") or {}
    labels = get(d, "spec", "template", "metadata", "labels") or {}
    t.ok(sel and all(labels.get(k) == v for k, v in sel.items()),
         "the selector matches the pod template's labels")
    cs = spec.get("containers", [])
    if not t.ok(len(cs) == 1, "one container"):
        return None
    c = cs[0]
    args = [str(a) for a in c.get("args", [])]
    t.ok(args[:1] == ["worker"] and arg_after(args, "--catalog") == "$(BATCHREP_CATALOG)"
         and arg_after(args, "--metrics-addr") == f"0.0.0.0:{METRICS_PORT}"
         and arg_after(args, "--state-dir") == "/scratch" and "--until-idle" not in args,
         f"args: worker --catalog $(BATCHREP_CATALOG) --metrics-addr 0.0.0.0:{METRICS_PORT} "
         f"--state-dir /scratch ({' '.join(args)})")
    refs, vols = check_pod_common(t, "Deployment", spec, c, secret_keys, objs)
    t.ok(refs.get("BATCHREP_CATALOG", ("",))[0] == "batchrep"
         and refs.get("BATCHREP_CATALOG", (0, 0, True))[2] is False,
         "BATCHREP_CATALOG (expanded in the args) comes from the Secret, not optional")
    for var in ("PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        t.ok(refs.get(var, ("",))[0] == "batchrep", f"{var} comes from the Secret")
    scratch = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/scratch"]
    t.ok(scratch and "emptyDir" in vols.get(scratch[0]["name"], {}),
         "/scratch is an emptyDir")
    t.ok(any(p.get("containerPort") == METRICS_PORT for p in c.get("ports", [])),
         f"containerPort {METRICS_PORT}")
    for probe in ("readinessProbe", "livenessProbe"):
        t.ok(get(c, probe, "httpGet", "path") == "/metrics"
             and probe_port(c, probe) == METRICS_PORT,
             f"{probe}: httpGet /metrics on port {METRICS_PORT}")
    grace = spec.get("terminationGracePeriodSeconds")
    t.ok(isinstance(grace, int) and grace >= DRAIN_S + 20,
         f"terminationGracePeriodSeconds {grace} covers the {DRAIN_S} s drain with a margin")
    res = c.get("resources", {})
    t.ok(get(res, "requests", "cpu") and get(res, "requests", "memory")
         and get(res, "limits", "memory"), "resources: cpu and memory requests, memory limit")
    return grace


def check_cronjobs(t, objs, secret_keys, grace):
    # the fleet's creator
    path, cj = objs.get("CronJob/batchrep-daily-job", (None, None))
    if t.ok(cj is not None, "kubernetes/create-job-cronjob.yaml defines the CronJob "
                            "batchrep-daily-job"):
        spec = pod_spec(cj)
        t.eq(get(cj, "spec", "concurrencyPolicy"), "Forbid", "create-job CronJob: "
                                                             "concurrencyPolicy Forbid")
        t.ok(len(str(get(cj, "spec", "schedule", default="")).split()) == 5,
             "create-job CronJob: a five-field schedule")
        t.ok(spec.get("restartPolicy") in ("OnFailure", "Never"), "create-job CronJob: "
                                                                   "restartPolicy")
        c = (spec.get("containers") or [{}])[0]
        refs, vols = check_pod_common(t, "create-job CronJob", spec, c, secret_keys, objs)
        t.eq(refs.get("JOB_NAME"), ("field", "metadata.labels['job-name']"),
             "create-job CronJob: JOB_NAME from the pod's label job-name")
        job_dir = refs.get("JOB_DIR", ("value", None))[1]
        mount = [m for m in c.get("volumeMounts", []) if m["mountPath"] == job_dir]
        cm = vols.get(mount[0]["name"], {}).get("configMap", {}).get("name") if mount else None
        t.eq(cm, "batchrep-daily-job", "create-job CronJob: JOB_DIR is the ConfigMap "
                                       "batchrep-daily-job")
        t.eq(c.get("command"), ["/bin/sh", f"{job_dir}/create-job.sh"],
             "create-job CronJob: runs the ConfigMap's create-job.sh")
    # the single-machine worker CronJob
    path, cj = objs.get("CronJob/batchrep-worker", (None, None))
    if t.ok(cj is not None, "batchrep-cronjob.yaml defines the CronJob batchrep-worker"):
        spec = pod_spec(cj)
        c = (spec.get("containers") or [{}])[0]
        t.eq(get(cj, "spec", "concurrencyPolicy"), "Forbid", "single-machine CronJob: "
                                                             "concurrencyPolicy Forbid")
        t.ok([str(a) for a in c.get("args", [])][:2] == ["worker", "--until-idle"],
             "single-machine CronJob: worker --until-idle")
        t.eq(spec.get("terminationGracePeriodSeconds"), grace,
             "single-machine CronJob: the same grace period as the fleet's Deployment")
        t.ok(get(c, "securityContext", "readOnlyRootFilesystem") is True
             and get(spec, "securityContext", "runAsNonRoot") is True,
             "single-machine CronJob: not root, read-only root filesystem")


def check_configmap(t, objs):
    path, cm = objs.get("ConfigMap/batchrep-daily-job", (None, None))
    if not t.ok(cm is not None, "kubernetes/job-configmap.yaml defines the ConfigMap "
                                "batchrep-daily-job"):
        return None
    data = cm.get("data") or {}
    t.eq(sorted(data), ["create-job.sh", "job.json", "replication.json"],
         "the ConfigMap holds job.json, replication.json and create-job.sh")
    try:
        job = json.loads(data.get("job.json", ""))
        rules = json.loads(data.get("replication.json", ""))
    except ValueError as e:
        t.ok(False, f"job.json and replication.json parse as JSON: {e}")
        return None
    t.ok(job.get("Operation") == {"S3ReplicateObject": {}} and job.get("Report")
         and ("Manifest" in job or "ManifestGenerator" in job) and "RoleArn" in job
         and "Priority" in job and "@DAY@" in job.get("ClientRequestToken", ""),
         "job.json is a CreateJob document for S3ReplicateObject with a per-day token")
    t.ok(rules.get("Role") and rules.get("Rules"), "replication.json has Role and Rules")
    return data


def kubectl_checks(t, tmp):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        t.diag("kubectl is not on PATH: the typed decode is skipped (the checks above "
               "stand in for it)")
        return
    home = os.path.join(tmp, "kube-home")
    os.makedirs(home)
    kubeconfig = os.path.join(tmp, "kubeconfig")
    with open(kubeconfig, "w") as f:   # a server nobody listens on: never a real cluster
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster:\n"
                "    server: http://127.0.0.1:1\ncontexts:\n- name: none\n  context:\n"
                "    cluster: none\n    user: none\nusers:\n- name: none\n  user: {}\n"
                "current-context: none\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
           "KUBECONFIG": kubeconfig}
    prefix = []
    if shutil.which("unshare") and subprocess.run(
            ["unshare", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["unshare", "-n"]
    res = subprocess.run(prefix + [kubectl, "version", "--client", "-o", "json"], env=env,
                         capture_output=True, text=True, timeout=120)
    try:
        v = json.loads(res.stdout)["clientVersion"]
        version = (int(v["major"]), int(re.match(r"\d+", v["minor"]).group(0)))
    except (ValueError, KeyError, TypeError, AttributeError):
        version = None
    shown = ".".join(map(str, version)) if version else "of unknown version"
    t.diag(f"kubectl {shown}: {os.path.realpath(kubectl)}"
           f"{' (in a network namespace of its own)' if prefix else ''}")
    if not version or version < MIN_KUBECTL:
        # Debian 12's kubernetes-client is kubectl 1.20: no batch/v1 CronJob, no timeZone
        t.diag(f"kubectl is older than {'.'.join(map(str, MIN_KUBECTL))} (the API the "
               f"manifests use: batch/v1 CronJob with timeZone): the typed decode is skipped")
        return
    n = 0
    for path in [p for p in deploy_files() if p.endswith((".yaml", ".yml"))]:
        for i, doc in enumerate(load_docs(path)):
            n += 1
            one = os.path.join(tmp, f"doc-{n}.json")
            with open(one, "w") as f:
                json.dump(doc, f)
            res = subprocess.run(prefix + [kubectl, "set", "env", "--local",
                                           "--dry-run=client", "-o", "json", "-f", one,
                                           "BATCHREP_DECODE_CHECK=1"],
                                 env=env, capture_output=True, text=True, timeout=120)
            what = f"{rel(path)} #{i + 1} ({doc.get('kind')})"
            if doc.get("kind") in ("Deployment", "CronJob", "Job", "Pod", "StatefulSet",
                                   "DaemonSet"):
                if not t.ok(res.returncode == 0, f"kubectl decodes {what} into typed objects"):
                    t.diag(res.stderr.strip())
                    continue
                out = json.loads(res.stdout)
                lost = [".".join(map(str, p)) + f" = {v!r}" for p, v in leaves(doc)
                        if get(out, *p, default=KeyError) != v]
                t.eq(lost, [], f"{what}: every field is a field of the typed objects "
                               f"(none dropped or changed)")
            else:
                t.ok(res.returncode != 0 and "not a pod or does not have a pod template"
                     in res.stderr and "decode" not in res.stderr,
                     f"kubectl decodes {what} into typed objects")
                if "decode" in res.stderr:
                    t.diag(res.stderr.strip())


def check_create_job_script(t, tmp, data):
    """Runs the ConfigMap's create-job.sh as the CronJob does, with a batchrep shim."""
    real = h.batchrep_bin()
    if not t.ok(os.access(real, os.X_OK), f"the batchrep binary exists ({real})"):
        return
    job_dir = os.path.join(tmp, "job")
    os.makedirs(job_dir)
    for k, v in data.items():
        with open(os.path.join(job_dir, k), "w") as f:
            f.write(v)
    shim_dir = os.path.join(tmp, "shim")
    os.makedirs(shim_dir)
    shim = os.path.join(shim_dir, "batchrep")
    with open(shim, "w") as f:
        f.write(f"""#!{sys.executable}
# batchrep shim: records --catalog, runs the real binary on a SQLite state directory
import os, sys
args, out, i = sys.argv[1:], [], 0
while i < len(args):
    if args[i] == "--catalog":
        with open(os.environ["SHIM_LOG"], "a") as f:
            f.write(args[i + 1] + "\\n")
        i += 2
        continue
    out.append(args[i])
    i += 1
env = dict(os.environ)
env.pop("BATCHREP_CATALOG", None)
os.execve(os.environ["SHIM_REAL"], [os.environ["SHIM_REAL"], *out,
          "--state-dir", os.environ["SHIM_STATE"]], env)
""")
    os.chmod(shim, 0o755)
    log = os.path.join(tmp, "catalog.log")
    dsn = "postgresql://batchrep@postgresql.invalid:5432/batchrep?sslmode=verify-full"

    def run(job_name):
        run_tmp = tempfile.mkdtemp(dir=tmp)
        env = {"PATH": f"{shim_dir}:/usr/bin:/bin", "HOME": tmp, "JOB_NAME": job_name,
               "JOB_DIR": job_dir, "TMPDIR": run_tmp, "BATCHREP_CATALOG": dsn,
               "SHIM_LOG": log, "SHIM_REAL": real, "SHIM_STATE": os.path.join(tmp, "state")}
        res = subprocess.run(["/bin/sh", os.path.join(job_dir, "create-job.sh")], env=env,
                             capture_output=True, text=True, timeout=120)
        doc = None
        if os.path.exists(os.path.join(run_tmp, "job.json")):
            with open(os.path.join(run_tmp, "job.json")) as f:
                doc = json.loads(f.read())
        job_id = None
        if res.returncode == 0:
            job_id = json.loads(res.stdout).get("JobId")
        return res, doc, job_id

    def minutes(iso):
        return int(dt.datetime.fromisoformat(iso).timestamp()) // 60

    def window(doc):
        f = get(doc, "ManifestGenerator", "S3JobManifestGenerator", "Filter", default={})
        return f.get("CreatedAfter"), f.get("CreatedBefore")

    res, doc1, id1 = run(f"batchrep-daily-job-{minutes('2026-11-29T00:30:00+00:00')}")
    if not t.ok(res.returncode == 0 and id1, "create-job.sh creates the job (exit 0, a JobId)"):
        t.diag(res.stderr.strip())
        return
    t.eq((doc1.get("ClientRequestToken"), window(doc1), doc1["Report"]["Prefix"]),
         ("batchrep-daily-2026-11-28",
          ("2026-11-27T23:59:59.999Z", "2026-11-29T00:00:00.000Z"), "batchrep/daily/2026-11-28"),
         "scheduled 2026-11-29 00:30 UTC: the job of 2026-11-28, its exact window and token")
    with open(log) as f:
        t.eq(f.read().split("\n")[0], dsn, "create-job gets --catalog $BATCHREP_CATALOG")
    res, doc2, id2 = run(f"batchrep-daily-job-{minutes('2026-11-29T06:10:00+00:00')}")
    t.ok(res.returncode == 0 and id2 == id1,
         "a late or retried run of the same day returns the same job (one token a day)")
    res, doc3, id3 = run(f"batchrep-daily-job-{minutes('2026-11-30T00:30:00+00:00')}")
    t.ok(res.returncode == 0 and id3 and id3 != id1, "the next day's run creates a new job")
    if doc3:
        before1 = dt.datetime.fromisoformat(window(doc1)[1].replace("Z", "+00:00"))
        after3 = dt.datetime.fromisoformat(window(doc3)[0].replace("Z", "+00:00"))
        t.eq(before1 - after3, dt.timedelta(milliseconds=1),
             "consecutive days tile: CreatedAfter of a day is 1 ms before the previous "
             "day's CreatedBefore (both strict)")
    res, _, _ = run("batchrep-daily-job-manual")
    t.ok(res.returncode == 2 and "kubectl create job --from=cronjob/batchrep-daily-job"
         in res.stderr, "a Job name without the minutes is refused (exit 2) with the "
                        "command to use")


def check_units(t, tmp, grace):
    units = {os.path.basename(p): p for p in deploy_files()
             if p.endswith((".service", ".timer"))}
    t.eq(sorted(units), ["batchrep-fleet-worker@.service", "batchrep-worker.service",
                         "batchrep-worker.timer"], "the systemd units")
    parsed = {}
    for name, path in units.items():
        try:
            parsed[name] = parse_unit(path)
            t.ok(True, f"{name}: sections and keys parse")
        except ValueError as e:
            t.ok(False, f"{name}: sections and keys parse: {e}")
    fleet = parsed.get("batchrep-fleet-worker@.service", {})
    single = parsed.get("batchrep-worker.service", {})
    timer = parsed.get("batchrep-worker.timer", {})
    hardening = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                 "ProtectHome": "yes", "KillSignal": "SIGTERM",
                 "TimeoutStopSec": str(grace)}
    for name, u in (("fleet unit", fleet), ("single-machine unit", single)):
        t.eq({k: unit_get(u, "Service", k) for k in hardening}, hardening,
             f"{name}: SIGTERM, TimeoutStopSec = the Deployment's grace ({grace} s), "
             f"NoNewPrivileges, ProtectSystem=strict, PrivateTmp, ProtectHome")
        t.ok(unit_get(u, "Service", "StateDirectory") and unit_get(u, "Service", "User")
             and unit_get(u, "Install", "WantedBy"),
             f"{name}: StateDirectory, User, [Install]")
    exec_start = unit_get(fleet, "Service", "ExecStart") or ""
    t.ok(" worker " in exec_start and "--until-idle" not in exec_start
         and "--catalog" not in exec_start and "--metrics-addr" in exec_start,
         "fleet unit: a long-running worker, the DSN from the environment (not argv)")
    t.eq((unit_get(fleet, "Service", "EnvironmentFile"), unit_get(fleet, "Service", "Restart"),
          unit_get(fleet, "Service", "Type")),
         ("/etc/batchrep/fleet.env", "on-failure", "exec"),
         "fleet unit: EnvironmentFile /etc/batchrep/fleet.env, Restart=on-failure, Type=exec")
    t.ok("--until-idle" in (unit_get(single, "Service", "ExecStart") or "")
         and unit_get(single, "Service", "Type") == "oneshot",
         "single-machine unit: a oneshot worker --until-idle")
    t.ok(unit_get(timer, "Timer", "OnUnitActiveSec") and unit_get(timer, "Install", "WantedBy")
         == "timers.target", "the timer: OnUnitActiveSec, WantedBy=timers.target")

    envfile = os.path.join(DEPLOY, "batchrep-fleet.env.example")
    vals = {}
    with open(envfile) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                vals[k] = v.strip('"')
    t.ok({"BATCHREP_CATALOG", "PGPASSWORD", "AWS_ACCESS_KEY_ID",
          "AWS_SECRET_ACCESS_KEY"} <= set(vals)
         and all("REPLACE-ME" in v or "example" in v or k == "AWS_REGION"
                 for k, v in vals.items())
         and re.match(r"postgresql://[^:@/]+@", vals.get("BATCHREP_CATALOG", "")),
         "batchrep-fleet.env.example: the variables, placeholders only, no password in the "
         "DSN")

    sa = shutil.which("systemd-analyze")
    if not sa:
        t.diag("systemd-analyze is not on PATH: the parse above stands in for verify")
        return
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "etc", "systemd", "system"))
    os.makedirs(os.path.join(root, "usr", "local", "bin"))
    for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if os.path.isdir(d):
            shutil.copytree(d, os.path.join(root, "usr", "lib", "systemd", "system"),
                            symlinks=True)
            break
    stub = os.path.join(root, "usr", "local", "bin", "batchrep")
    with open(stub, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(stub, 0o755)
    for path in units.values():
        shutil.copy(path, os.path.join(root, "etc", "systemd", "system"))
    for name in ("batchrep-worker.service", "batchrep-worker.timer",
                 "batchrep-fleet-worker@9400.service"):
        res = subprocess.run([sa, "verify", f"--root={root}", name], capture_output=True,
                             text=True, timeout=120)
        out = (res.stdout + res.stderr).strip()
        if not t.ok(res.returncode == 0 and not out,
                    f"systemd-analyze verify {name}: no error, no warning"):
            t.diag(out)
    for name in ("batchrep-worker.service", "batchrep-fleet-worker@9400.service"):
        res = subprocess.run([sa, "security", "--offline=yes", "--threshold=20", "--no-pager",
                              f"--root={root}", name], capture_output=True, text=True,
                             timeout=120)
        level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", res.stdout)
        t.ok(res.returncode == 0 and level,
             f"systemd-analyze security {name}: exposure "
             f"{level.group(1) if level else '?'} <= 2.0")


def check_docs(t):
    if not t.ok(os.path.exists(FLEET_DOC), "docs/fleet.md exists"):
        return
    with open(FLEET_DOC, encoding="utf-8") as f:
        doc = f.read()
    names = [os.path.basename(p) for p in deploy_files()
             if p.startswith(K8S + os.sep) or "fleet" in os.path.basename(p)]
    t.eq([n for n in names if n not in doc], [], "docs/fleet.md names every fleet file")
    t.ok("TO FILL" not in doc and "bench/fleet.py" in doc,
         "docs/fleet.md's sizing numbers are measured, and say by which benchmark")


def main():
    t = h.Tap()
    with tempfile.TemporaryDirectory(prefix="batchrep-deploy-") as tmp:
        check_headers(t)
        check_no_secrets(t)
        if not t.ok(yaml is not None, "python3 can import yaml (PyYAML / python3-yaml)"):
            t.done()
        objs = check_manifests(t)
        secret_keys = check_secret(t, objs)
        grace = check_deployment(t, objs, secret_keys)
        check_cronjobs(t, objs, secret_keys, grace)
        data = check_configmap(t, objs)
        kubectl_checks(t, tmp)
        if data:
            check_create_job_script(t, tmp, data)
        check_units(t, tmp, grace)
        check_docs(t)
    t.done()


if __name__ == "__main__":
    main()
