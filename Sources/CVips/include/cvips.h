#ifndef CVIPS_H
#define CVIPS_H
#include <stddef.h>
#include <vips/vips.h>

// Fixed-arity wrappers around libvips' variadic calls, callable from Swift.
// Every function returning int follows libvips: 0 on success, -1 on error with
// the reason in the error buffer (read it with cvips_error_take).

int cvips_init(const char *argv0);

// Process-wide settings, made once at start-up:
// - no operation cache: a watch folder reuses file names, and a cached load of
//   an old file with the same name would be wrong;
// - one worker thread per pipeline: libvips 8.14's thread pool sometimes loses
//   a decoder's error when several workers run (a corrupt PNG then "succeeds"
//   about one time in ten), and decoding is sequential in the codecs anyway;
// - libvips' warnings ("error in tile 0 x 16") are not printed: errors reach
//   the caller through the error buffer, with the file's name.
void cvips_configure(void);

// The libvips error buffer's text (caller frees with g_free), and clears it.
char *cvips_error_take(void);

// The loader nickname libvips would use for this file, chosen by content
// (e.g. "jpegload"), or NULL if no loader recognises it.
const char *cvips_find_loader(const char *path);

// 1 if the named loader is flagged untrusted by libvips (magick, ppm, svg, ...).
int cvips_loader_is_untrusted(const char *loader);

// Opens a file lazily (header only) with the given loader nickname, with
// sequential or random access, failing on decode errors (fail_on = error) or,
// when fail_on_warnings is set, on warnings too (fail_on = warning).
VipsImage *cvips_open(const char *path, const char *loader, int sequential, int fail_on_warnings);

// Saver nickname for a suffix such as ".jpg", or NULL.
const char *cvips_find_saver(const char *suffix);

// Writes `in` to an open file descriptor in the format `suffix` names.
// quality > 0 sets Q where the saver has it.
int cvips_save_to_descriptor(VipsImage *in, int fd, const char *suffix, int quality);

int cvips_autorot(VipsImage *in, VipsImage **out);
// ICC transform to sRGB from the embedded profile; depth 8 or 16.
int cvips_icc_to_srgb(VipsImage *in, VipsImage **out, int depth);
int cvips_colourspace(VipsImage *in, VipsImage **out, VipsInterpretation space);
int cvips_cast(VipsImage *in, VipsImage **out, VipsBandFormat format);
// 16-bit to 8-bit by dropping the low byte (x >> 8), as libvips does for RGB16 → sRGB.
int cvips_ushort_to_uchar(VipsImage *in, VipsImage **out);
int cvips_extract_bands(VipsImage *in, VipsImage **out, int first, int n);
int cvips_bandjoin2(VipsImage *a, VipsImage *b, VipsImage **out);
// Writes the pixels, band-interleaved, to an open file descriptor.
int cvips_rawsave_fd(VipsImage *in, int fd);

// A new image over caller memory (not copied; must outlive the image).
VipsImage *cvips_image_from_memory(const void *data, size_t size, int width, int height,
                                   int bands, VipsBandFormat format, VipsInterpretation space);

void cvips_set_resolution(VipsImage *image, double xres, double yres);

int cvips_get_int(VipsImage *image, const char *name, int fallback);
int cvips_has_field(VipsImage *image, const char *name);
// Returns a pointer to the blob (owned by the image) and its length, or NULL.
const void *cvips_get_blob(VipsImage *image, const char *name, size_t *length);
const char *cvips_get_string(VipsImage *image, const char *name);

// ---- training data ----

// Resizes to exactly width × height with a Catmull-Rom cubic, as PIL's BICUBIC resize does:
// pixel centres aligned, the horizontal pass first, each pass rounded to the input's format;
// a shrinking pass filters with the kernel widened by the factor (vips_reduceh/v, no box
// shrink), an enlarging one interpolates (vips_affine, edge pixels repeated). Enlarging both
// ways is one 2-D pass.
int cvips_resize_bicubic(VipsImage *in, VipsImage **out, int width, int height);

// ---- reports (Sources/Training/Report: the loss plot, sample grids) ----

// Renders `text` (Pango markup: escape & < >) in `font` (a Pango description
// such as "sans 12") at `dpi` as a one-band 8-bit coverage mask, sized to the
// text's ink.
int cvips_text(const char *text, const char *font, int dpi, VipsImage **out);
// Encodes `in` in the format `suffix` names (".png") into a new buffer that
// the caller frees with g_free.
int cvips_save_to_buffer(VipsImage *in, const char *suffix, void **buffer, size_t *length);

#endif
