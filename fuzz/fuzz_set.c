/* fuzz_set.c: libFuzzer target: arbitrary bytes as a packed map set (docs/FORMAT.md §12)
 * through every read path, with fuzz_reader's checks (a verified set must answer as one
 * snapshot: strictly increasing iteration, lookups, ranks, seeks and batches agreeing).
 *
 * Mutations almost always break the manifest's checksums, which hides the checks behind
 * them (the shard table, the bounds, each shard against its entry), so every input is
 * also tried with both checksums made right. */
#define FUZZ_READER_NO_ENTRY
#include "fuzz_reader.c"

static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The manifest's body checksum ([128, strings_end)), then its header checksum, made right. */
static void repair_manifest(uint8_t *p, size_t size) {
    if (size < 128)
        return;
    uint64_t strings_end = get_le64(p + 56); /* SMS_OFF_STRINGS_END */
    if (strings_end >= 128 && strings_end <= size) {
        uint64_t sum = sm_hash64(p + 128, (size_t)(strings_end - 128), 0);
        for (int i = 0; i < 8; i++)
            p[104 + i] = (uint8_t)(sum >> (8 * i));
    }
    repair_header(p, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_input(data, size, repair_manifest); }
