/* fuzz_set.c: libFuzzer target: arbitrary bytes as a packed map set (docs/FORMAT.md §12)
 * through every read path, with fuzz_reader's checks (a verified set must answer as one
 * snapshot: strictly increasing iteration, lookups, ranks, seeks and batches agreeing).
 *
 * Mutations almost always break the manifest's checksums, which hides the checks behind
 * them (the shard table, the bounds, each shard against its entry), so every input is
 * also tried with both checksums made right. */
#define FUZZ_READER_NO_ENTRY
#include "fuzz_reader.c"

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    read_all(copy, size, data);
    if (size >= 128) {
        uint64_t strings_end = get_le64(copy + 56); /* SMS_OFF_STRINGS_END */
        if (strings_end >= 128 && strings_end <= size)
            put_le64(copy + 104, sm_hash64(copy + 128, (size_t)(strings_end - 128), 0));
        put_le64(copy + 112, sm_hash64(copy, 112, 0));
        if (memcmp(copy, data, size) != 0)
            read_all(copy, size, data);
    }
    free(copy);
    return 0;
}
