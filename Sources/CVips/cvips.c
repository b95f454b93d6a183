#include "cvips.h"

int cvips_init(const char *argv0) { return vips_init(argv0); }

static void cvips_ignore_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data) {}

void cvips_configure(void) {
    vips_cache_set_max(0);
    vips_concurrency_set(1);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, cvips_ignore_log, NULL);
}

char *cvips_error_take(void) { return vips_error_buffer_copy(); }

const char *cvips_find_loader(const char *path) {
    const char *name = vips_foreign_find_load(path);
    return name ? vips_nickname_find(g_type_from_name(name)) : NULL;
}

int cvips_loader_is_untrusted(const char *loader) {
    GType type = vips_type_find("VipsOperation", loader);
    if (!type) return 0;
    VipsOperationClass *class = VIPS_OPERATION_CLASS(g_type_class_ref(type));
    int untrusted = (class->flags & VIPS_OPERATION_UNTRUSTED) != 0;
    g_type_class_unref(class);
    return untrusted;
}

VipsImage *cvips_open(const char *path, const char *loader, int sequential, int fail_on_warnings) {
    VipsImage *out = NULL;
    VipsAccess access = sequential ? VIPS_ACCESS_SEQUENTIAL : VIPS_ACCESS_RANDOM;
    VipsFailOn fail_on = fail_on_warnings ? VIPS_FAIL_ON_WARNING : VIPS_FAIL_ON_ERROR;
    // Calling the loader by name (not vips_image_new_from_file) keeps the file
    // name literal: no "[option]" parsing of names that contain brackets.
    if (vips_call(loader, path, &out, "access", access, "fail_on", fail_on, NULL)) return NULL;
    return out;
}

const char *cvips_find_saver(const char *suffix) { return vips_foreign_find_save_target(suffix); }

int cvips_save_to_descriptor(VipsImage *in, int fd, const char *suffix, int quality) {
    const char *saver = vips_foreign_find_save_target(suffix);
    if (!saver) return -1;
    VipsTarget *target = vips_target_new_to_descriptor(fd);
    if (!target) return -1;
    VipsOperation *op = vips_operation_new(saver);
    if (!op) {
        g_object_unref(target);
        return -1;
    }
    g_object_set(op, "in", in, "target", target, NULL);
    if (quality > 0 && g_object_class_find_property(G_OBJECT_GET_CLASS(op), "Q"))
        g_object_set(op, "Q", quality, NULL);
    // A file saver picks AV1 from a ".avif" name; a target saver has no name.
    if (g_ascii_strcasecmp(suffix, ".avif") == 0 && g_object_class_find_property(G_OBJECT_GET_CLASS(op), "compression"))
        g_object_set(op, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL);
    int result = vips_cache_operation_buildp(&op);
    vips_object_unref_outputs(VIPS_OBJECT(op));
    g_object_unref(op);
    g_object_unref(target);
    return result;
}

int cvips_autorot(VipsImage *in, VipsImage **out) { return vips_autorot(in, out, NULL); }

int cvips_icc_to_srgb(VipsImage *in, VipsImage **out, int depth) {
    return vips_icc_transform(in, out, "srgb", "embedded", TRUE, "depth", depth, NULL);
}

int cvips_colourspace(VipsImage *in, VipsImage **out, VipsInterpretation space) {
    return vips_colourspace(in, out, space, NULL);
}

int cvips_cast(VipsImage *in, VipsImage **out, VipsBandFormat format) { return vips_cast(in, out, format, NULL); }

int cvips_ushort_to_uchar(VipsImage *in, VipsImage **out) {
    VipsImage *shifted = NULL;
    if (vips_rshift_const1(in, &shifted, 8, NULL)) return -1;
    int result = vips_cast(shifted, out, VIPS_FORMAT_UCHAR, NULL);
    g_object_unref(shifted);
    return result;
}

int cvips_extract_bands(VipsImage *in, VipsImage **out, int first, int n) {
    return vips_extract_band(in, out, first, "n", n, NULL);
}

int cvips_bandjoin2(VipsImage *a, VipsImage *b, VipsImage **out) { return vips_bandjoin2(a, b, out, NULL); }

int cvips_rawsave_fd(VipsImage *in, int fd) { return vips_rawsave_fd(in, fd, NULL); }

VipsImage *cvips_image_from_memory(const void *data, size_t size, int width, int height,
                                   int bands, VipsBandFormat format, VipsInterpretation space) {
    VipsImage *image = vips_image_new_from_memory(data, size, width, height, bands, format);
    if (image) image->Type = space;
    return image;
}

void cvips_set_resolution(VipsImage *image, double xres, double yres) {
    image->Xres = xres;
    image->Yres = yres;
}

int cvips_get_int(VipsImage *image, const char *name, int fallback) {
    int value;
    if (!vips_image_get_typeof(image, name) || vips_image_get_int(image, name, &value)) return fallback;
    return value;
}

int cvips_has_field(VipsImage *image, const char *name) { return vips_image_get_typeof(image, name) != 0; }

const void *cvips_get_blob(VipsImage *image, const char *name, size_t *length) {
    const void *data = NULL;
    *length = 0;
    if (!vips_image_get_typeof(image, name) || vips_image_get_blob(image, name, &data, length)) return NULL;
    return data;
}

const char *cvips_get_string(VipsImage *image, const char *name) {
    const char *value = NULL;
    if (!vips_image_get_typeof(image, name) || vips_image_get_string(image, name, &value)) return NULL;
    return value;
}

// ---- training data ----

// Enlarges by hscale, vscale >= 1 in one pass. Output pixel centre x + 0.5 samples the input at
// (x + 0.5) / scale - 0.5, as PIL does; libvips' affine maps x to x / scale - idx.
static int cvips_enlarge(VipsImage *in, VipsImage **out, int width, int height) {
    double hscale = (double)width / in->Xsize, vscale = (double)height / in->Ysize;
    VipsInterpolate *cubic = vips_interpolate_new("bicubic");
    VipsArrayInt *area = vips_array_int_newv(4, 0, 0, width, height);
    int failed = vips_affine(in, out, hscale, 0, 0, vscale, "interpolate", cubic, "oarea", area, "idx",
                             0.5 - 0.5 / hscale, "idy", 0.5 - 0.5 / vscale, "extend", VIPS_EXTEND_COPY, NULL);
    g_object_unref(cubic);
    vips_area_unref(VIPS_AREA(area));
    return failed;
}

// One axis of cvips_resize_bicubic; `size` is the new width (horizontal) or height.
static int cvips_resize_axis(VipsImage *in, VipsImage **out, int size, int horizontal) {
    int from = horizontal ? in->Xsize : in->Ysize;
    if (size == from) {
        g_object_ref(in);
        *out = in;
        return 0;
    }
    if (size > from) return cvips_enlarge(in, out, horizontal ? size : in->Xsize, horizontal ? in->Ysize : size);
    double shrink = (double)from / size;
    VipsImage *reduced = NULL;
    int failed = horizontal ? vips_reduceh(in, &reduced, shrink, "kernel", VIPS_KERNEL_CUBIC, NULL)
                            : vips_reducev(in, &reduced, shrink, "kernel", VIPS_KERNEL_CUBIC, NULL);
    if (failed) return -1;
    // vips_reduce rounds its output size; make it exact (at most a pixel off).
    int got = horizontal ? reduced->Xsize : reduced->Ysize;
    if (got == size) {
        *out = reduced;
        return 0;
    }
    failed = vips_embed(reduced, out, 0, 0, horizontal ? size : reduced->Xsize, horizontal ? reduced->Ysize : size,
                        "extend", VIPS_EXTEND_COPY, NULL);
    g_object_unref(reduced);
    return failed;
}

int cvips_resize_bicubic(VipsImage *in, VipsImage **out, int width, int height) {
    // Enlarging both ways is one 2-D pass: half the work of two, and the same result up to
    // the rounding PIL does between its passes.
    if (width > in->Xsize && height > in->Ysize) return cvips_enlarge(in, out, width, height);
    VipsImage *wide = NULL;
    if (cvips_resize_axis(in, &wide, width, 1)) return -1;
    int failed = cvips_resize_axis(wide, out, height, 0);
    g_object_unref(wide);
    return failed;
}

// ---- reports (Sources/Training/Report: the loss plot, sample grids) ----

int cvips_text(const char *text, const char *font, int dpi, VipsImage **out) {
    return vips_text(out, text, "font", font, "dpi", dpi, NULL);
}

int cvips_save_to_buffer(VipsImage *in, const char *suffix, void **buffer, size_t *length) {
    return vips_image_write_to_buffer(in, suffix, buffer, length, NULL);
}
