#!/bin/sh
# Fine-tune a model inside the running daemon on your own photos, watch it, and keep or undo it.
#
#   examples/finetune.sh MODEL DATAROOT [ITERATIONS]
#
# ITERATIONS (default 2000) is where the model's iteration counter stops, as `--max_iters` counts
# it: a model that was never trained here starts at 0; one fine-tuned before goes on from its count.
# DATAROOT holds trainA/ (photos of the model's first domain, e.g. modern photos) and trainB/
# (the second, e.g. old prints); nothing needs to pair them. The daemon trains full CycleGAN (both
# generators and discriminators) at a low priority: images dropped into the inbox or sent by
# `ctl translate` go first. When the job ends its generators serve at once, and the version before
# stays in MODEL/versions/; this script then translates examples/images/coffee.jpg with the new
# version and tells how to roll back.
#
# Exit status: 0 the job ended and published, 1 it failed (the daemon says why), others as
# `cyclegand ctl` documents them (69: no daemon; start one with `make run`).
set -eu

[ $# -ge 2 ] || { echo "usage: $0 MODEL DATAROOT [ITERATIONS]" >&2; exit 64; }
MODEL=$1
DATAROOT=$2
ITERATIONS=${3:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
CYCLEGAND=${CYCLEGAND:-$(command -v cyclegand || echo "$HERE/../.build/release/cyclegand")}

for domain in trainA trainB; do
    [ -d "$DATAROOT/$domain" ] || { echo "$0: $DATAROOT/$domain is missing (one folder per domain)" >&2; exit 64; }
done

# The version served now, to undo the fine-tune with if the result disappoints.
BEFORE=$("$CYCLEGAND" ctl models | awk -v m="$MODEL" '$1 == m { print $2 }')
[ -n "$BEFORE" ] || { echo "$0: the daemon has no model $MODEL (cyclegand ctl models lists them)" >&2; exit 2; }

# --follow shows the losses, iterations per second and the time left until the job ends.
# 256² crops as the reference trains; --crop_size 128 is four times faster and lighter.
"$CYCLEGAND" ctl finetune "$MODEL" --dataroot "$DATAROOT" --max_iters "$ITERATIONS" \
    --save_latest_freq 200 --follow

DIRECTION=$("$CYCLEGAND" ctl directions | awk -v m="$MODEL" '$2 == m { print $1; exit }')
OUT=$(mktemp -d)/coffee-finetuned.jpg
"$CYCLEGAND" ctl translate "$HERE/images/coffee.jpg" "$OUT" --direction "$DIRECTION"
echo "the fine-tuned $MODEL ($DIRECTION) made $OUT"
echo "to go back to the version before: $CYCLEGAND ctl rollback $MODEL $BEFORE"
