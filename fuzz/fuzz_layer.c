/* fuzz_layer.c: libFuzzer target: arbitrary bytes as a layer file (a delta over a base,
 * docs/FORMAT.md §13) through every read path, with fuzz_reader's checks (a verified
 * layered map must answer as one snapshot).  The base the corpus's layers name
 * (layer-base.h) is written once into a private directory where the reader finds it.
 *
 * Mutations almost always break the layer's checksums, which hides the checks behind them
 * (the regions, the delta, the base's identity), so every input is also tried with both
 * made right. */
#define FUZZ_READER_NO_ENTRY
#define FUZZ_OPEN(r, p, n) smi_reader_open_mem_at(r, p, n, base_dirfd)
static int base_dirfd = -1;
#include "internal.h"
#include "fuzz_reader.c"
#include "layer-base.h"

#include <fcntl.h>
#include <unistd.h>

static char base_dir[64];

static void remove_base(void) {
    char name[NAME_MAX + 1], path[128 + NAME_MAX];
    size_t n;
    unsigned char *p = layer_base(&n);
    layer_base_name(p, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", base_dir, name);
    unlink(path);
    rmdir(base_dir);
    free(p);
}

static void setup(void) {
    if (base_dirfd >= 0)
        return;
    snprintf(base_dir, sizeof base_dir, "/tmp/fuzz_layer.%d", (int)getpid());
    mkdir(base_dir, 0700);
    base_dirfd = open(base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    size_t n;
    unsigned char *p = layer_base(&n);
    char name[NAME_MAX + 1];
    layer_base_name(p, name, sizeof name);
    int fd = openat(base_dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (base_dirfd < 0 || fd < 0 || write(fd, p, n) != (ssize_t)n)
        abort();
    close(fd);
    free(p);
    atexit(remove_base);
}

static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The delta's header checksum, the layer's body checksum, then its header checksum. */
static void repair_layer(uint8_t *p, size_t size) {
    if (size < 192)
        return;
    uint64_t doff = get_le64(p + SML_OFF_DELTA);
    if (doff <= size && size - doff >= 128)
        repair_header(p + doff, (size_t)(size - doff));
    uint64_t sum = sm_hash64(p + 128, size - 128, 0);
    for (int i = 0; i < 8; i++)
        p[104 + i] = (uint8_t)(sum >> (8 * i));
    repair_header(p, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    return fuzz_input(data, size, repair_layer);
}
