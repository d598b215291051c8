#!/usr/bin/env python3
"""demo_data.py URL WORK [--show JOB_ID] — sample data for scripts/demo.sh, and the report.

Creates on the S3 server at URL: demo-src (versioned) with a few keys of 1-4 versions each
(one ending in a delete marker, some with metadata and tags), demo-dst and demo-dst-tagged
(versioned), demo-reports and demo-manifests; writes WORK/job.json (a CreateJob document),
WORK/replication.json (PutBucketReplication JSON) and uploads the manifest. With --show, prints
the job's report manifest.json, its results files and the destinations' versions.
"""
import json
import sys
import time
import urllib.parse

import boto3
from botocore.config import Config

url, work = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="demo",
                  aws_secret_access_key="demo", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))

if "--show" in sys.argv:
    job_id = sys.argv[sys.argv.index("--show") + 1]
    base = f"batch-replication/job-{job_id}/"
    m = s3.get_object(Bucket="demo-reports", Key=base + "manifest.json")["Body"].read()
    print(f"--- s3://demo-reports/{base}manifest.json")
    print(m.decode())
    for r in json.loads(m)["Results"]:
        print(f"--- s3://demo-reports/{r['Key']} ({r['TaskExecutionStatus']})")
        print(s3.get_object(Bucket="demo-reports", Key=r["Key"])["Body"].read().decode(), end="")
    for b in ("demo-dst", "demo-dst-tagged"):
        print(f"--- versions now in {b} (newest first):")
        page = s3.list_object_versions(Bucket=b)
        items = [(v["Key"], "version", v["VersionId"][:8], v["IsLatest"], v["LastModified"])
                 for v in page.get("Versions", [])]
        items += [(d["Key"], "delete marker", d["VersionId"][:8], d["IsLatest"], d["LastModified"])
                  for d in page.get("DeleteMarkers", [])]
        # newest first within a key; moto stamps to the second, so the current one leads ties
        items.sort(key=lambda i: (i[0], -i[4].timestamp(), not i[3]))
        for k, kind, vid, latest, _ in items:
            print(f"    {k:24} {kind:14} {vid}…{'  (current)' if latest else ''}")
    sys.exit(0)

for b in ("demo-src", "demo-dst", "demo-dst-tagged", "demo-reports", "demo-manifests"):
    s3.create_bucket(Bucket=b)
    if b in ("demo-src", "demo-dst", "demo-dst-tagged"):
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})

rows = []
def put(key, body=None, **kw):
    if body is None:
        r = s3.delete_object(Bucket="demo-src", Key=key)
    else:
        r = s3.put_object(Bucket="demo-src", Key=key, Body=body.encode(), **kw)
    rows.append((key, r["VersionId"]))
    time.sleep(1.05)  # moto stamps LastModified to the second: keep versions apart

print("== sample data in demo-src:")
for i in range(1, 5):
    put("reports/2026/summary.csv", f"revision {i}\n", ContentType="text/csv",
        Metadata={"revision": str(i)})
put("photos/cat picture.jpg", "meow v1", Tagging="replicate=yes")
put("photos/cat picture.jpg", "meow v2", Tagging="replicate=yes")
put("tmp/scratch.txt", "scratch")
put("tmp/scratch.txt")  # a delete marker
put("archive/old+report.txt", "old")
for key, vid in rows:
    print(f"    {key:28} {vid}")

manifest = "".join(f"demo-src,{urllib.parse.quote(k, safe='/')},{v}\n" for k, v in reversed(rows))
r = s3.put_object(Bucket="demo-manifests", Key="manifest.csv", Body=manifest.encode())
etag = r["ETag"].strip('"')
print("== manifest s3://demo-manifests/manifest.csv (newest first, keys URL-encoded):")
print(manifest, end="")

job = {
    "AccountId": "123456789012",
    "ConfirmationRequired": False,
    "Operation": {"S3ReplicateObject": {}},
    "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                          "Fields": ["Bucket", "Key", "VersionId"]},
                 "Location": {"ObjectArn": "arn:aws:s3:::demo-manifests/manifest.csv",
                              "ETag": etag}},
    "Report": {"Bucket": "arn:aws:s3:::demo-reports", "Prefix": "batch-replication",
               "Format": "Report_CSV_20180820", "Enabled": True, "ReportScope": "AllTasks"},
    "ClientRequestToken": "demo-1",
    "Description": "batchrep demo: backfill demo-dst",
    "Priority": 10,
    "RoleArn": "arn:aws:iam::123456789012:role/batch-replication",
}
rules = {
    "Role": "arn:aws:iam::123456789012:role/replication",
    "Rules": [
        {"ID": "everything", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled"},
         "Destination": {"Bucket": "arn:aws:s3:::demo-dst"}},
        {"ID": "not-tmp-markers", "Priority": 2, "Status": "Enabled", "Filter": {"Prefix": "archive/"},
         "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::demo-dst", "StorageClass": "STANDARD_IA"}},
        {"ID": "tagged", "Priority": 3, "Status": "Enabled",
         "Filter": {"Tag": {"Key": "replicate", "Value": "yes"}},
         "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::demo-dst-tagged"}},
    ],
}
with open(f"{work}/job.json", "w") as f:
    json.dump(job, f, indent=2)
with open(f"{work}/replication.json", "w") as f:
    json.dump(rules, f, indent=2)
