#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > cyclegand > Translate...

Sends the active layer to the cyclegand daemon over its control socket (inline PNG bytes, so it
works from a sandboxed GIMP that shares no files with the daemon) and inserts the translated
image as a new layer above it, in one undo step. GIMP's progress bar follows the daemon's
progress lines; Cancel in the dialog cancels the daemon's job. The socket client is
cyclegand_client.py beside this file. See ../README.md.
"""

import os
import sys
import tempfile
import threading

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gimp, GimpUi, Gio, GLib, GObject, Gtk  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cyclegand_client  # noqa: E402

PROCEDURE = "plug-in-cyclegand-translate"


def failure(procedure, message):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


# The dialog's answer when the translation it started has ended.
FINISHED = 1


def debug(message):
    """A line on GIMP's standard error with CYCLEGAND_DEBUG set (what `make test-gimp` reads)."""
    if os.environ.get("CYCLEGAND_DEBUG"):
        print("cyclegand: %s" % message, file=sys.stderr, flush=True)


def show_progress(fraction):
    debug("progress %.3f" % fraction)
    Gimp.progress_update(fraction)
    return False  # as a GLib idle callback: once


def direction_labels(daemon):
    """(name, label) per direction: the model and its published version, and a fine-tune
    running on it. Fields a daemon does not send yet (version, training) are left out."""
    versions = {m["name"]: m.get("version") for m in daemon.models()}
    training = daemon.status().get("training")
    if not isinstance(training, dict) or training.get("state") in (None, "idle", "done", "failed", "finished"):
        training = None
    labels = []
    for d in daemon.directions_info():
        model = d.get("model", "?")
        label = "%s  (%s" % (d["name"], model)
        if versions.get(model) is not None:
            label += " v%s" % versions[model]
        label += ")"
        if training and training.get("model") == model:
            label += "  · fine-tuning: %s" % training.get("state", "running")
            iters, total = training.get("iterations"), training.get("planned_iterations")
            if isinstance(iters, int) and isinstance(total, int) and total > 0:
                label += " %d %%" % (100 * iters // total)
        labels.append((d["name"], label))
    return labels


class Translation:
    """One translation on a thread of its own, so that the dialog stays live (its Cancel
    works) while the daemon works; progress reaches GIMP on the main loop, as libgimp wants."""

    def __init__(self, png, direction, socket_path, finished):
        self.png, self.direction, self.socket_path, self.finished = png, direction, socket_path, finished
        self.job = None
        self.result = None
        self.error = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            with cyclegand_client.Client(self.socket_path) as daemon:
                _, self.result = daemon.translate_bytes(
                    self.png, self.direction, name="layer.png", format="png", progress=self._progress)
        except (ConnectionError, OSError, cyclegand_client.DaemonError) as error:
            self.error = error
        GLib.idle_add(self.finished)

    def _progress(self, fraction, job):
        self.job = self.job or job
        GLib.idle_add(show_progress, fraction)

    def cancel(self):
        """Asks the daemon to drop the job (it stops at its next layer or band)."""
        if self.job:
            try:
                with cyclegand_client.Client(self.socket_path) as daemon:
                    debug("cancel %s: %s" % (self.job, daemon.cancel(self.job)))
            except (ConnectionError, OSError, cyclegand_client.DaemonError) as error:
                debug("cancel %s: %s" % (self.job, error))


def dialog_translate(labels, preselected, png, socket_path):
    """The dialog: the daemon's directions and Translate / Cancel. Translate keeps it open while
    the daemon works (GIMP's progress bar moves); Cancel then cancels the daemon's job.
    Returns (direction, result bytes), or None when cancelled."""
    GimpUi.init(PROCEDURE)
    dialog = GimpUi.Dialog(title="cyclegand: Translate", role=PROCEDURE)
    dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    translate = dialog.add_button("_Translate", Gtk.ResponseType.OK)
    combo = Gtk.ComboBoxText(margin=12)
    for name, label in labels:
        combo.append(name, label)
    names = [name for name, _ in labels]
    combo.set_active(names.index(preselected) if preselected in names else 0)
    dialog.get_content_area().add(combo)
    dialog.show_all()
    running = None
    try:
        while True:
            response = dialog.run()
            if response == Gtk.ResponseType.OK and running is None:
                translate.set_sensitive(False)
                combo.set_sensitive(False)
                direction = combo.get_active_id()
                Gimp.progress_init("cyclegand: %s" % direction)
                running = Translation(png, direction, socket_path, lambda: dialog.response(FINISHED))
            elif response == FINISHED:
                if running.error:
                    raise running.error
                return direction, running.result
            elif running is None:
                return None
            else:
                running.cancel()
                # The thread ends with the daemon's `cancelled` error (or a result that came
                # first): either way the user said no.
                while dialog.run() != FINISHED:
                    pass
                return None
    finally:
        dialog.destroy()


def export_png(drawable, path):
    """Writes one drawable, alone and at its own size, as a PNG file."""
    width, height = drawable.get_width(), drawable.get_height()
    base = Gimp.ImageBaseType.GRAY if drawable.is_gray() else Gimp.ImageBaseType.RGB
    scratch = Gimp.Image.new(width, height, base)
    try:
        layer = Gimp.Layer.new_from_drawable(drawable, scratch)
        scratch.insert_layer(layer, None, 0)
        layer.set_offsets(0, 0)
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, scratch, Gio.File.new_for_path(path), None)
    finally:
        scratch.delete()


def offsets(drawable):
    result = drawable.get_offsets()
    # GIMP 3.0's binding returns (ok, x, y); be lenient with a plain (x, y).
    return tuple(result[-2:])


def layer_png(drawable):
    with tempfile.TemporaryDirectory(prefix="cyclegand-gimp-") as scratch:
        source = os.path.join(scratch, "layer.png")
        export_png(drawable, source)
        with open(source, "rb") as f:
            return f.read()


def translate_now(png, direction, socket_path):
    """Translates on this thread, GIMP's progress bar following (non-interactive runs)."""
    Gimp.progress_init("cyclegand: %s" % direction)
    with cyclegand_client.Client(socket_path) as daemon:
        _, result = daemon.translate_bytes(
            png, direction, name="layer.png", format="png", progress=lambda f, job: show_progress(f))
    return result


def insert_result(image, drawable, direction, result):
    """Inserts the translated PNG above `drawable`, in one undo step; returns the new layer."""
    with tempfile.TemporaryDirectory(prefix="cyclegand-gimp-") as scratch:
        target = os.path.join(scratch, "result.png")
        with open(target, "wb") as f:
            f.write(result)
        layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(target))

    image.undo_group_start()
    try:
        layer.set_name("%s (%s)" % (drawable.get_name(), direction))
        image.insert_layer(layer, drawable.get_parent(), image.get_item_position(drawable))
        x, y = offsets(drawable)
        layer.set_offsets(x, y)
    finally:
        image.undo_group_end()
    return layer


def run(procedure, run_mode, image, drawables, config, data):
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return failure(procedure, "cyclegand translates one layer at a time: select a single layer")
    drawable = drawables[0]
    socket_path = config.get_property("socket") or None
    direction = config.get_property("direction")
    try:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            with cyclegand_client.Client(socket_path) as daemon:
                labels = direction_labels(daemon)
            if not labels:
                return failure(procedure, "the cyclegand daemon has no models; import one with `cyclegand import`")
            answer = dialog_translate(labels, direction, layer_png(drawable), socket_path)
            if answer is None:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            direction, result = answer
            config.set_property("direction", direction)
        elif not direction:
            return failure(
                procedure, "no direction given: set the procedure's 'direction' argument (e.g. modern2vintage)")
        else:
            result = translate_now(layer_png(drawable), direction, socket_path)
    except cyclegand_client.DaemonError as error:
        if error.code == "cancelled":
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        return failure(procedure, "cyclegand: %s" % error.message)
    except (ConnectionError, OSError) as error:
        return failure(procedure, "cyclegand: %s" % error)
    insert_result(image, drawable, direction, result)
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


class Cyclegand(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROCEDURE]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("_Translate...")
        procedure.add_menu_path("<Image>/Filters/cyclegand")
        procedure.set_documentation(
            "Translate the layer with a cyclegand model",
            "Sends the active layer to the cyclegand daemon and adds the translated image as a "
            "new layer above it (one undo step).",
            name,
        )
        procedure.set_attribution("cyclegand", "cyclegand", "2026")
        procedure.add_string_argument(
            "direction", "_Direction", "A direction the daemon offers, e.g. modern2vintage", "",
            GObject.ParamFlags.READWRITE)
        procedure.add_string_argument(
            "socket", "_Socket", "The daemon's socket (empty: $CYCLEGAND_SOCKET or $XDG_RUNTIME_DIR/cyclegand.sock)",
            "", GObject.ParamFlags.READWRITE)
        return procedure


# GIMP runs the file as a script; tests import it for `direction_labels`.
if __name__ == "__main__":
    Gimp.main(Cyclegand.__gtype__, sys.argv)
