#!/usr/bin/env python3
"""e2e.py — end-to-end benchmarks of issue 5, against Ceph RGW and an instant canned endpoint.

  python3 bench/e2e.py rgw     [--objects 10000] [--conc 32] [--runs 1] [--versions 1,3]
  python3 bench/e2e.py instant [--tasks 200000] [--conc 64,256] [--runs 3] [--acls disabled]
  python3 bench/e2e.py scale   [--rows 1000000,10000000] [--conc 256] [--acls disabled]

--acls says what the instant endpoint's buckets answer to GetBucketOwnershipControls:
"disabled" (BucketOwnerEnforced, the default of new AWS buckets; a version costs HEAD + COPY)
or "enabled" (none set; batchrep also reads each version's ACL: HEAD + GetObjectAcl + COPY).
rclone carries no ACL either way. The instant benchmark also runs the bare request loop
(bench_s3loop head, then copy, over the same manifest: tool=floor), the CPU floor of libcurl
on this machine for the same two requests per row.

batchrep runs twice in each benchmark: tool=batchrep with the CSV manifest (bucket, key,
version: a version costs HeadObject + CopyObject, plus GetObjectAcl where ACLs are enabled)
and tool=batchrep-inv with an S3 Inventory report of the same versions carrying every
optional column (EncryptionStatus, ObjectLock*, ObjectAccessControlList, ...): the row tells
what the copy needs, so a version costs one CopyObject.

Every client run prints one machine-readable line
  bench=rgw tool=batchrep versions=1 objects=10000 conc=32 seconds=.. objects_per_s=..
    cpu_s=.. cpu_ms_per_1000=.. peak_rss_kb=.. ok=1
and each benchmark ends with summary lines (median, min, max, peak RSS) and the ratios, all
measured in the same run against the same server. Client CPU is user+sys of the client
process alone (os.wait4 on it: its rusage, not the server's); peak RSS is its ru_maxrss.

Servers: RGW is started with scripts/rgw.sh (memstore OSD, 127.0.0.1 only); the instant
endpoint is build/bench/bench_instant_server on 127.0.0.1. Nothing is sent elsewhere.
Peers: rclone (Debian, `copy --files-from`, AWS_CA_BUNDLE unset as test-servers.md §7 says)
and the AWS CLI (`aws s3 cp --recursive`, max_concurrent_requests = the same concurrency).
"""
import argparse
import base64
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
BATCHREP = os.path.join(BUILD, "bin", "batchrep")
S3LOOP = os.path.join(BUILD, "bench", "bench_s3loop")
INSTANT = os.path.join(BUILD, "bench", "bench_instant_server")
RGW_SH = os.path.join(ROOT, "scripts", "rgw.sh")


def machine_line():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f'machine nproc={os.cpu_count()} cpu="{model}"'


def measure(cmd, env, cwd=None, stdout=subprocess.DEVNULL):
    """Runs cmd; returns (seconds, cpu_s of that process, peak_rss_kb, returncode).

    Under GNU time (/usr/bin/time -o FILE -f "%M %U %S"), which reports the tool's own
    rusage: the rusage Python gets from wait4 on a child it forked counts the Python
    process's own resident pages at the fork as the child's peak RSS (ru_maxrss is taken
    from the pre-exec image too), and this script holds manifests in memory."""
    with tempfile.NamedTemporaryFile("r", prefix="batchrep-bench-time-") as tf:
        t0 = time.monotonic()
        p = subprocess.Popen(["/usr/bin/time", "-o", tf.name, "-f", "%M %U %S", *cmd],
                             env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
        # stderr is drained after exit: the tools print little there (errors only)
        _, err = p.communicate()
        dt = time.monotonic() - t0
        last = (tf.read().strip().splitlines() or ["0 0 0"])[-1].split()
    rss, user, sys_s = int(last[0]), float(last[1]), float(last[2])
    if p.returncode != 0:
        sys.stderr.write(f"[{cmd[0]} exit {p.returncode}] "
                         f"{err.decode(errors='replace')[-2000:]}\n")
    return dt, user + sys_s, rss, p.returncode


def s3_env(endpoint):
    env = dict(os.environ)
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    env.pop("AWS_PROFILE", None)
    return env


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
    return path


def batchrep_cmd(work, manifest, dst, conc, tag):
    """The job document and rules for one run; the manifest and report are local files. A
    manifest ending in manifest.json is an S3 Inventory report (write_inventory)."""
    spec = ({"Format": "S3InventoryReport_CSV_20161130"} if manifest.endswith("manifest.json")
            else {"Format": "S3BatchOperations_CSV_20180820",
                  "Fields": ["Bucket", "Key", "VersionId"]})
    job = write_json(os.path.join(work, f"job-{tag}.json"), {
        "AccountId": "123456789012", "ConfirmationRequired": False,
        "Operation": {"S3ReplicateObject": {}},
        "Manifest": {"Spec": spec, "Location": {"ObjectArn": manifest}},
        "Report": {"Bucket": os.path.join(work, f"report-{tag}"), "Format": "Report_CSV_20180820",
                   "Enabled": True, "ReportScope": "AllTasks", "Prefix": "r"},
        "ClientRequestToken": f"bench-{tag}-{time.time_ns()}", "Priority": 10,
        "RoleArn": "arn:aws:iam::123456789012:role/batch-replication"})
    rules = write_json(os.path.join(work, f"rules-{tag}.json"), {
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [{"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::{dst}"}}]})
    os.makedirs(os.path.join(work, f"report-{tag}"), exist_ok=True)
    return [BATCHREP, "run", job, "--replication-config", rules, "--state-dir",
            os.path.join(work, f"state-{tag}"), "--concurrency", str(conc), "--no-progress"]


def write_inventory(root, rows, owner_id):
    """An S3 Inventory report (AWS's layout, gzip, every optional column) under root for the
    rows (dicts: Bucket, Key, VersionId, IsLatest, Size, LastModifiedDate, ETag,
    StorageClass), each unencrypted, unlocked, with the default ACL (owner_id's
    FULL_CONTROL): what batchrep needs to copy a version with one CopyObject. Returns the
    path of manifest.json. Built by tests/fixtures/make_inventory.py."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    import make_inventory as mi
    acl = base64.b64encode(json.dumps({"version": "2022-11-10", "status": "AVAILABLE", "grants": [
        {"canonicalId": owner_id, "permission": "FULL_CONTROL",
         "type": "CanonicalUser"}]}).encode()).decode()
    for r in rows:
        r.update(IsDeleteMarker=False, EncryptionStatus="NOT-SSE", BucketKeyStatus="DISABLED",
                 ObjectAccessControlList=acl, ObjectOwner=owner_id)
    return os.path.join(root, mi.build(root, rows, mi.FULL_SCHEMA, rows[0]["Bucket"], "inv"))


def rclone_env(endpoint):
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 fails with it set (test-servers.md §7)
    env.update(RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_B_TYPE="s3",
               RCLONE_CONFIG_B_PROVIDER="Ceph", RCLONE_CONFIG_B_ENDPOINT=endpoint,
               RCLONE_CONFIG_B_ACCESS_KEY_ID="testing",
               RCLONE_CONFIG_B_SECRET_ACCESS_KEY="testing",
               RCLONE_CONFIG_B_FORCE_PATH_STYLE="true", RCLONE_CONFIG_B_REGION="us-east-1")
    return env


def rclone_cmd(src, dst, files_from, conc, no_check_dest=False):
    return ["rclone", "copy", f"b:{src}", f"b:{dst}", "--files-from", files_from,
            "--transfers", str(conc), "--checkers", str(conc), "-q"] + (["--no-check-dest", "--no-traverse"] if no_check_dest else [])


def aws_env(endpoint, work, conc):
    cfg = os.path.join(work, "awsconfig")
    with open(cfg, "w") as f:
        f.write("[default]\nregion = us-east-1\ns3 =\n"
                f"  max_concurrent_requests = {conc}\n  max_queue_size = 10000\n"
                "  addressing_style = path\n")
    env = s3_env(endpoint)
    env["AWS_CONFIG_FILE"] = cfg
    return env


def fmt_line(bench, tool, extra, n, dt, cpu, rss, rc):
    d = dict(bench=bench, tool=tool, **extra, objects=n, seconds=f"{dt:.3f}",
             objects_per_s=f"{n / dt:.0f}", cpu_s=f"{cpu:.3f}",
             cpu_ms_per_1000=f"{cpu * 1e6 / n:.1f}", cpu_us_per_task=f"{cpu * 1e6 / n:.1f}",
             peak_rss_kb=rss, ok=int(rc == 0))
    line = " ".join(f"{k}={v}" for k, v in d.items())
    print(line, flush=True)
    return dict(rate=n / dt, cpu=cpu / n, rss=rss, ok=rc == 0)


def summarize(bench, tool, extra, results):
    rates = [r["rate"] for r in results]
    cpus = [r["cpu"] * 1e6 for r in results]
    tag = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"summary bench={bench} tool={tool} {tag} runs={len(results)} "
          f"median={statistics.median(rates):.0f} min={min(rates):.0f} max={max(rates):.0f} "
          f"unit=objects_per_s cpu_us_per_object_median={statistics.median(cpus):.1f} "
          f"peak_rss_kb={max(r['rss'] for r in results)}", flush=True)
    return dict(rate=statistics.median(rates), cpu=statistics.median(cpus),
                rss=max(r["rss"] for r in results))


def ratios(bench, extra, s):
    """batchrep (CSV manifest) and batchrep-inv (Inventory manifest) against each peer."""
    tag = " ".join(f"{k}={v}" for k, v in extra.items())
    for me in ("batchrep", "batchrep-inv"):
        b = s.get(me)
        if not b:
            continue
        for peer, p in s.items():
            if peer.startswith("batchrep"):
                continue
            print(f"ratio bench={bench} {tag} tool={me} vs={peer} "
                  f"speed={b['rate'] / p['rate']:.2f} cpu_per_object={b['cpu'] / p['cpu']:.3f} "
                  f"({me} {b['rate']:.0f}/s {b['cpu']:.0f} us; {peer} {p['rate']:.0f}/s "
                  f"{p['cpu']:.0f} us)", flush=True)


# ---- RGW --------------------------------------------------------------------------------

def rgw_inventory(endpoint, bucket, root):
    """The Inventory report of bucket as S3 would write it (from its listing)."""
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    rows = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        rows += [{"Bucket": bucket, "Key": v["Key"], "VersionId": v["VersionId"],
                  "IsLatest": v["IsLatest"], "Size": v["Size"],
                  "LastModifiedDate": v["LastModified"], "ETag": v["ETag"].strip('"'),
                  "StorageClass": v.get("StorageClass", "STANDARD")}
                 for v in page.get("Versions", [])]
    return write_inventory(root, rows, s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"])


def bench_rgw(a):
    rgw_dir = a.rgw_dir
    out = subprocess.run(["bash", RGW_SH, "start", rgw_dir], check=True, capture_output=True,
                         text=True)
    endpoint = out.stdout.strip().splitlines()[-1]
    print(machine_line())
    print(f"server ceph-rgw {endpoint} (scripts/rgw.sh start {rgw_dir}; memstore OSD)")
    work = tempfile.mkdtemp(prefix="batchrep-bench-rgw-")
    env = s3_env(endpoint)
    tools = a.tools.split(",")
    try:
        for versions in [int(v) for v in a.versions.split(",")]:
            nkeys = (a.objects + versions - 1) // versions
            n = nkeys * versions
            src = f"src{versions}v{int(time.time())}"
            manifest = os.path.join(work, f"manifest-{versions}.csv")
            subprocess.run([S3LOOP, "mkbucket", src], env=env, check=True)
            subprocess.run([S3LOOP, "put", src, str(nkeys), str(versions), "1024", "32",
                            manifest], env=env, check=True, stdout=subprocess.DEVNULL)
            files_from = os.path.join(work, f"files-{versions}.txt")
            with open(files_from, "w") as f:
                f.writelines(f"obj/{k:06d}\n" for k in range(nkeys))
            inventory = None
            if "batchrep-inv" in tools:
                inventory = rgw_inventory(endpoint, src, os.path.join(work, f"inv-{versions}"))
            extra = dict(versions=versions, conc=a.conc)
            results = {t: [] for t in tools}
            for run in range(a.runs):
                for tool in tools:
                    dst = f"d{versions}{tool[:3]}{run}{int(time.time()) % 100000}"
                    subprocess.run([S3LOOP, "mkbucket", dst], env=env, check=True)
                    tag = f"{versions}-{tool}-{run}"
                    if tool == "batchrep":
                        cmd, cenv, cnt = batchrep_cmd(work, manifest, dst, a.conc, tag), env, n
                    elif tool == "batchrep-inv":
                        cmd, cenv, cnt = batchrep_cmd(work, inventory, dst, a.conc, tag), env, n
                    elif tool == "s3loop":
                        cmd, cenv, cnt = [S3LOOP, "copy", manifest, dst, str(a.conc)], env, n
                    elif tool == "rclone":
                        # rclone copies the latest version of each key only
                        cmd = rclone_cmd(src, dst, files_from, a.conc)
                        cenv, cnt = rclone_env(endpoint), nkeys
                    elif tool == "aws":
                        cmd = ["aws", "s3", "cp", f"s3://{src}", f"s3://{dst}", "--recursive",
                               "--only-show-errors"]
                        cenv, cnt = aws_env(endpoint, work, a.conc), nkeys
                    else:
                        raise SystemExit(f"unknown tool {tool}")
                    if run == 0:
                        print(f"command tool={tool} {' '.join(cmd)}", flush=True)
                    dt, cpu, rss, rc = measure(cmd, cenv)
                    results[tool].append(fmt_line("rgw", tool, extra, cnt, dt, cpu, rss, rc))
            s = {t: summarize("rgw", t, extra, r) for t, r in results.items() if r}
            ratios("rgw", extra, s)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        if a.stop:
            subprocess.run(["bash", RGW_SH, "stop", rgw_dir])


# ---- instant endpoint -------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_instant(versions=1, threads=1, acls="disabled"):
    """acls: "disabled" (buckets answer Object Ownership BucketOwnerEnforced, the default of
    new AWS buckets: nobody reads object ACLs) or "enabled" (no ownership controls: batchrep
    reads each version's ACL to carry it, one GetObjectAcl per version)."""
    port = free_port()
    ownership = "BucketOwnerEnforced" if acls == "disabled" else "none"
    p = subprocess.Popen([INSTANT, str(port), str(versions), str(threads), ownership],
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return p, f"http://127.0.0.1:{port}"


def gen_manifest(path, rows, bucket="src"):
    """rows lines 'src,obj/NNNNNNNNNN,v1' (one version per key: HEAD + COPY per row)."""
    with open(path, "w") as f:
        chunk = 100000
        for start in range(0, rows, chunk):
            f.write("".join(f"{bucket},obj/{i:010d},v1\n"
                            for i in range(start, min(rows, start + chunk))))


def server_cpu(p):
    with open(f"/proc/{p.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_instant(a):
    print(machine_line())
    work = tempfile.mkdtemp(prefix="batchrep-bench-inst-")
    srv, endpoint = start_instant(1, a.server_threads, a.acls)
    print(f"server bench_instant_server {endpoint} threads={a.server_threads} acls={a.acls}")
    env = s3_env(endpoint)
    try:
        n = a.tasks
        manifest = os.path.join(work, "manifest.csv")
        gen_manifest(manifest, n)
        when = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.timezone.utc)
        inventory = write_inventory(os.path.join(work, "inv"), [
            {"Bucket": "src", "Key": f"obj/{i:010d}", "VersionId": "v1", "IsLatest": True,
             "Size": 1024, "LastModifiedDate": when, "ETag": "0f343b0931126a20f133d67c2b018a3b",
             "StorageClass": "STANDARD"} for i in range(n)], "o")
        files_from = os.path.join(work, "files.txt")
        nr = min(n, a.rclone_tasks)
        with open(files_from, "w") as f:
            f.writelines(f"obj/{k:010d}\n" for k in range(nr))
        for conc in [int(c) for c in a.conc.split(",")]:
            extra = dict(conc=conc)
            results = {"batchrep": [], "batchrep-inv": [], "rclone": [], "floor": []}
            for run in range(a.runs):
                tag = f"{conc}-{run}"
                for tool in results:
                    if tool == "batchrep":
                        cmds, cenv, cnt = [batchrep_cmd(work, manifest, "dst", conc, tag)], env, n
                    elif tool == "batchrep-inv":
                        cmds = [batchrep_cmd(work, inventory, "dst", conc, tag + "i")]
                        cenv, cnt = env, n
                    elif tool == "rclone":
                        cmds = [rclone_cmd("src", "dst", files_from, conc, no_check_dest=True)]
                        cenv, cnt = rclone_env(endpoint), nr
                    else:
                        # the libcurl floor: the bare loop sends the same HEAD and CopyObject
                        # per row (one after the other), with no engine around them
                        cmds = [[S3LOOP, "head", manifest, str(conc)],
                                [S3LOOP, "copy", manifest, "dst", str(conc)]]
                        cenv, cnt = env, n
                    if run == 0:
                        for cmd in cmds:
                            print(f"command tool={tool} {' '.join(cmd)}", flush=True)
                    s0 = server_cpu(srv)
                    dt = cpu = rss = rc = 0
                    for cmd in cmds:
                        d1, c1, r1, rc1 = measure(cmd, cenv)
                        dt, cpu, rss, rc = dt + d1, cpu + c1, max(rss, r1), rc or rc1
                    s1 = server_cpu(srv)
                    r = fmt_line("instant", tool, extra, cnt, dt, cpu, rss, rc)
                    print(f"  server_cpu_s={s1 - s0:.2f}", flush=True)
                    results[tool].append(r)
            s = {t: summarize("instant", t, extra, r) for t, r in results.items()}
            ratios("instant", extra, s)
            f, p = s["floor"], s["rclone"]
            print(f"floor bench=instant conc={conc} cpu_per_object_floor_vs_rclone="
                  f"{f['cpu'] / p['cpu']:.3f} (the bare libcurl loop's {f['cpu']:.0f} us per "
                  f"HEAD + COPY; rclone {p['cpu']:.0f} us)", flush=True)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait()
        shutil.rmtree(work, ignore_errors=True)


def bench_scale(a):
    print(machine_line())
    work = tempfile.mkdtemp(prefix="batchrep-bench-scale-", dir=a.tmp)
    srv, endpoint = start_instant(1, a.server_threads, a.acls)
    print(f"server bench_instant_server {endpoint} threads={a.server_threads} acls={a.acls}")
    env = s3_env(endpoint)
    try:
        for rows in [int(r) for r in a.rows.split(",")]:
            manifest = os.path.join(work, f"manifest-{rows}.csv")
            gen_manifest(manifest, rows)
            cmd = batchrep_cmd(work, manifest, "dst", a.conc, f"scale{rows}")
            print(f"command rows={rows} {' '.join(cmd)}", flush=True)
            dt, cpu, rss, rc = measure(cmd, env)
            print(f"bench=scale rows={rows} conc={a.conc} seconds={dt:.1f} "
                  f"rows_per_s={rows / dt:.0f} cpu_s={cpu:.1f} cpu_us_per_row={cpu * 1e6 / rows:.1f} "
                  f"peak_rss_kb={rss} peak_rss_mib={rss / 1024:.1f} ok={int(rc == 0)}", flush=True)
            os.unlink(manifest)
            shutil.rmtree(os.path.join(work, f"state-scale{rows}"), ignore_errors=True)
            shutil.rmtree(os.path.join(work, f"report-scale{rows}"), ignore_errors=True)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("rgw")
    r.add_argument("--objects", type=int, default=10000)
    r.add_argument("--conc", type=int, default=32)
    r.add_argument("--runs", type=int, default=1)
    r.add_argument("--versions", default="1,3")
    r.add_argument("--tools", default="s3loop,batchrep,batchrep-inv,rclone,aws")
    r.add_argument("--rgw-dir", default="/tmp/batchrep-rgw")
    r.add_argument("--keep", action="store_true")
    r.add_argument("--stop", action="store_true", help="stop RGW at the end")
    i = sub.add_parser("instant")
    i.add_argument("--tasks", type=int, default=200000)
    i.add_argument("--rclone-tasks", type=int, default=50000)
    i.add_argument("--conc", default="64,256")
    i.add_argument("--runs", type=int, default=3)
    i.add_argument("--server-threads", type=int, default=1)
    i.add_argument("--acls", choices=("disabled", "enabled"), default="disabled")
    s = sub.add_parser("scale")
    s.add_argument("--rows", default="1000000,10000000")
    s.add_argument("--conc", type=int, default=256)
    s.add_argument("--server-threads", type=int, default=1)
    s.add_argument("--tmp", default=None)
    s.add_argument("--acls", choices=("disabled", "enabled"), default="disabled")
    a = ap.parse_args()
    {"rgw": bench_rgw, "instant": bench_instant, "scale": bench_scale}[a.what](a)


if __name__ == "__main__":
    main()
