#!/bin/sh
# make test-gimp: the GIMP 3 plug-in against the real daemon.
#
# Builds or reuses a Debian 13 root with GIMP 3 (tools/gimp_root.sh, cached in
# $CYCLEGAND_GIMP_ROOT, default /var/cache/cyclegand/gimp-root), starts `cyclegand serve` on the
# host with its socket inside that root, installs plugins/gimp/cyclegand into a fresh GIMP profile
# there, runs the plug-in from a headless gimp-console-3.0 batch on a test image, and checks that
# the new layer's pixels equal what `cyclegand translate` writes for the same pixels; that the
# daemon's progress lines reach the plug-in (its CYCLEGAND_DEBUG lines: monotone, 0 to 1); that
# a cancel of the plug-in's job, sent with the job id of a progress line as the dialog's Cancel
# does, stops it (status CANCEL, no layer); and that an unknown direction is reported.
#
# Needs root (debootstrap, chroot). Exit 0 passed, 1 failed, 77 skipped (not root).
#   CYCLEGAND_BIN                 the binary to test (default .build/release/cyclegand)
#   CYCLEGAND_GIMP_SCREENSHOT=F   also open the plug-in's dialog in a real GIMP 3 window on an
#                                 Xvfb display (installed into the root when missing) and save
#                                 a screenshot of it to F (a PNG)
set -eu

cd "$(dirname "$0")/.."
BIN=${CYCLEGAND_BIN:-.build/release/cyclegand}
BIN=$(realpath "$BIN")
[ -x "$BIN" ] || { echo "test-gimp: no binary at $BIN (make build)" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    echo "test-gimp: SKIPPED: needs root (debootstrap and chroot for the GIMP 3 root); run: sudo make test-gimp" >&2
    exit 77
fi

ROOT=$(tools/gimp_root.sh)
WORK=$(mktemp -d "$ROOT/tmp/cyclegand-test.XXXXXX")   # mode 0700, root-owned: fit for the socket
INNER=${WORK#"$ROOT"}                                   # the same folder as seen inside the root
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

GENERATOR=Tests/Fixtures/generators/reference_generator.pth   # tiny (ngf 8, 2 blocks): fast
DIRECTION=photo2test
# A 96x64 RGB PNG cut from a sample photo.
vips crop examples/images/"$(ls examples/images | grep -iE '\.(jpe?g|png)$' | head -n 1)" "$WORK/input.png" 0 0 96 64
# Large enough that the tiny model works for a second or more: several progress lines.
vips zoom examples/images/chelsea.png "$WORK/large.png" 4 4
# Training images for a fine-tune the dialog's labels must show.
cp -r Tests/Fixtures/synthetic "$WORK/synthetic"

"$BIN" import "$GENERATOR" --name gimptest --domains photo,test --as G_A --models-dir "$WORK/models" >/dev/null
"$BIN" translate "$WORK/input.png" "$WORK/reference.png" --direction "$DIRECTION" --models-dir "$WORK/models" >/dev/null

"$BIN" serve --root "$WORK/spool" --models-dir "$WORK/models" --socket "$WORK/cyclegand.sock" \
    --log-level warning >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
i=0
until [ -S "$WORK/cyclegand.sock" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        echo "test-gimp: FAILED: the daemon did not open its socket:" >&2
        cat "$WORK/daemon.log" >&2
        exit 1
    fi
    sleep 0.1
done

mkdir -p "$WORK/profile/plug-ins/cyclegand"
cp plugins/gimp/cyclegand/cyclegand.py plugins/gimp/cyclegand/cyclegand_client.py "$WORK/profile/plug-ins/cyclegand/"
chmod 0755 "$WORK/profile/plug-ins/cyclegand/cyclegand.py"

cat >"$WORK/batch.py" <<PY
import sys
from gi.repository import Gimp, Gio, Gegl

def pixels(drawable):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return drawable.get_buffer().get(rect, 1.0, "R'G'B' u8", Gegl.AbyssPolicy.NONE)

image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("$INNER/input.png"))
source = image.get_layers()[0]
procedure = Gimp.get_pdb().lookup_procedure("plug-in-cyclegand-translate")
if procedure is None:
    raise SystemExit("test-gimp: the plug-in did not register (see GIMP's output above)")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [source])
config.set_property("direction", "$DIRECTION")
config.set_property("socket", "$INNER/cyclegand.sock")
result = procedure.run(config)
if result.index(0) != Gimp.PDBStatusType.SUCCESS:
    raise SystemExit("test-gimp: the plug-in failed: %s" % (result.index(1),))

layers = image.get_layers()
assert len(layers) == 2, "expected one new layer, got %d layers" % len(layers)
new = layers[0]
assert image.get_item_position(new) == image.get_item_position(source) - 1
assert new.get_name() == "%s ($DIRECTION)" % source.get_name(), new.get_name()
assert (new.get_width(), new.get_height()) == (source.get_width(), source.get_height())

reference = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path("$INNER/reference.png"))
got, want = pixels(new), pixels(reference)
assert got != pixels(source), "the new layer is a copy of the source, not a translation"
assert len(got) == len(want), (len(got), len(want))
worst = max(abs(a - b) for a, b in zip(got, want))
differing = sum(1 for a, b in zip(got, want) if a != b)
print("test-gimp: new layer %dx%d, %d of %d channel values differ from cyclegand translate, max difference %d"
      % (new.get_width(), new.get_height(), differing, len(got), worst))
if differing:
    raise SystemExit("test-gimp: the plug-in's layer differs from cyclegand translate")
# An unknown direction must come back as the daemon's error, not a crash.
config.set_property("direction", "no2such")
result = procedure.run(config)
message = str(result.index(1))
assert result.index(0) == Gimp.PDBStatusType.EXECUTION_ERROR and "no2such" in message, message
assert len(image.get_layers()) == 2
print("test-gimp: unknown direction reported: %s" % message)

# Progress: the daemon's lines reach the plug-in, which hands them to GIMP's progress bar (and,
# with CYCLEGAND_DEBUG, to its standard error, which the script checks below).
large = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("$INNER/large.png"))
config.set_property("image", large)
config.set_core_object_array("drawables", [large.get_layers()[0]])
config.set_property("direction", "$DIRECTION")
sys.stderr.write("test-gimp: progress run begins\n")
sys.stderr.flush()
result = procedure.run(config)
sys.stderr.write("test-gimp: progress run ends\n")
sys.stderr.flush()
assert result.index(0) == Gimp.PDBStatusType.SUCCESS, result.index(1)
assert len(large.get_layers()) == 2

# Cancel: a thread cancels the plug-in's job with the id from a progress line, as the dialog's
# Cancel does (cyclegand_client is the plug-in's own client); the plug-in reports CANCEL and
# adds no layer.
import threading, time
sys.path.insert(0, "$INNER/profile/plug-ins/cyclegand")
import cyclegand_client
outcome = []
def canceller():
    deadline = time.time() + 30
    while time.time() < deadline and not outcome:
        with cyclegand_client.Client("$INNER/cyclegand.sock") as daemon:
            jobs = [j for j in daemon.jobs() if j["kind"] == "interactive" and j["state"] == "running"]
            if jobs:
                outcome.append(daemon.cancel(jobs[0]["id"]))
                return
        time.sleep(0.02)
thread = threading.Thread(target=canceller)
thread.start()
result = procedure.run(config)
thread.join()
print("test-gimp: cancel %s, plug-in status %s" % (outcome, result.index(0)))
assert outcome == ["cancel_requested"], outcome
assert result.index(0) == Gimp.PDBStatusType.CANCEL, (result.index(0), result.index(1))
assert len(large.get_layers()) == 2, "a cancelled translation added a layer"

# The same through the client alone: the job id comes with the first progress line (0, queued).
seen = []
def follow(fraction, job):
    seen.append((fraction, job))
    if len(seen) == 2:
        with cyclegand_client.Client("$INNER/cyclegand.sock") as other:
            other.cancel(job)
try:
    with cyclegand_client.Client("$INNER/cyclegand.sock") as daemon:
        daemon.translate_bytes(open("$INNER/large.png", "rb").read(), "$DIRECTION", name="large.png", progress=follow)
    raise SystemExit("test-gimp: the cancelled translation succeeded")
except cyclegand_client.DaemonError as error:
    assert error.code == "cancelled", error
print("test-gimp: client cancel after %d progress lines (first %s)" % (len(seen), seen[0]))
assert seen[0][0] == 0 and seen[0][1]

# The dialog's labels: each direction's model and version, and a fine-tune running on it (left
# running, so that the screenshot shows it too).
import cyclegand as plugin
with cyclegand_client.Client("$INNER/cyclegand.sock") as daemon:
    daemon.call("finetune", model="gimptest", dataroot="$WORK/synthetic", options={
        "netG": "resnet_6blocks", "ngf": 8, "ndf": 8, "preprocess": "none", "crop_size": 32, "load_size": 32,
        "max_iters": 100000})
    deadline = time.time() + 60
    while daemon.call("training", action="status")[0]["training"].get("iterations", 0) < 1:
        assert time.time() < deadline, "the fine-tune did not start"
        time.sleep(0.1)
    labels = dict(plugin.direction_labels(daemon))
print("test-gimp: labels %s" % labels)
assert labels["$DIRECTION"].startswith("$DIRECTION  (gimptest v1)"), labels
assert "fine-tuning: running" in labels["$DIRECTION"] or "fine-tuning: yielding" in labels["$DIRECTION"], labels
open("$INNER/passed", "w").write("ok")
PY

# The dialog as a user sees it: GIMP runs the plug-in interactively on an Xvfb display; once its
# window is up, the whole screen is saved (GTK's own root-window grab) and GIMP is stopped.
screenshot() {
    if [ ! -x "$ROOT/usr/bin/Xvfb" ]; then
        chroot "$ROOT" env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            apt-get install -y --no-install-recommends xvfb xauth >"$WORK/apt.log" 2>&1
    fi
    # chroot and env exec: each background pid below is the process itself.
    set -- chroot "$ROOT" env -i HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin DISPLAY=:77
    "$@" Xvfb :77 -screen 0 480x240x24 -br -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
    xvfb=$!
    cat >"$WORK/dialog.py" <<DIALOG
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("$INNER/input.png"))
procedure = Gimp.get_pdb().lookup_procedure("plug-in-cyclegand-translate")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [image.get_layers()[0]])
config.set_property("socket", "$INNER/cyclegand.sock")
procedure.run(config)
DIALOG
    cat >"$WORK/grab.py" <<GRAB
import sys, time
import gi
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk
def grab():
    display = Gdk.Display.open(":77")
    if not display:
        return None
    root = display.get_default_screen().get_root_window()
    return Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
for _ in range(600):
    shot = grab()
    # The screen is black (-br) until the dialog is drawn.
    if shot and shot.get_pixels().count(0) < len(shot.get_pixels()):
        time.sleep(2)
        grab().savev("$INNER/screenshot.png", "png", [], [])
        sys.exit(0)
    time.sleep(0.1)
sys.exit("no window appeared on :77 in 60 s")
GRAB
    sleep 1
    "$@" GIMP3_DIRECTORY="$INNER/profile" gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b - \
        --quit <"$WORK/dialog.py" >"$WORK/gimp-dialog.log" 2>&1 &
    gimp=$!
    if "$@" python3 "$INNER/grab.py" >"$WORK/grab.log" 2>&1; then
        cp "$WORK/screenshot.png" "$CYCLEGAND_GIMP_SCREENSHOT"
        echo "test-gimp: the dialog in GIMP 3 on Xvfb: $CYCLEGAND_GIMP_SCREENSHOT"
    else
        echo "test-gimp: no screenshot: $(cat "$WORK/grab.log")" >&2
    fi
    # GIMP's plug-ins end with it (their pipe to it closes).
    kill "$gimp" "$xvfb" 2>/dev/null || true
    wait "$gimp" "$xvfb" 2>/dev/null || true
}

chroot "$ROOT" env -i HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    GIMP3_DIRECTORY="$INNER/profile" CYCLEGAND_DEBUG=1 \
    gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b - --quit <"$WORK/batch.py" \
    >"$WORK/gimp.log" 2>&1 || true
grep '^test-gimp' "$WORK/gimp.log" || true
# The plug-in's progress during the progress run: at least three values, from 0 up to 1, never back.
progress=$(sed -n '/^test-gimp: progress run begins/,/^test-gimp: progress run ends/p' "$WORK/gimp.log" |
    sed -n 's/^cyclegand: progress //p' | tr '\n' ' ')
echo "test-gimp: progress seen by the plug-in: $progress"
if ! echo "$progress" | awk '{ if (NF < 3 || $1 != 0 || $NF != 1) exit 1;
        for (i = 2; i <= NF; i++) if ($i < $(i - 1)) exit 1 }'; then
    echo "test-gimp: FAILED: the plug-in's progress is not 0 … 1, monotone, with a value between" >&2
    rm -f "$WORK/passed"
fi
if [ -f "$WORK/passed" ] && [ -n "${CYCLEGAND_GIMP_SCREENSHOT:-}" ]; then
    screenshot
fi
if [ -f "$WORK/passed" ]; then
    echo "test-gimp: PASSED"
else
    echo "test-gimp: FAILED; GIMP's output:" >&2
    cat "$WORK/gimp.log" >&2
    echo "daemon log:" >&2
    cat "$WORK/daemon.log" >&2
    exit 1
fi
