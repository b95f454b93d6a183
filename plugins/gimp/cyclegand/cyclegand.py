#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > cyclegand > Translate...

Sends the active layer to the cyclegand daemon over its control socket (inline PNG bytes, so it
works from a sandboxed GIMP that shares no files with the daemon) and inserts the translated
image as a new layer above it, in one undo step. The socket client is cyclegand_client.py beside
this file. See ../README.md.
"""

import os
import sys
import tempfile

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


def choose_direction(directions, preselected):
    """A dialog listing the daemon's directions; returns the chosen one or None."""
    GimpUi.init(PROCEDURE)
    dialog = GimpUi.Dialog(title="cyclegand: Translate", role=PROCEDURE)
    dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    dialog.add_button("_Translate", Gtk.ResponseType.OK)
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8, border_width=12)
    box.pack_start(Gtk.Label(label="Direction (from the running daemon):", xalign=0), False, False, 0)
    combo = Gtk.ComboBoxText()
    for name in directions:
        combo.append_text(name)
    combo.set_active(directions.index(preselected) if preselected in directions else 0)
    box.pack_start(combo, False, False, 0)
    dialog.get_content_area().add(box)
    dialog.show_all()
    response = dialog.run()
    choice = combo.get_active_text()
    dialog.destroy()
    return choice if response == Gtk.ResponseType.OK else None


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


def translate_layer(image, drawable, direction, socket_path):
    """Translates `drawable` through the daemon and inserts the result above it; returns the new layer."""
    with tempfile.TemporaryDirectory(prefix="cyclegand-gimp-") as scratch:
        source = os.path.join(scratch, "layer.png")
        export_png(drawable, source)
        with open(source, "rb") as f:
            png = f.read()
        with cyclegand_client.Client(socket_path or None) as daemon:
            _, result = daemon.translate_bytes(png, direction, name="layer.png", format="png")
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
    socket_path = config.get_property("socket")
    direction = config.get_property("direction")

    if run_mode == Gimp.RunMode.INTERACTIVE:
        try:
            with cyclegand_client.Client(socket_path or None) as daemon:
                directions = daemon.directions()
        except (ConnectionError, OSError, cyclegand_client.DaemonError) as error:
            return failure(procedure, str(error))
        if not directions:
            return failure(procedure, "the cyclegand daemon has no models; import one with `cyclegand import`")
        direction = choose_direction(directions, direction)
        if direction is None:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        config.set_property("direction", direction)
    elif not direction:
        return failure(procedure, "no direction given: set the procedure's 'direction' argument (e.g. modern2vintage)")

    try:
        translate_layer(image, drawable, direction, socket_path)
    except cyclegand_client.DaemonError as error:
        return failure(procedure, "cyclegand: %s" % error.message)
    except (ConnectionError, OSError) as error:
        return failure(procedure, "cyclegand: %s" % error)
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


Gimp.main(Cyclegand.__gtype__, sys.argv)
