/* The C ABI (include/helix/helix_c.h) from a program compiled as C: every operation against
 * a float64 reference written here, positions and table forms, the backward round trip,
 * and bad input as status codes with the C++ API's messages. */
#include <helix/helix_c.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    helix_last_error());                                                \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static DLTensor tensor(void *data, int ndim, int64_t *shape, uint8_t code, uint8_t bits) {
    DLTensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device.device_type = kDLCPU;
    t.ndim = ndim;
    t.shape = shape;
    t.dtype.code = code;
    t.dtype.bits = bits;
    t.dtype.lanes = 1;
    return t;
}

static DLTensor f32(float *data, int ndim, int64_t *shape) { return tensor(data, ndim, shape, kDLFloat, 32); }

/* SPEC section 4: |out - ref| <= 4e-6 * max(|x_j|, |x_pair(j)|). */
static int close_to(float out, double ref, float x, float pair) {
    const double m = fabs(x) > fabs(pair) ? fabs(x) : fabs(pair);
    return fabs(out - ref) <= 4e-6 * m + 1e-30;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

enum { N = 16, D = 8, H = D / 2, HEADS = 3 };

int main(void) {
    static float freqs[N * D], scale[1], q[HEADS * N * D], q_out[HEADS * N * D], back[HEADS * N * D];
    static float cos_t[N * H], sin_t[N * H], inv_freq[H];
    int64_t table_shape[2] = {N, D}, one[1] = {1}, q_shape[3] = {HEADS, N, D}, half_shape[2] = {N, H}, h_shape[1] = {H};
    helix_embeddings *emb = NULL;
    int i, j, n, h;

    CHECK(strlen(helix_version()) > 0);

    /* Tables: freqs[n][j] = n * inv_freq[j mod H], float32 products. */
    CHECK(helix_embeddings_create(D, 0, 0, 10000.0, HELIX_PAIRING_HALF_SPLIT, NULL, HELIX_ANGLES_FP32, &emb) == HELIX_OK);
    CHECK(emb != NULL);
    {
        DLTensor f = f32(freqs, 2, table_shape), s = f32(scale, 1, one), inv = f32(inv_freq, 1, h_shape);
        CHECK(helix_embeddings_forward(emb, N, &f, &s) == HELIX_OK);
        CHECK(helix_embeddings_inv_freq(emb, 0, &inv) == HELIX_OK);
        CHECK(scale[0] == 1.0f);
        CHECK(helix_embeddings_attention_factor(emb) == 1.0);
        for (i = 0; i < H; i++) {
            const float expected = 1.0f / (float)pow(10000.0, (double)((float)(2 * i) / (float)D));
            CHECK(fabsf(inv_freq[i] - expected) <= 1e-7f * expected);
        }
        for (n = 0; n < N; n++)
            for (j = 0; j < D; j++) CHECK(freqs[n * D + j] == (float)n * inv_freq[j % H]);
    }

    /* apply_rotary_pos_emb, angle table, q only, Zeta's alignment: against float64. */
    for (i = 0; i < HEADS * N * D; i++) q[i] = (float)sin(0.37 * i + 0.1);
    {
        DLTensor qt = f32(q, 3, q_shape), qo = f32(q_out, 3, q_shape), f = f32(freqs, 2, table_shape);
        helix_rotary_table table;
        helix_rotary_table_init(&table, HELIX_TABLE_ANGLES);
        table.first = &f;
        CHECK(helix_apply_rotary_pos_emb(&qt, NULL, &table, &qo, NULL, NULL) == HELIX_OK);
        for (h = 0; h < HEADS; h++)
            for (n = 0; n < N; n++)
                for (j = 0; j < D; j++) {
                    const float *x = q + (h * N + n) * D;
                    const int pair = j < H ? j + H : j - H;
                    const double rotated = j < H ? -x[pair] : x[pair];
                    const double a = freqs[n * D + j];
                    CHECK(close_to(q_out[(h * N + n) * D + j], x[j] * cos(a) + rotated * sin(a), x[j], x[pair]));
                }
        /* The backward (conjugate) of the result is q again, within twice the bound. */
        {
            DLTensor bo = f32(back, 3, q_shape);
            helix_rotary_options options;
            helix_rotary_options_init(&options);
            options.conjugate = 1;
            CHECK(helix_apply_rotary_pos_emb(&qo, NULL, &table, &bo, NULL, &options) == HELIX_OK);
            for (i = 0; i < HEADS * N * D; i++) CHECK(fabsf(back[i] - q[i]) <= 1e-5f);
        }
    }

    /* cos/sin table with position ids (int64, unsorted, repeated) = the angle table's rows. */
    for (n = 0; n < N; n++)
        for (i = 0; i < H; i++) {
            cos_t[n * H + i] = (float)cos(freqs[n * D + i]);
            sin_t[n * H + i] = (float)sin(freqs[n * D + i]);
        }
    {
        static float q1[HEADS * 3 * D], o1[HEADS * 3 * D];
        int64_t ids[3] = {15, 2, 15}, ids_shape[1] = {3}, q1_shape[3] = {HEADS, 3, D};
        DLTensor qt = f32(q1, 3, q1_shape), qo = f32(o1, 3, q1_shape), c = f32(cos_t, 2, half_shape),
                 s = f32(sin_t, 2, half_shape), idt = tensor(ids, 1, ids_shape, kDLInt, 64);
        helix_rotary_table table;
        helix_rotary_options options;
        for (i = 0; i < HEADS * 3 * D; i++) q1[i] = (float)cos(0.21 * i);
        helix_rotary_table_init(&table, HELIX_TABLE_COS_SIN);
        table.first = &c;
        table.second = &s;
        helix_rotary_options_init(&options);
        options.positions.kind = HELIX_POSITIONS_IDS;
        options.positions.tensor = &idt;
        CHECK(helix_apply_rotary_pos_emb(&qt, NULL, &table, &qo, NULL, &options) == HELIX_OK);
        for (h = 0; h < HEADS; h++)
            for (n = 0; n < 3; n++)
                for (j = 0; j < D; j++) {
                    const float *x = q1 + (h * 3 + n) * D;
                    const int pair = j < H ? j + H : j - H;
                    const double a = freqs[ids[n] * D + j];
                    const double rotated = j < H ? -x[pair] : x[pair];
                    CHECK(close_to(o1[(h * 3 + n) * D + j], x[j] * cos(a) + rotated * sin(a), x[j], x[pair]));
                }

        /* A position past the table: an invalid argument, the C++ message, nothing written. */
        ids[1] = N;
        memset(o1, 0, sizeof o1);
        CHECK(helix_apply_rotary_pos_emb(&qt, NULL, &table, &qo, NULL, &options) == HELIX_ERROR_INVALID_ARGUMENT);
        CHECK(starts_with(helix_last_error(), "helix::apply_rotary_pos_emb: positions"));
        for (i = 0; i < HEADS * 3 * D; i++) CHECK(o1[i] == 0.0f);
    }

    /* rotate_half in place: cat(-x2, x1) (half-split: every target has it). */
    {
        float x[4] = {1, 2, 3, 4};
        int64_t shape[1] = {4};
        DLTensor t = f32(x, 1, shape);
        CHECK(helix_rotate_half(&t, &t, HELIX_PAIRING_HALF_SPLIT) == HELIX_OK);
        CHECK(x[0] == -3 && x[1] == -4 && x[2] == 1 && x[3] == 2);
        CHECK(strcmp(helix_last_error(), "") == 0);
    }

    /* Bad input: status codes and messages. */
    {
        double wide[4] = {0};
        int64_t shape[1] = {4};
        float x[4] = {0};
        DLTensor t = tensor(wide, 1, shape, kDLFloat, 64), ok = f32(x, 1, shape);
        helix_embeddings *bad = (helix_embeddings *)1;
        CHECK(helix_rotate_half(&t, &t, HELIX_PAIRING_HALF_SPLIT) == HELIX_ERROR_INVALID_ARGUMENT);
        CHECK(starts_with(helix_last_error(), "helix: x: expected dtype float32"));
        CHECK(helix_rotate_half(&ok, &ok, (helix_pairing)7) == HELIX_ERROR_INVALID_ARGUMENT);
        CHECK(starts_with(helix_last_error(), "helix: pairing: expected HELIX_PAIRING_HALF_SPLIT"));
        CHECK(helix_apply_rotary_pos_emb(&ok, NULL, NULL, &ok, NULL, NULL) == HELIX_ERROR_INVALID_ARGUMENT);
        CHECK(starts_with(helix_last_error(), "helix: table: expected a pointer, given NULL"));
        CHECK(helix_embeddings_create(7, 0, 0, 10000.0, HELIX_PAIRING_HALF_SPLIT, NULL, HELIX_ANGLES_FP32, &bad) ==
              HELIX_ERROR_INVALID_ARGUMENT);
        CHECK(bad == NULL);
        CHECK(starts_with(helix_last_error(), "helix::SinusoidalEmbeddings: dim"));
        t.device.device_type = kDLMetal;
        t.dtype.bits = 32;
        CHECK(helix_rotate_half(&t, &ok, HELIX_PAIRING_HALF_SPLIT) == HELIX_ERROR_INVALID_ARGUMENT);
        CHECK(starts_with(helix_last_error(), "helix: x: expected a kDLCPU or kDLCUDA tensor"));
        /* A device type DLPack does not list (the fuzzer's finding: read as the enum, it was
         * undefined behaviour in helix's C++). */
        t.device.device_type = (DLDeviceType)0x7fff4647;
        CHECK(helix_rotate_half(&t, &ok, HELIX_PAIRING_HALF_SPLIT) == HELIX_ERROR_INVALID_ARGUMENT);
        CHECK(starts_with(helix_last_error(), "helix: x: expected a kDLCPU or kDLCUDA tensor, given device type 2147436103"));
    }

    /* A scaled embedding (llama3) through the no-table form carries its frequencies. */
    {
        helix_rope_scaling scaling;
        helix_embeddings *scaled = NULL;
        static float sq[D], so[D], inv[H];
        int64_t shape[2] = {1, D};
        int64_t start_h[1] = {H};
        DLTensor qt = f32(sq, 2, shape), qo = f32(so, 2, shape), it = f32(inv, 1, start_h);
        helix_rotary_table table;
        helix_rotary_options options;
        helix_rope_scaling_init(&scaling);
        scaling.type = HELIX_SCALING_LLAMA3;
        scaling.factor = 8.0;
        scaling.low_freq_factor = 1.0;
        scaling.high_freq_factor = 4.0;
        scaling.original_max_position_embeddings = 8;
        CHECK(helix_embeddings_create(D, 0, 0, 10000.0, HELIX_PAIRING_HALF_SPLIT, &scaling, HELIX_ANGLES_FP32, &scaled) ==
              HELIX_OK);
        CHECK(helix_embeddings_inv_freq(scaled, 0, &it) == HELIX_OK);
        CHECK(inv[H - 1] < inv_freq[H - 1]); /* the long wavelengths divided by the factor */
        for (j = 0; j < D; j++) sq[j] = (float)(j + 1);
        helix_rotary_table_init(&table, HELIX_TABLE_EMBEDDING);
        table.embedding = scaled;
        table.seq_len = 100;
        helix_rotary_options_init(&options);
        options.positions.kind = HELIX_POSITIONS_START;
        options.positions.start = 99;
        CHECK(helix_apply_rotary_pos_emb(&qt, NULL, &table, &qo, NULL, &options) == HELIX_OK);
        for (j = 0; j < D; j++) {
            const int pair = j < H ? j + H : j - H;
            const double a = (double)((float)99 * inv[j % H]);
            const double rotated = j < H ? -sq[pair] : sq[pair];
            CHECK(close_to(so[j], sq[j] * cos(a) + rotated * sin(a), sq[j], sq[pair]));
        }
        helix_embeddings_destroy(scaled);
    }

    helix_embeddings_destroy(emb);
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    else printf("c_api_test: all checks passed\n");
    return failures ? 1 : 0;
}
