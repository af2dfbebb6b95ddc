#!/usr/bin/env bash
# A migration as a Slurm job array: plan, one array task per shard (at most $PARALLEL at once), then the merge
# once every task succeeded (afterok). Usage:
#
#   deploy/slurm/transfer-migration.sh SRC DST PLAN SHARDS [PARALLEL [OPTION...]]
#
# e.g. deploy/slurm/transfer-migration.sh oss://src/data/ oss://dst/data/ /shared/plans/mig-1 64 16 --split-above 1GiB
# OPTIONs go to `transfer shard plan` (every option of `transfer sync`, --split-above, --files-from), and so to
# every shard.
# PLAN is a directory every node sees, or an oss://, s3://, local:// prefix. Credentials and the endpoint come
# from the environment sbatch passes on (OSS_ACCESS_KEY_ID, TRANSFER_ENDPOINT, ...): never on the command line.
# Each task keeps its ledger under $TRANSFER_STATE (default: the plan's directory, or ./transfer-state), so a
# task requeued on the same node resumes where it stopped.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 SRC DST PLAN SHARDS [PARALLEL [OPTION...]]" >&2
    exit 2
fi
SRC=$1 DST=$2 PLAN=$3 SHARDS=$4 PARALLEL=${5:-8}
shift $(($# < 5 ? $# : 5))
TRANSFER=${TRANSFER:-transfer}
STATE=${TRANSFER_STATE:-$(case "$PLAN" in *://*) echo "$PWD/transfer-state" ;; *) echo "$PLAN/state" ;; esac)}
mkdir -p "$STATE"

"$TRANSFER" shard plan "$SRC" "$DST" --shards "$SHARDS" --plan "$PLAN" "$@"
COUNT=$("$TRANSFER" --json shard status "$PLAN" | grep -c '"event":"shard"')

ARRAY=$(sbatch --parsable --job-name=transfer-shards --array="0-$((COUNT - 1))%$PARALLEL" \
    --output="$STATE/shard-%a.log" --export=ALL \
    --wrap="\"$TRANSFER\" shard run \"$PLAN\" --checkpoint \"$STATE/ledger-\$SLURM_ARRAY_TASK_ID.db\"")
MERGE=$(sbatch --parsable --job-name=transfer-merge --dependency="afterok:$ARRAY" \
    --output="$STATE/merge.log" --export=ALL \
    --wrap="\"$TRANSFER\" shard merge \"$PLAN\"")
echo "shards: job $ARRAY ($COUNT tasks, $PARALLEL at once); merge: job $MERGE (after every shard succeeded)"
