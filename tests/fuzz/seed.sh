#!/usr/bin/env bash
# seed.sh OUT — seed corpora for the fuzz targets, made from tests/fixtures/ (so a new fixture
# is a new seed without a commit here): OUT/<target>/ for each target, replaced whole.
#   fuzz_csv            manifest/good and bad CSVs, two of them also gzip- and zstd-compressed
#   fuzz_inventory      each Inventory fixture as "fileSchema\n" + its data file, decompressed
#   fuzz_manifest_json  the Inventory and completion-report manifest.json files
#   fuzz_report         the report writer's golden results files
#   fuzz_xml            the S3 answers of tests/fixtures/s3/*.xml
#   fuzz_rules          the replication configurations of tests/fixtures/replicate/
#   fuzz_job            none in the fixtures (integration tests build documents in Python)
# tests/fuzz/corpus/<target>/ holds the committed seeds the fixtures lack (job documents,
# tagging and ACL answers, ...) and the inputs of bugs found; the run uses both folders.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$1
FIX=$ROOT/tests/fixtures

fresh() { rm -rf "${OUT:?}/$1" && mkdir -p "$OUT/$1"; }

fresh fuzz_csv
for f in "$FIX"/manifest/good/*.csv "$FIX"/manifest/bad/*.csv; do
    cp "$f" "$OUT/fuzz_csv/$(basename "$(dirname "$f")")-$(basename "$f")"
done
gzip -c "$FIX/manifest/good/tricky-keys.csv" >"$OUT/fuzz_csv/tricky-keys.csv.gz"
zstd -q -c "$FIX/manifest/good/versions.csv" >"$OUT/fuzz_csv/versions.csv.zst"

fresh fuzz_inventory
fresh fuzz_manifest_json
python3 - "$FIX" "$OUT" <<'PY'
import glob, gzip, json, os, subprocess, sys
fix, out = sys.argv[1], sys.argv[2]
for mj in sorted(glob.glob(fix + "/inventory/*/**/manifest.json", recursive=True)):
    case = os.path.relpath(mj, fix + "/inventory").split(os.sep)[0]
    with open(mj, "rb") as f:
        raw = f.read()
    with open(f"{out}/fuzz_manifest_json/inventory-{case}.json", "wb") as f:
        f.write(raw)
    doc = json.loads(raw)
    base = mj.split("/inventory/src/")[0]
    for i, ent in enumerate(doc.get("files", [])):
        path = os.path.join(base, ent["key"])
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        elif path.endswith(".zst"):
            data = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
        with open(f"{out}/fuzz_inventory/{case}-{i}.txt", "wb") as f:
            f.write(doc["fileSchema"].encode() + b"\n" + data)
for mj in sorted(glob.glob(fix + "/report/manifest.*.json")):
    with open(mj, "rb") as f:
        raw = f.read()
    with open(f"{out}/fuzz_manifest_json/report-{os.path.basename(mj)}", "wb") as f:
        f.write(raw)
PY

fresh fuzz_report
for f in "$FIX"/report/*.csv "$FIX"/golden/*.csv; do
    cp "$f" "$OUT/fuzz_report/$(basename "$f")"
done

fresh fuzz_xml
for f in "$FIX"/s3/*.xml; do
    cp "$f" "$OUT/fuzz_xml/$(basename "$f")"
done

fresh fuzz_rules
cp "$FIX/replicate/rules.json" "$OUT/fuzz_rules/rules.json"
for d in valid invalid; do
    for f in "$FIX"/replicate/$d/*.json; do
        [ -e "$f" ] && cp "$f" "$OUT/fuzz_rules/$d-$(basename "$f")"
    done
done

fresh fuzz_job
for t in "$OUT"/fuzz_*; do
    echo "seed: $(basename "$t"): $(find "$t" -type f | wc -l) inputs"
done
